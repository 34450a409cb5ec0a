"""Tests of ``keyturn.client``."""
