"""The server (``keyturn serve``): settings, the service layer, the store, the HTTP edge and the CLI.

Needs the ``keyturn[server]`` extra; nothing outside this package imports it.
"""
