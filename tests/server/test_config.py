"""Unit tests of keyturn.server.config: defaults, durations, precedence and secret rules.

No I/O beyond pytest's own temporary directory (for the development secret file)
and environment variables set through monkeypatch.
"""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import ValidationError

from keyturn.core.errors import ConfigurationError
from keyturn.server.config import Settings, load_settings

STRONG = "Q2v8rX1pLw9zT4mN7bK3cY6hJ0dF5gS2aE8uI1oPzR4tW"

ISSUER = "https://auth.example"

pytestmark = pytest.mark.usefixtures("no_env")


@pytest.fixture(autouse=True)
def issuer(no_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside development the issuer must be set: every test here sets it, as an operator must."""
    monkeypatch.setenv("KEYTURN_ISSUER", ISSUER)


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


def test_header_bounds_default_to_16_kib_and_100_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """KEYTURN_MAX_HEADER_BYTES and KEYTURN_MAX_HEADER_FIELDS: 16 KiB and 100 unless set; out of range
    (a bound too small for ordinary requests, or one that bounds nothing) stops start-up, named."""
    settings = load_settings(secret=STRONG)
    assert (settings.max_header_bytes, settings.max_header_fields) == (16 * 1024, 100)
    monkeypatch.setenv("KEYTURN_MAX_HEADER_BYTES", "8192")
    monkeypatch.setenv("KEYTURN_MAX_HEADER_FIELDS", "50")
    settings = load_settings(secret=STRONG)
    assert (settings.max_header_bytes, settings.max_header_fields) == (8192, 50)
    for variable, value in (("max_header_bytes", 1000), ("max_header_bytes", 2**30), ("max_header_fields", 5)):
        with pytest.raises(ConfigurationError) as excinfo:
            load_settings(secret=STRONG, **cast("dict[str, Any]", {variable: value}))
        assert excinfo.value.setting == f"KEYTURN_{variable.upper()}"


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
    assert secret.get_secret_value() == STRONG


# --- the master secret -----------------------------------------------------------------------------------


def test_missing_secret_in_production_names_keyturn_secret() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    assert excinfo.value.setting == "KEYTURN_SECRET"


def test_keyturn_admins_is_refused_with_the_command_that_replaces_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (review finding 2): KEYTURN_ADMINS granted authority by a name anyone could
    register; it is refused at start-up (not silently ignored), naming `keyturn users grant`."""
    monkeypatch.setenv("KEYTURN_ADMINS", "root")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(secret=STRONG, issuer="https://auth.example.com")
    assert caught.value.setting == "KEYTURN_ADMINS"
    assert "keyturn users grant NAME admin" in caught.value.description


def test_random_secret_containing_a_placeholder_word_by_chance_is_accepted() -> None:
    """A long random value that happens to contain "todo" is not a placeholder."""
    secret = "Zq8Kd2Lp0Xv7TODOn4Rb1Ws9Yc6Hj3Mf5Ga0Et8Uo2Ik7Ql"
    assert Settings(secret=secret).secret.get_secret_value() == secret


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
    generated = first.secret.get_secret_value()
    assert path.read_text(encoding="ascii").strip() == generated
    assert len(generated) >= 32
    second = load_settings(dev=True, secret_file=path)
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
    assert settings.issuer == ISSUER


def test_repr_and_str_do_not_contain_the_secret() -> None:
    settings = load_settings(secret=STRONG)
    for text in (repr(settings), str(settings), repr(settings.secret), str(settings.secret)):
        assert STRONG not in text
    assert STRONG not in settings.model_dump_json()


def test_settings_can_be_built_directly_with_the_same_rules() -> None:
    with pytest.raises(ValidationError, match="KEYTURN_SECRET"):
        Settings(secret="changeme" * 5)
    assert Settings(secret=STRONG).signing_alg == "ES256"


# --- production defaults fail closed (issue 13, point 7) ------------------------------------------


def test_production_requires_an_explicit_issuer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --dev there is no silent http://127.0.0.1:8000: a missing issuer is refused, naming it."""
    monkeypatch.delenv("KEYTURN_ISSUER")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG)
    assert excinfo.value.setting == "KEYTURN_ISSUER"
    assert "required outside development" in str(excinfo.value)


@pytest.mark.parametrize(
    "issuer",
    ["https://auth.example.com", "https://auth.example.com/keyturn", "http://127.0.0.1:8000", "http://127.8.9.10",
     "http://localhost:8000", "http://[::1]:8000", "http://LOCALHOST"],
)  # fmt: skip
def test_production_issuer_is_https_or_loopback(issuer: str) -> None:
    """An https issuer, or plain http on 127.0.0.0/8, ::1 or localhost, is accepted outside development."""
    assert load_settings(secret=STRONG, issuer=issuer).issuer == issuer


