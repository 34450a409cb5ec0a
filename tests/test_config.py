"""Unit tests of keyturn.config: defaults, durations, precedence and secret rules.

No I/O beyond pytest's own temporary directory (for the development secret file)
and environment variables set through monkeypatch.
"""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from keyturn.config import Settings, load_settings, parse_duration
from keyturn.errors import ConfigurationError

STRONG = "Q2v8rX1pLw9zT4mN7bK3cY6hJ0dF5gS2aE8uI1oPzR4tW"

pytestmark = pytest.mark.usefixtures("no_env")


def test_defaults() -> None:
    settings = load_settings(secret=STRONG)
    assert settings.access_token_ttl == timedelta(minutes=15)
    assert settings.refresh_idle_ttl == timedelta(days=7)
    assert settings.session_max_ttl == timedelta(days=30)
    assert settings.reuse_grace == timedelta(seconds=10)
    assert settings.signing_alg == "ES256"
    assert settings.allow_registration is True
    assert settings.env == "production"
    assert settings.dev is False


def test_token_audience_defaults_to_the_issuer() -> None:
    settings = load_settings(secret=STRONG, issuer="https://auth.example")
    assert settings.token_audience == "https://auth.example"
    assert load_settings(secret=STRONG, audience="https://api.example").token_audience == "https://api.example"


# --- durations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("900", 900),
        ("15m", 900),
        ("7d", 7 * 86400),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("0.5", 0.5),
        ("250ms", 0.25),
        ("30s", 30),
        ("2w", 14 * 86400),
        ("1d12h", 36 * 3600),
        (" 15M ", 900),
        ("0", 0),
        (900, 900),
        (1.5, 1.5),
        (timedelta(minutes=3), 180),
    ],
)
def test_parse_duration_accepts(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["", "soon", "15x", "-5", "m", ".5h", "1.h", "1,5h", "1e3", "15m and more", "h1", True, -1, "15 minutes"]
)
def test_parse_duration_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("variable", "field", "text", "expected"),
    [
        ("KEYTURN_ACCESS_TOKEN_TTL", "access_token_ttl", "900", timedelta(seconds=900)),
        ("KEYTURN_ACCESS_TOKEN_TTL", "access_token_ttl", "1h30m", timedelta(minutes=90)),
        ("KEYTURN_REFRESH_IDLE_TTL", "refresh_idle_ttl", "7d", timedelta(days=7)),
        ("KEYTURN_SESSION_MAX_TTL", "session_max_ttl", "60d", timedelta(days=60)),
        ("KEYTURN_REUSE_GRACE", "reuse_grace", "15s", timedelta(seconds=15)),
        ("KEYTURN_LEEWAY", "leeway", "0", timedelta(0)),
    ],
)
def test_durations_from_the_environment(
    variable: str, field: str, text: str, expected: timedelta, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, text)
    assert getattr(load_settings(secret=STRONG), field) == expected


@pytest.mark.parametrize(
    "variable",
    ["KEYTURN_ACCESS_TOKEN_TTL", "KEYTURN_REFRESH_IDLE_TTL", "KEYTURN_SESSION_MAX_TTL", "KEYTURN_REUSE_GRACE"],
)
@pytest.mark.parametrize("text", ["soon", "15x", "1,5h", "-5m"])
def test_bad_duration_names_its_variable(variable: str, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, text)
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG)
    assert excinfo.value.setting == variable
    assert str(excinfo.value).startswith(f"{variable}: ")


def test_access_token_ttl_below_one_second_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYTURN_ACCESS_TOKEN_TTL", "0")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG)
    assert excinfo.value.setting == "KEYTURN_ACCESS_TOKEN_TTL"


def test_session_max_shorter_than_idle_refused() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG, refresh_idle_ttl="7d", session_max_ttl="1d")
    assert excinfo.value.setting == "KEYTURN_SESSION_MAX_TTL"


def test_reuse_grace_over_five_minutes_refused() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG, reuse_grace="6m")
    assert excinfo.value.setting == "KEYTURN_REUSE_GRACE"


@pytest.mark.parametrize(
    ("variable", "text"),
    [("KEYTURN_MAX_BODY_BYTES", "12"), ("KEYTURN_PASSWORD_MIN_LENGTH", "0"), ("KEYTURN_ENV", "staging")],
)
def test_other_bad_values_name_their_variable(variable: str, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, text)
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG)
    assert excinfo.value.setting == variable


# --- precedence ---------------------------------------------------------------------------------------


def test_keyword_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYTURN_ISSUER", "https://from-env.example")
    monkeypatch.setenv("KEYTURN_ACCESS_TOKEN_TTL", "5m")
    assert load_settings(secret=STRONG).issuer == "https://from-env.example"
    settings = load_settings(secret=STRONG, issuer="https://explicit.example")
    assert settings.issuer == "https://explicit.example"
    assert settings.access_token_ttl == timedelta(minutes=5)


