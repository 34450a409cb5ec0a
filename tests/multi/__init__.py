"""Integration tests of several keyturn server processes sharing one PostgreSQL database, and of
failures around them: the database going away, a process killed or stopped mid-request."""
