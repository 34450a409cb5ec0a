"""Unit tests of keyturn.server.service.messages (no I/O): the three mails keyturn sends carry the
product's name and the link in both parts, hold no images and no tracking, and escape what they
show in HTML."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest

from keyturn.core.mail import Message
from keyturn.server.service import messages

PRODUCT = "Acme Cloud"
TO = "o'brien&co@example.com"  # an address with characters HTML must escape
LINK = "https://auth.example.com/#reset-password=kt_et_AbC-123_xyz"

MAILS: dict[str, Callable[[str, str, str], Message]] = {
    "verify_email": lambda product, to, link: messages.verify_email(product, to, link, timedelta(hours=24)),
    "reset_password": lambda product, to, link: messages.reset_password(product, to, link, timedelta(minutes=30)),
    "address_in_use": messages.address_in_use,
}


@pytest.fixture(params=sorted(MAILS))
def make(request: pytest.FixtureRequest) -> Callable[[str, str, str], Message]:
    return MAILS[request.param]


def test_each_mail_is_to_the_address_and_names_the_product(make: Callable[[str, str, str], Message]) -> None:
    """The recipient is the address given; the product's name is in the subject and in both parts."""
    mail = make(PRODUCT, TO, LINK)
    assert mail.to == TO
    assert PRODUCT in mail.subject
    assert PRODUCT in mail.text
    assert PRODUCT in mail.html


def test_the_link_is_in_both_parts_as_given(make: Callable[[str, str, str], Message]) -> None:
    """The plain text has the link on a line of its own; the HTML has it as the one anchor's target
    and as its text."""
    mail = make(PRODUCT, TO, LINK)
    assert LINK in mail.text.splitlines()
    assert re.findall(r'<a href="([^"]*)">([^<]*)</a>', mail.html) == [(LINK, LINK)]


def test_no_images_scripts_or_tracking(make: Callable[[str, str, str], Message]) -> None:
    """No remote or inline images, no scripts, no styles that load anything, and no URL but the link."""
    mail = make(PRODUCT, TO, LINK)
    lowered = mail.html.lower()
    for banned in ("<img", "<script", "<link", "<iframe", "<object", "url(", "background", "src=", "data:"):
        assert banned not in lowered
    assert set(re.findall(r"https?://[^\s\"<]*", mail.html)) == {LINK}
    assert set(re.findall(r"https?://\S*", mail.text)) == {LINK}


def test_the_address_and_product_are_html_escaped(make: Callable[[str, str, str], Message]) -> None:
    """What the mail shows of the address and the product's name cannot add markup to the HTML part;
    the plain text shows them as they are."""
    mail = make("Acme <b>Cloud</b> & Co", "<script>x</script>@example.com", LINK)
    assert "<b>" not in mail.html
    assert "<script>" not in mail.html
    assert "Acme &lt;b&gt;Cloud&lt;/b&gt; &amp; Co" in mail.html
    assert "Acme <b>Cloud</b> & Co" in mail.text


def test_the_address_is_shown_and_escaped(make: Callable[[str, str, str], Message]) -> None:
    """Each mail shows the recipient's address: as typed in the text, its quote and ampersand
    escaped in the HTML."""
    mail = make(PRODUCT, TO, LINK)
    assert TO in mail.text
    assert "o&#x27;brien&amp;co@example.com" in mail.html
    assert TO not in mail.html


def test_a_link_with_markup_characters_is_escaped_in_the_anchor() -> None:
    """A link is put in the HTML attribute and text escaped (a quote cannot end the href)."""
    mail = messages.address_in_use(PRODUCT, TO, 'https://x.example/?a="b"&c=<d>')
    assert 'href="https://x.example/?a=&quot;b&quot;&amp;c=&lt;d&gt;"' in mail.html


def test_the_html_part_is_a_whole_document() -> None:
    """One doctype, one html and body element: mail clients render it as sent."""
    mail = messages.verify_email(PRODUCT, TO, LINK, timedelta(hours=24))
    assert mail.html.startswith("<!doctype html><html><body")
    assert mail.html.endswith("</body></html>")


@pytest.mark.parametrize(
    ("ttl", "said"),
    [
        (timedelta(hours=24), "within 1 day"),
        (timedelta(days=2), "within 2 days"),
        (timedelta(hours=1), "within 1 hour"),
        (timedelta(hours=3), "within 3 hours"),
        (timedelta(minutes=30), "within 30 minutes"),
        (timedelta(minutes=90), "within 90 minutes"),
    ],
)
def test_links_say_how_long_they_work(ttl: timedelta, said: str) -> None:
    """The lifetime of a verification or reset link is said in words, in both parts."""
    for mail in (
        messages.verify_email(PRODUCT, TO, LINK, ttl),
        messages.reset_password(PRODUCT, TO, LINK, ttl),
    ):
        assert said in mail.text
        assert said in mail.html


def test_reset_mail_says_the_link_works_once() -> None:
    """The reset mail tells the reader the link is single use, and what to do if they did not ask."""
    mail = messages.reset_password(PRODUCT, TO, LINK, timedelta(minutes=30))
    assert "it works once" in mail.text
    assert "If it was not you" in mail.text


def test_the_subjects_tell_the_mails_apart() -> None:
    """Each kind of mail has its own subject."""
    subjects = {make(PRODUCT, TO, LINK).subject for make in MAILS.values()}
    assert len(subjects) == 3
