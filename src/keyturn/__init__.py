"""keyturn: short-lived JWT access tokens, rotating refresh tokens, instant logout.

The root namespace is the pure core and pulls in no web framework or database
driver; the server lives in ``keyturn.http`` and ``keyturn.service``.
"""

from .errors import BadSignature as BadSignature
from .errors import InvalidClaim as InvalidClaim
from .errors import InvalidGrant as InvalidGrant
from .errors import InvalidToken as InvalidToken
from .errors import KeyturnError as KeyturnError
from .errors import TokenExpired as TokenExpired
from .errors import UnknownKey as UnknownKey
from .keys import KeyRing as KeyRing
from .keys import SigningKey as SigningKey
from .tokens import AccessClaims as AccessClaims
from .tokens import issue_access_token as issue_access_token
from .tokens import verify_access_token as verify_access_token

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
