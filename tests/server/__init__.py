"""Tests of ``keyturn.server``."""
