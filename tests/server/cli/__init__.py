"""The `keyturn` command's tests: an operator's commands run in-process against a real SQLite file in
a temp directory, and the installed command run in a subprocess where the process matters (exit
codes, one-line failures, the database as a user configures it).
"""
