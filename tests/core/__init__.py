"""Tests of ``keyturn.core``."""