@pytest.mark.parametrize(
    "issuer", ["http://auth.example.com", "http://10.0.0.5:8000", "http://0.0.0.0:8000", "http://localhost.example.com"]
)
def test_production_refuses_a_plain_http_issuer_off_loopback(issuer: str) -> None:
    """Tokens naming an http:// issuer that other machines reach are refused outside development."""
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG, issuer=issuer)
    assert excinfo.value.setting == "KEYTURN_ISSUER"
    assert "must be https://" in str(excinfo.value)


@pytest.mark.parametrize(
    "issuer", ["auth.example.com", "ftp://auth.example.com", "https://", "https://a.example?x=1", "https://a.example#f",
               "https://user@a.example", "https://a.example:port"],
)  # fmt: skip
def test_an_issuer_that_is_not_a_url_is_refused(issuer: str) -> None:
    """The issuer is a URL with a host and no query, fragment or user, in every mode."""
    for dev in (False, True):
        with pytest.raises(ConfigurationError) as excinfo:
            load_settings(secret=STRONG, issuer=issuer, dev=dev)
        assert excinfo.value.setting == "KEYTURN_ISSUER"
        assert "is not a URL" in str(excinfo.value)


def test_development_issuer_is_loopback_and_follows_what_serve_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--dev keeps its convenience: a default loopback issuer, or the one serve derives; KEYTURN_ISSUER wins."""
    monkeypatch.delenv("KEYTURN_ISSUER")
    secret_file = tmp_path / "s"
    assert load_settings(dev=True, secret_file=secret_file).issuer == "http://127.0.0.1:8000"
    derived = load_settings(dev=True, secret_file=secret_file, dev_issuer="http://192.168.1.5:9000")
    assert derived.issuer == "http://192.168.1.5:9000"  # plain http off loopback is fine in development
    assert load_settings(secret=STRONG, issuer=ISSUER, dev_issuer="http://127.0.0.1:9000").issuer == ISSUER
    monkeypatch.setenv("KEYTURN_ISSUER", "http://devbox.lan:8000")
    assert load_settings(dev=True, secret_file=secret_file, dev_issuer="http://127.0.0.1:9000").issuer == (
        "http://devbox.lan:8000"
    )


def test_production_serves_no_metrics_or_api_docs_unless_asked() -> None:
    """/metrics is on only with a token, /docs and /openapi.json only with KEYTURN_API_DOCS; development serves both."""
    plain = load_settings(secret=STRONG)
    assert (plain.serve_metrics, plain.serve_api_docs) == (False, False)
    scraped = load_settings(secret=STRONG, metrics_token=STRONG[::-1])
    assert scraped.serve_metrics is True
    assert load_settings(secret=STRONG, metrics_token=STRONG[::-1], metrics_enabled=False).serve_metrics is False
    assert load_settings(secret=STRONG, api_docs=True).serve_api_docs is True
    dev = load_settings(secret=STRONG, env="development")
    assert (dev.serve_metrics, dev.serve_api_docs) == (True, True)
    assert load_settings(secret=STRONG, env="development", api_docs=False).serve_api_docs is False


def test_metrics_enabled_without_a_token_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for /metrics outside development without a token stops start-up, naming the token."""
    monkeypatch.setenv("KEYTURN_METRICS_ENABLED", "true")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG)
    assert excinfo.value.setting == "KEYTURN_METRICS_TOKEN"
    assert "KEYTURN_METRICS_ENABLED=true" in str(excinfo.value)
    assert load_settings(secret=STRONG, env="development").serve_metrics is True


@pytest.mark.parametrize("token", ["changeme", "metrics", "x" * 40, "changeme-changeme-changeme-changeme"])
def test_a_weak_metrics_token_is_refused_in_production(token: str) -> None:
    """The metrics token is a secret: short or placeholder values are refused outside development."""
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG, metrics_token=token)
    assert excinfo.value.setting == "KEYTURN_METRICS_TOKEN"
    assert token not in str(excinfo.value)


@pytest.mark.parametrize("url", ["localhost:6379", "memcached://cache:11211", "http://redis.internal"])
def test_a_redis_url_that_is_not_redis_is_refused(url: str) -> None:
    """A KEYTURN_REDIS_URL the rate limiter cannot use is one line naming it (it was a traceback)."""
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG, redis_url=url)
    assert excinfo.value.setting == "KEYTURN_REDIS_URL"
    assert "use redis://host:6379/0" in str(excinfo.value)
    assert load_settings(secret=STRONG, redis_url="rediss://:pw@redis.internal:6380/0").redis_url is not None


