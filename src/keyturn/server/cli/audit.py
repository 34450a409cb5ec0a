"""``keyturn audit``: the audit log, newest first, as aligned lines or JSON Lines.

Every value an outsider chose (a user agent, a username in the detail) is printed as one display
token: bare when harmless, else JSON-quoted, so no control character reaches the terminal and no
space shifts a column.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import click

from ..config import parse_duration
from ..service import MAX_AUDIT_LIMIT, AuditRecord
from ._invocation import fail, run, when

# Text printed as is; anything else (spaces, quotes, control characters) is printed JSON-quoted.
_BARE = re.compile(r"[\w.:%@/+-]+", re.ASCII)


@click.command()
@click.option("--user", metavar="NAME", help="Only this user's events.")
@click.option(
    "--event", metavar="EVENT", multiple=True, help="Only this event, e.g. login, refresh, reuse_detected (repeatable)."
)
@click.option(
    "--since", metavar="WHEN", help="From this time: ISO 8601 (naive means UTC), or that long ago: 15m, 2h, 7d."
)
@click.option("--until", metavar="WHEN", help="Before this time; the same forms as --since.")
@click.option(
    "--limit",
    metavar="N",
    type=click.IntRange(1, MAX_AUDIT_LIMIT),
    default=50,
    show_default=True,
    help="At most this many events.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON Lines).")
def audit(
    user: str | None, event: tuple[str, ...], since: str | None, until: str | None, limit: int, as_json: bool
) -> None:
    """Show the audit log, newest first."""
    now = datetime.now(UTC)
    start, end = _parse_when("--since", since, now), _parse_when("--until", until, now)
    records = run(lambda svc: svc.admin.audit(user, event, start, end, limit))
    if as_json:
        for r in records:
            click.echo(_audit_json(r))
        return
    ip_width = max((len(_text(r.ip)) for r in records), default=1)
    for r in records:
        click.echo(_audit_line(r, ip_width))


def _parse_when(option: str, value: str | None, now: datetime) -> datetime | None:
    """An ISO 8601 time (naive means UTC), or a duration meaning that long before ``now``."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.strip())
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    try:
        return now - parse_duration(value)
    except ValueError:
        fail(f"{option} {value!r} is not an ISO 8601 time or a duration such as 15m, 2h or 7d", code=2)


def _audit_line(r: AuditRecord, ip_width: int) -> str:
    user_id, session_id = _text(r.user_id), _text(r.session_id)
    ua = r.user_agent
    agent = "-" if ua is None else json.dumps(ua if len(ua) <= 40 else ua[:37] + "...")
    detail = " ".join(f"{_text(k)}={_text(v)}" for k, v in (r.detail or {}).items())
    line = f"{when(r.at)}  {r.event:<16} {r.outcome:<8} user {user_id:<36}  session {session_id:<36}  "
    return f"{line}{_text(r.ip):<{ip_width}}  {agent}  {detail}".rstrip()


def _text(value: object) -> str:
    """One display token: ``-`` for nothing, bare when harmless, else JSON-quoted (no spaces, no control characters)."""
    if value is None:
        return "-"
    if isinstance(value, dict | list | bool):
        return json.dumps(value, separators=(",", ":"))
    text = str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text)


def _audit_json(r: AuditRecord) -> str:
    return json.dumps(
        {
            "id": r.id,
            "at": r.at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "event": r.event,
            "outcome": r.outcome,
            "user_id": None if r.user_id is None else str(r.user_id),
            "session_id": None if r.session_id is None else str(r.session_id),
            "ip": r.ip,
            "user_agent": r.user_agent,
            "detail": r.detail,
        }
    )
