"""The pure core: token formats, keys, the session lifecycle, passwords, CSRF MACs and the error
tree. No I/O: every time-dependent function takes ``now``."""