def test_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYTURN_SECRET", STRONG)
    secret = load_settings().secret
    assert secret is not None
    assert secret.get_secret_value() == STRONG


# --- the master secret -----------------------------------------------------------------------------------


def test_missing_secret_in_production_names_keyturn_secret() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    assert excinfo.value.setting == "KEYTURN_SECRET"


def test_random_secret_containing_a_placeholder_word_by_chance_is_accepted() -> None:
    """A long random value that happens to contain "todo" is not a placeholder."""
    secret = "Zq8Kd2Lp0Xv7TODOn4Rb1Ws9Yc6Hj3Mf5Ga0Et8Uo2Ik7Ql"
    assert Settings(secret=secret).secret is not None


@pytest.mark.parametrize(
    "secret",
    [
        "changeme" * 5,
        "short",
        "",
        "a" * 64,
        "abcabcabcabcabcabcabcabcabcabcabcabc",
        "Q2v8rX1pLw9zT4mN7bK3-CHANGEME-changeme",
        "Q2v8rX1pLw9zT4mN7b-password-password",
        "my-example-secret-Q2v8rX1pLw9zT4mN7bK3cY6h",
    ],
)
def test_weak_secret_refused_in_production(secret: str) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=secret)
    assert excinfo.value.setting == "KEYTURN_SECRET"
    assert secret not in str(excinfo.value) or secret == ""


def test_weak_secret_from_the_environment_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYTURN_SECRET", "changeme" * 5)
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    assert excinfo.value.setting == "KEYTURN_SECRET"


def test_weak_secret_tolerated_in_development(tmp_path: Path) -> None:
    settings = load_settings(dev=True, secret="changeme" * 5, secret_file=tmp_path / "s")
    assert settings.dev
    assert not (tmp_path / "s").exists()


def test_dev_mode_generates_a_0600_secret_file_and_reuses_it(tmp_path: Path) -> None:
    path = tmp_path / "s"
    first = load_settings(dev=True, secret_file=path)
    assert first.env == "development"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.secret is not None
    generated = first.secret.get_secret_value()
    assert path.read_text(encoding="ascii").strip() == generated
    assert len(generated) >= 32
    second = load_settings(dev=True, secret_file=path)
    assert second.secret is not None
    assert second.secret.get_secret_value() == generated


def test_dev_mode_from_the_environment_also_generates_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYTURN_ENV", "development")
    settings = load_settings(secret_file=tmp_path / "s")
    assert settings.dev
    assert (tmp_path / "s").exists()


def test_dev_mode_does_not_write_a_file_when_a_secret_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYTURN_SECRET", STRONG)
    settings = load_settings(dev=True, secret_file=tmp_path / "s")
    assert settings.secret is not None
    assert settings.secret.get_secret_value() == STRONG
    assert not (tmp_path / "s").exists()


def test_production_never_writes_a_secret_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        load_settings(secret_file=tmp_path / "s")
    assert not (tmp_path / "s").exists()


# --- algorithm ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["Ed25519", "ed25519", "EdDSA", "eddsa"])
def test_ed25519_alias_means_eddsa(alias: str) -> None:
    assert load_settings(secret=STRONG, signing_alg=alias).signing_alg == "EdDSA"


def test_ed25519_alias_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYTURN_SIGNING_ALG", "Ed25519")
    assert load_settings(secret=STRONG).signing_alg == "EdDSA"


@pytest.mark.parametrize("alg", ["HS256", "none", "ES384", "rs256"])
def test_other_algorithms_refused(alg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYTURN_SIGNING_ALG", alg)
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG)
    assert excinfo.value.setting == "KEYTURN_SIGNING_ALG"


# --- the Settings object ----------------------------------------------------------------------------------


def test_settings_are_frozen() -> None:
    settings = load_settings(secret=STRONG)
    with pytest.raises(ValidationError, match="frozen"):
        settings.issuer = "https://elsewhere.example"  # type: ignore[misc]
    assert settings.issuer == "http://127.0.0.1:8000"


def test_repr_and_str_do_not_contain_the_secret() -> None:
    settings = load_settings(secret=STRONG)
    for text in (repr(settings), str(settings), repr(settings.secret), str(settings.secret)):
        assert STRONG not in text
    assert STRONG not in settings.model_dump_json()


def test_settings_can_be_built_directly_with_the_same_rules() -> None:
    with pytest.raises(ValidationError, match="KEYTURN_SECRET"):
        Settings(secret="changeme" * 5)
    assert Settings(secret=STRONG).signing_alg == "ES256"
