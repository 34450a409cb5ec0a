"""Storage: the only package that speaks SQL (SQLAlchemy Core; SQLite or PostgreSQL)."""

from .engine import Database as Database
from .records import AuditRecord as AuditRecord
from .records import ClientRecord as ClientRecord
from .records import EmailTokenRecord as EmailTokenRecord
from .records import KeyRecord as KeyRecord
from .records import OutboxRecord as OutboxRecord
from .records import SessionRecord as SessionRecord
from .records import Standing as Standing
from .records import UserRecord as UserRecord
from .sql import Store as Store
from .sql import Tx as Tx
from .url import normalize_database_url as normalize_database_url

__all__ = [
    "AuditRecord", "ClientRecord", "Database", "EmailTokenRecord", "KeyRecord", "OutboxRecord", "SessionRecord",
    "Standing", "Store", "Tx", "UserRecord", "normalize_database_url",
]  # fmt: skip
