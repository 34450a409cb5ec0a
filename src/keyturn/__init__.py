"""keyturn: short-lived JWT access tokens, rotating refresh tokens, instant logout.

The root namespace is the pure core and pulls in no web framework or database
driver; the server lives in ``keyturn.server``.
"""

from .core.errors import BadSignature as BadSignature
from .core.errors import InvalidClaim as InvalidClaim
from .core.errors import InvalidGrant as InvalidGrant
from .core.errors import InvalidToken as InvalidToken
from .core.errors import KeyturnError as KeyturnError
from .core.errors import TokenExpired as TokenExpired
from .core.errors import UnknownKey as UnknownKey
from .core.keys import KeyRing as KeyRing
from .core.keys import SigningKey as SigningKey
from .core.tokens import AccessClaims as AccessClaims
from .core.tokens import issue_access_token as issue_access_token
from .core.tokens import verify_access_token as verify_access_token

__version__ = "0.1.0"

__all__ = [
    "AccessClaims",
    "BadSignature",
    "InvalidClaim",
    "InvalidGrant",
    "InvalidToken",
    "KeyRing",
    "KeyturnError",
    "SigningKey",
    "TokenExpired",
    "UnknownKey",
    "issue_access_token",
    "verify_access_token",
]
