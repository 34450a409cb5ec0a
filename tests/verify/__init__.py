"""Tests of ``keyturn.verify``."""
