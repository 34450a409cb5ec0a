"""Interoperability with OAuth clients nobody here wrote: what the ``tests/test_oauth_interop*.py``
modules share, and the Node harness (``node/``) for oauth4webapi."""
