"""Integration tests of the framework adapters, against a real keyturn server on loopback."""