def test_hsts_follows_the_issuer_scheme() -> None:
    """Strict-Transport-Security is for an https issuer only (a loopback http issuer gets none)."""
    assert load_settings(secret=STRONG, issuer="https://auth.example.com").hsts is True
    assert load_settings(secret=STRONG, issuer="http://127.0.0.1:8000").hsts is False


# --- the database URL (issue 13, point 8) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "opened"),
    [
        ("sqlite:///keyturn.db", "sqlite+aiosqlite:///keyturn.db"),
        ("sqlite:////var/lib/keyturn/keyturn.db", "sqlite+aiosqlite:////var/lib/keyturn/keyturn.db"),
        ("sqlite+aiosqlite:///keyturn.db", "sqlite+aiosqlite:///keyturn.db"),
        ("postgresql://kt:pw@db.internal:5432/keyturn", "postgresql+asyncpg://kt:pw@db.internal:5432/keyturn"),
        ("postgres://kt:pw@db.internal/keyturn", "postgresql+asyncpg://kt:pw@db.internal/keyturn"),
        ("postgresql+asyncpg://kt:pw@db.internal/keyturn", "postgresql+asyncpg://kt:pw@db.internal/keyturn"),
        ("postgresql://kt:p%40ss@[::1]:5432/keyturn", "postgresql+asyncpg://kt:p%40ss@[::1]:5432/keyturn"),
        ("postgresql://kt@db/keyturn?sslmode=verify-full", "postgresql+asyncpg://kt@db/keyturn?ssl=verify-full"),
        ("postgresql://kt@db/keyturn?ssl=require", "postgresql+asyncpg://kt@db/keyturn?ssl=require"),
        (
            "postgresql://kt@db/k?target_session_attrs=read-write",
            "postgresql+asyncpg://kt@db/k?target_session_attrs=read-write",
        ),
        ("postgresql:///keyturn?host=/run/postgresql", "postgresql+asyncpg:///keyturn?host=/run/postgresql"),
    ],
)
def test_database_urls_as_users_write_them_are_accepted(written: str, opened: str) -> None:
    """Plain sqlite:// and postgresql:// (or postgres://) map to the drivers keyturn ships; explicit forms stay."""
    assert load_settings(secret=STRONG, database_url=written).database_url == opened


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://kt:pw@db/keyturn", "'mysql://' is not supported"),
        ("postgresql+psycopg2://kt:pw@db/keyturn", "'postgresql+psycopg2://' is not supported"),
        ("sqlite+pysqlite:///keyturn.db", "'sqlite+pysqlite://' is not supported"),
        ("sqlite://", "in-memory SQLite"),
        ("sqlite:///:memory:", "in-memory SQLite"),
        ("sqlite:///keyturn.db?mode=ro", "SQLite URLs take no options"),
        ("sqlite://db.internal/keyturn.db", "a SQLite URL has no host"),
        ("keyturn.db", "is not a database URL"),
        ("postgresql://kt:pw@db:five432/keyturn", "is malformed"),
        ("postgresql://kt:pw@db1:5432,db2:5432/keyturn", "is malformed"),
        ("postgresql://kt:pw@db/keyturn?sslmode=required", "sslmode must be one of"),
        ("postgresql://kt:pw@db/keyturn?sslmode=require&ssl=require", "not both"),
        ("postgresql://kt:pw@db/keyturn?target_session_attrs=master", "target_session_attrs must be one of"),
        ("postgresql://kt:pw@db/keyturn?sslrootcert=/etc/ca.pem", "set PGSSLROOTCERT"),
        ("postgresql://kt:pw@db/keyturn?connect_timeout=10", "KEYTURN_DB_TIMEOUT"),
        ("postgresql://kt:pw@db/keyturn?application_name=x", "'application_name' is not supported"),
        ("postgresql://kt:pw@db/keyturn?pool_size=5", "unknown option 'pool_size'"),
    ],
)
def test_unusable_database_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    """Other drivers, in-memory SQLite, malformed URLs and options asyncpg would reject: one line, no password."""
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG, database_url=url)
    assert excinfo.value.setting == "KEYTURN_DATABASE_URL"
    assert reason in str(excinfo.value)
    assert "pw" not in str(excinfo.value).replace("psycopg2", "").replace("pysqlite", "")


def test_a_refused_database_url_never_shows_its_password_even_from_settings_directly() -> None:
    """Building Settings directly raises pydantic's error; its text hides the input (it may hold a password)."""
    with pytest.raises(ValidationError) as excinfo:
        Settings(secret=STRONG, database_url="mysql://kt:hunter2-password@db/keyturn")
    assert "hunter2" not in str(excinfo.value)


