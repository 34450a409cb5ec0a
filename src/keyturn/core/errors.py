"""The one error tree of keyturn.

Every error has a stable wire ``code`` (the OAuth code where one fits) and a
stable, finer ``reason`` (snake_case) that logs, audit rows and tests use. The
core knows no HTTP: ``keyturn.verify.bearer`` maps codes to statuses in one table.

::

    KeyturnError                      (never raised itself)
    ├── ConfigurationError            invalid_configuration
    ├── InvalidRequest                invalid_request
    │   └── PasswordPolicyError       invalid_request   (reason: password_*)
    ├── InvalidCredentials            invalid_credentials (unknown user, wrong password, disabled: one answer)
    ├── InvalidClient                 invalid_client    (RFC 6749 §5.2: client authentication failed)
    ├── UnsupportedGrantType          unsupported_grant_type
    ├── UnauthorizedClient            unauthorized_client (a grant the client may not use)
    ├── InvalidScope                  invalid_scope     (a scope beyond the grant)
    ├── InvalidGrant                  invalid_grant     (refresh token refused; client: no_session)
    │   ├── MalformedRefreshToken     reason: malformed
    │   ├── ForgedRefreshToken        reason: bad_mac
    │   ├── UnknownSession            reason: unknown_session
    │   ├── SessionRevoked            reason: session_revoked
    │   ├── SessionExpired            reason: idle_expired | absolute_expired
    │   └── RefreshTokenReused        reason: reuse_detected
    ├── InvalidToken                  invalid_token     (access token refused)
    │   ├── MissingToken              reason: missing_token
    │   ├── MalformedToken            reason: malformed
    │   ├── UnsupportedHeader         reason: forbidden_header | bad_typ | bad_alg
    │   ├── UnknownKey                reason: unknown_kid
    │   ├── BadSignature              reason: bad_signature
    │   ├── InvalidClaim              reason: invalid_claim
    │   ├── TokenExpired              reason: expired
    │   ├── TokenNotYetValid          reason: not_yet_valid
    │   └── SessionEnded              reason: session_ended (the issuer ended its session)
    ├── SigningKeyError               server_error (reason: key_seal_version | key_seal_mismatch | no_signing_key)
    ├── InsufficientScope             insufficient_scope (403)
    ├── RateLimited                   rate_limited (429, with retry_after: a client, account, session, or all)
    ├── CsrfError                     csrf_failed (403: a cookie request failed a cross-site forgery check)
    │   ├── OriginNotAllowed          origin_not_allowed
    │   ├── CsrfTokenInvalid          csrf_token_invalid
    │   └── ContentTypeNotAllowed     content_type_not_allowed
    ├── RegistrationClosed            registration_closed
    ├── EmailNotVerified              email_not_verified (403: a right password, an unverified address)
    ├── UsernameTaken                 username_taken
    ├── NotFound                      not_found
    └── Unavailable                   temporarily_unavailable (client: bad_response)
"""

from __future__ import annotations

from datetime import datetime


class KeyturnError(Exception):
    """Root of every keyturn error; never raised itself."""

    code: str = "server_error"
    reason: str = "server_error"
    description: str = "The request failed."

    def __init__(self, description: str | None = None, *, reason: str | None = None) -> None:
        if description is not None:
            self.description = description
        if reason is not None:
            self.reason = reason
        super().__init__(self.description)


