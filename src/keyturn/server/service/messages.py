"""The mails keyturn sends: plain text and the same in simple HTML, with the product's name, no
images, no tracking, and a link whose token is in the fragment (never sent to a server)."""

from __future__ import annotations

import html
from datetime import timedelta

from ...core.mail import Message

__all__ = ["address_in_use", "reset_password", "verify_email"]


def verify_email(product: str, to: str, link: str, ttl: timedelta) -> Message:
    return _message(
        to,
        f"Verify your email address for {product}",
        [f"To confirm that {to} is your address on {product}, open this link within {_span(ttl)}:"],
        link,
        "If you did not sign up, ignore this message: nothing happens without the link.",
    )


def reset_password(product: str, to: str, link: str, ttl: timedelta) -> Message:
    return _message(
        to,
        f"Choose a new password for {product}",
        [
            f"Someone asked to reset the password of the {product} account of {to}.",
            f"To choose a new one, open this link within {_span(ttl)}; it works once:",
        ],
        link,
        "If it was not you, ignore this message: your password stays as it is.",
    )


def address_in_use(product: str, to: str, link: str) -> Message:
    return _message(
        to,
        f"Your {product} account",
        [
            f"Someone tried to create a {product} account with {to}, which already has one.",
            "If it was you, sign in, or choose a new password here:",
        ],
        link,
        "If it was not you, ignore this message: nothing was changed.",
    )


def _span(ttl: timedelta) -> str:
    minutes = int(ttl.total_seconds() // 60)
    if minutes % (24 * 60) == 0:
        days = minutes // (24 * 60)
        return "1 day" if days == 1 else f"{days} days"
    if minutes % 60 == 0:
        return "1 hour" if minutes == 60 else f"{minutes // 60} hours"
    return f"{minutes} minutes"


def _message(to: str, subject: str, lines: list[str], link: str, closing: str) -> Message:
    text = "\n".join([*lines, "", link, "", closing, ""])
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    body = (
        f'<!doctype html><html><body style="font-family:sans-serif">{paragraphs}'
        f'<p><a href="{html.escape(link, quote=True)}">{html.escape(link)}</a></p>'
        f"<p>{html.escape(closing)}</p></body></html>"
    )
    return Message(to=to, subject=subject, text=text, html=body)