# --- mail (issue 17, point 4) -----------------------------------------------------------------------

MAIL_PASSWORD = "hunter2-mail-password"


def test_mail_defaults() -> None:
    """No mail unless configured (production); a 10 s timeout; links live 24 h (verify) and 30 min
    (reset); recovery is rate-limited per address and per IP; From: is the product at the issuer's host."""
    settings = load_settings(secret=STRONG)
    assert settings.mail_url is None
    assert settings.mail is None
    assert settings.mail_timeout == timedelta(seconds=10)
    assert (settings.email_token_ttl, settings.reset_token_ttl) == (timedelta(hours=24), timedelta(minutes=30))
    assert (settings.rate_limit_recovery_address, settings.rate_limit_recovery_ip) == ("3/15minutes;10/day", "20/hour")
    assert settings.require_verified_email is False
    assert settings.mail_sender == "keyturn <no-reply@auth.example>"
    assert load_settings(secret=STRONG, product_name="Acme ID").mail_sender == "Acme ID <no-reply@auth.example>"
    assert load_settings(secret=STRONG, mail_from="id@acme.example").mail_sender == "id@acme.example"


def test_development_mails_to_the_console_by_default(tmp_path: Path) -> None:
    """--dev with no KEYTURN_MAIL_URL prints mail to the log (console:), so the first command works
    with nothing else installed; a URL set in development wins."""
    assert load_settings(dev=True, secret_file=tmp_path / "s").mail == "console:"
    url = "smtp://127.0.0.1:2525?starttls=off"
    assert load_settings(dev=True, secret_file=tmp_path / "s", mail_url=url).mail == url
    verified = load_settings(dev=True, secret_file=tmp_path / "s", require_verified_email=True)
    assert verified.mail == "console:"  # development can verify from the log


def test_mail_url_from_the_environment_is_a_hidden_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """KEYTURN_MAIL_URL is read from the environment and its password is hidden in repr and dumps."""
    url = f"smtps://mailer:{MAIL_PASSWORD}@smtp.example.com"
    monkeypatch.setenv("KEYTURN_MAIL_URL", url)
    settings = load_settings(secret=STRONG)
    assert settings.mail == url
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert MAIL_PASSWORD not in text


def test_production_refuses_the_console_mailer(monkeypatch: pytest.MonkeyPatch) -> None:
    """console: outside development would write live reset links to the log: refused, named."""
    monkeypatch.setenv("KEYTURN_MAIL_URL", "console:")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG)
    assert excinfo.value.setting == "KEYTURN_MAIL_URL"
    assert str(excinfo.value) == "KEYTURN_MAIL_URL: console: writes reset links to the log: development only"
    assert load_settings(secret=STRONG, env="development", mail_url="console:").mail == "console:"


def test_required_verification_without_a_mailer_is_refused() -> None:
    """KEYTURN_REQUIRE_VERIFIED_EMAIL with no KEYTURN_MAIL_URL in production: no one could ever verify."""
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG, require_verified_email=True)
    assert excinfo.value.setting == "KEYTURN_MAIL_URL"
    assert "KEYTURN_REQUIRE_VERIFIED_EMAIL" in str(excinfo.value)
    settings = load_settings(secret=STRONG, require_verified_email=True, mail_url="smtps://smtp.example.com")
    assert settings.require_verified_email is True


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"smtp://mailer:{MAIL_PASSWORD}@smtp.example.com?starttls=off", "only to a loopback host"),
        (f"smtp://mailer:{MAIL_PASSWORD}@smtp.example.com:port", "the port is not a number"),
        (f"smtp://mailer:abc?{MAIL_PASSWORD}@smtp.example.com", "unknown option (starttls, cafile)"),
        (f"mailto://mailer:{MAIL_PASSWORD}@smtp.example.com", "use console:, smtp://host[:port] or smtps://"),
    ],
)
def test_a_bad_mail_url_is_one_line_naming_it_without_the_password(
    url: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unusable KEYTURN_MAIL_URL stops start-up with one line naming it and the reason, never the
    password; Settings built directly hide it too."""
    monkeypatch.setenv("KEYTURN_MAIL_URL", url)
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(secret=STRONG)
    assert excinfo.value.setting == "KEYTURN_MAIL_URL"
    assert str(excinfo.value).startswith("KEYTURN_MAIL_URL: ")
    assert reason in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
    assert MAIL_PASSWORD not in str(excinfo.value)
    monkeypatch.delenv("KEYTURN_MAIL_URL")
    with pytest.raises(ValidationError) as direct:
        Settings(secret=STRONG, issuer=ISSUER, mail_url=url)
    assert MAIL_PASSWORD not in str(direct.value)