class ConfigurationError(KeyturnError):
    code = reason = "invalid_configuration"

    def __init__(self, setting: str, description: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {description}")


class InvalidRequest(KeyturnError):
    code = reason = "invalid_request"
    description = "The request is malformed."


class PasswordPolicyError(InvalidRequest):
    reason = "password_policy"


class InvalidCredentials(KeyturnError):
    code = reason = "invalid_credentials"
    description = "The username or password is incorrect."


class InvalidClient(KeyturnError):
    code = reason = "invalid_client"
    description = "Client authentication failed."


class UnsupportedGrantType(KeyturnError):
    code = reason = "unsupported_grant_type"
    description = "The grant type is not supported."


class UnauthorizedClient(KeyturnError):
    code = reason = "unauthorized_client"
    description = "This client may not use this grant type."


class InvalidScope(KeyturnError):
    code = reason = "invalid_scope"
    description = "The requested scope exceeds the scope granted."


class InvalidGrant(KeyturnError):
    """A refresh token was refused."""

    code = reason = "invalid_grant"
    description = "The refresh token is invalid."


class MalformedRefreshToken(InvalidGrant):
    reason = "malformed"
    description = "The refresh token is malformed."


class ForgedRefreshToken(InvalidGrant):
    reason = "bad_mac"
    description = "The refresh token is invalid."


class UnknownSession(InvalidGrant):
    reason = "unknown_session"
    description = "The refresh token is invalid."


class SessionRevoked(InvalidGrant):
    reason = "session_revoked"
    description = "The session has ended; sign in again."


class SessionExpired(InvalidGrant):
    reason = "session_expired"
    description = "The session has expired; sign in again."


class RefreshTokenReused(InvalidGrant):
    reason = "reuse_detected"
    description = "The refresh token was already used; the session has been revoked."


class InvalidToken(KeyturnError):
    """An access token was refused."""

    code = reason = "invalid_token"
    description = "The access token is invalid."


class SessionEnded(InvalidToken):
    """The token verifies, but its session has ended (seen in the database, or in the revocation feed)."""

    reason = "session_ended"
    description = "The session of this access token has ended."


class MalformedToken(InvalidToken):
    reason = "malformed"
    description = "The access token is malformed."


class UnsupportedHeader(InvalidToken):
    reason = "unsupported_header"
    description = "The access token header is not accepted."

    def __init__(self, header: str, description: str | None = None, *, reason: str | None = None) -> None:
        self.header = header
        super().__init__(description or f"The access token header '{header}' is not accepted.", reason=reason)


class UnknownKey(InvalidToken):
    reason = "unknown_kid"
    description = "The access token was signed by an unknown key."

    def __init__(self, kid: str | None) -> None:
        self.kid = kid
        super().__init__()


class BadSignature(InvalidToken):
    reason = "bad_signature"
    description = "The access token signature is invalid."

    def __init__(self, kid: str | None) -> None:
        self.kid = kid
        super().__init__()


class InvalidClaim(InvalidToken):
    reason = "invalid_claim"

    def __init__(self, claim: str, description: str | None = None) -> None:
        self.claim = claim
        super().__init__(description or f"The access token claim '{claim}' is missing or invalid.")


class TokenExpired(InvalidToken):
    reason = "expired"
    description = "The access token has expired."

    def __init__(self, expired_at: datetime) -> None:
        self.expired_at = expired_at
        super().__init__()


class TokenNotYetValid(InvalidToken):
    reason = "not_yet_valid"
    description = "The access token is not valid yet."

    def __init__(self, claim: str) -> None:
        self.claim = claim
        super().__init__()


class SigningKeyError(KeyturnError):
    """No key can sign, or a stored key cannot be opened (wrong master secret, damaged row)."""

    code = "server_error"
    reason = "signing_key_error"
    description = "The server cannot sign tokens."


class InsufficientScope(KeyturnError):
    """A valid access token that lacks a scope the route requires (RFC 6750 §3.1, 403)."""

    code = reason = "insufficient_scope"

    def __init__(self, required: tuple[str, ...]) -> None:
        self.required = required
        super().__init__(f"The access token lacks the scope(s): {' '.join(required)}.")


class RateLimited(KeyturnError):
    code = reason = "rate_limited"

    def __init__(self, retry_after: int, limit: str = "", kind: str = "") -> None:
        self.retry_after = max(1, retry_after)
        self.limit = limit
        self.kind = kind
        super().__init__(f"Too many requests; try again in {self.retry_after} s.")


class CsrfError(KeyturnError):
    code = reason = "csrf_failed"
    description = "The request failed a cross-site request forgery check."


class OriginNotAllowed(CsrfError):
    code = reason = "origin_not_allowed"
    description = "The request's Origin is not allowed to use the session cookie."


class CsrfTokenInvalid(CsrfError):
    code = reason = "csrf_token_invalid"
    description = "The X-CSRF-Token header is missing or does not match this session."


class ContentTypeNotAllowed(CsrfError):
    code = reason = "content_type_not_allowed"
    description = "Requests that use the session cookie must send Content-Type: application/json."


class RegistrationClosed(KeyturnError):
    code = reason = "registration_closed"
    description = "Registration is closed."


class EmailNotVerified(KeyturnError):
    code = reason = "email_not_verified"
    description = "Verify your email address first; we can send the link again."


class UsernameTaken(KeyturnError):
    code = reason = "username_taken"
    description = "That username is taken."


class NotFound(KeyturnError):
    code = reason = "not_found"
    description = "Not found."


class Unavailable(KeyturnError):
    """The store cannot be reached; nothing was issued."""

    code = reason = "temporarily_unavailable"
    description = "The service is temporarily unavailable; try again shortly."


class MissingToken(InvalidToken):
    """No bearer token at all (RFC 6750 §3.1: the challenge then names no error)."""

    reason = "missing_token"
    description = "This route needs a bearer access token."
