"""Every setting surveykit reads, with its default, its environment variable and its coercer.

Settings come from the .ini file first; a ``SURVEYKIT_*`` environment variable overrides the .ini
value. This module is the only place that reads either, so a setting cannot be read two ways.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The signing secret every development checkout shares. Production refuses to start with it.
DEVELOPMENT_SECRET = "surveykit-development-secret-do-not-use-in-production"


class ConfigurationError(RuntimeError):
    """A setting is missing, malformed or unsafe for the chosen environment."""


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def as_positive_int(value: Any) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return number


def as_block_size(value: Any) -> int:
    number = int(value)
    if not 1 <= number <= 100:
        raise ValueError(f"must be between 1 and 100, got {value!r}")
    return number


def as_environment(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in {"development", "production", "test"}:
        raise ValueError(f"must be development, production or test, got {value!r}")
    return text


def as_path(value: Any) -> str:
    return str(Path(str(value)).expanduser().resolve())


def as_str(value: Any) -> str:
    return str(value).strip()


def as_log_format(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in {"text", "json"}:
        raise ValueError(f"must be text or json, got {value!r}")
    return text


def as_header_names(value: Any) -> frozenset[str]:
    """Header names separated by spaces or commas, lower-cased (waitress's trusted_proxy_headers)."""
    if isinstance(value, (set, frozenset, list, tuple)):
        return frozenset(str(name).lower() for name in value)
    return frozenset(name.lower() for name in str(value).replace(",", " ").split())


def as_jwt_keys(value: Any) -> dict[str, str]:
    """``kid:secret,kid2:secret2``: the first key signs, every key verifies."""
    if isinstance(value, dict):
        return dict(value)
    keys: dict[str, str] = {}
    for item in str(value).split(","):
        kid, sep, secret = item.strip().partition(":")
        if not sep or not kid.strip() or not secret.strip():
            raise ValueError("expected kid:secret[,kid:secret...]")
        if kid.strip() in keys:
            raise ValueError(f"key id {kid.strip()!r} is listed twice")
        keys[kid.strip()] = secret.strip()
    return keys


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    coerce: Callable[[Any], Any]
    default: Any


SETTINGS: tuple[Setting, ...] = (
    Setting("surveykit.environment", "SURVEYKIT_ENV", as_environment, "development"),
    Setting("surveykit.data_dir", "SURVEYKIT_DATA_DIR", as_path, str(PROJECT_ROOT / "data")),
    # Empty means: the embedded SQLite file inside the data folder.
    Setting("sqlalchemy.url", "SURVEYKIT_DATABASE_URL", as_str, ""),
    Setting(
        "surveykit.instruments_dir",
        "SURVEYKIT_INSTRUMENTS_DIR",
        as_path,
        str(PROJECT_ROOT / "instruments"),
    ),
    Setting("surveykit.exports_dir", "SURVEYKIT_EXPORTS_DIR", as_path, str(PROJECT_ROOT / "exports")),
    # Export jobs (docs/export-jobs.md): threads per app process that build queued workbooks, how
    # long a finished job's file is kept, and how old a running job's heartbeat may grow before
    # its process is taken for dead and the job is started again (or failed).
    Setting("surveykit.export_workers", "SURVEYKIT_EXPORT_WORKERS", as_positive_int, 1),
    Setting(
        "surveykit.export_job_expiry_seconds",
        "SURVEYKIT_EXPORT_JOB_EXPIRY_SECONDS",
        as_positive_int,
        24 * 3600,
    ),
    Setting("surveykit.export_job_stale_seconds", "SURVEYKIT_EXPORT_JOB_STALE_SECONDS", as_positive_int, 60),
    Setting("surveykit.max_body_bytes", "SURVEYKIT_MAX_BODY_BYTES", as_positive_int, 10 * 1024 * 1024),
    # A request (headers and body) still incomplete this long after its first byte gets 408.
    Setting("surveykit.request_read_seconds", "SURVEYKIT_REQUEST_READ_SECONDS", as_positive_int, 30),
    Setting("surveykit.sqlite_busy_timeout_ms", "SURVEYKIT_SQLITE_BUSY_TIMEOUT_MS", as_positive_int, 10_000),
    Setting("surveykit.db_pool_size", "SURVEYKIT_DB_POOL_SIZE", as_positive_int, 10),
    Setting("surveykit.secret", "SURVEYKIT_SECRET", as_str, DEVELOPMENT_SECRET),
    Setting("surveykit.public_url", "SURVEYKIT_PUBLIC_URL", as_str, ""),
    # Empty means one key, id "k1", whose secret is surveykit.secret.
    Setting("surveykit.jwt_keys", "SURVEYKIT_JWT_KEYS", as_str, ""),
    Setting("surveykit.jwt_issuer", "SURVEYKIT_JWT_ISSUER", as_str, "surveykit"),
    Setting("surveykit.jwt_audience", "SURVEYKIT_JWT_AUDIENCE", as_str, "surveykit-api"),
    Setting("surveykit.access_token_seconds", "SURVEYKIT_ACCESS_TOKEN_SECONDS", as_positive_int, 300),
    Setting("surveykit.refresh_token_seconds", "SURVEYKIT_REFRESH_TOKEN_SECONDS", as_positive_int, 12 * 3600),
    # Tablets work offline for days: their sessions outlive a staff login by far.
    Setting(
        "surveykit.device_refresh_token_seconds",
        "SURVEYKIT_DEVICE_REFRESH_TOKEN_SECONDS",
        as_positive_int,
        30 * 24 * 3600,
    ),
    Setting("surveykit.enrolment_code_seconds", "SURVEYKIT_ENROLMENT_CODE_SECONDS", as_positive_int, 900),
    Setting("surveykit.password_min_length", "SURVEYKIT_PASSWORD_MIN_LENGTH", as_positive_int, 12),
    Setting("surveykit.lockout_threshold", "SURVEYKIT_LOCKOUT_THRESHOLD", as_positive_int, 5),
    Setting("surveykit.lockout_seconds", "SURVEYKIT_LOCKOUT_SECONDS", as_positive_int, 900),
    # Attempts one client address may make per window (more: 429 with Retry-After), counted in the
    # database so that every app process on one PostgreSQL shares the count.
    Setting("surveykit.login_rate_limit", "SURVEYKIT_LOGIN_RATE_LIMIT", as_positive_int, 30),
    Setting("surveykit.activation_rate_limit", "SURVEYKIT_ACTIVATION_RATE_LIMIT", as_positive_int, 30),
    Setting("surveykit.rate_limit_seconds", "SURVEYKIT_RATE_LIMIT_SECONDS", as_positive_int, 60),
    Setting("surveykit.admin_password", "SURVEYKIT_ADMIN_PASSWORD", as_str, ""),
    # Interview numbers reserved per request for a tablet to mint IDs from offline.
    Setting("surveykit.block_size", "SURVEYKIT_BLOCK_SIZE", as_block_size, 10),
    # Unused numbers one device may hold over all its blocks (reserved, neither recorded nor released);
    # a reservation that would pass it is refused, so no tablet can use up a country's numbers.
    Setting("surveykit.max_unused_numbers", "SURVEYKIT_MAX_UNUSED_NUMBERS", as_positive_int, 200),
    # Changes per POST /api/v1/sync (more: 413) and entries per page of GET /api/v1/sync/changes.
    Setting("surveykit.sync_max_batch", "SURVEYKIT_SYNC_MAX_BATCH", as_positive_int, 100),
    Setting("surveykit.sync_max_pull", "SURVEYKIT_SYNC_MAX_PULL", as_positive_int, 1000),
    # The access log and every other record: "text" lines or "json" lines (one object per line).
    Setting("surveykit.log_format", "SURVEYKIT_LOG_FORMAT", as_log_format, "text"),
    # The address of the reverse proxy in front (nginx): only from it are X-Forwarded-* headers
    # believed, so audit events and the login throttle see the real client. Empty: no proxy.
    Setting("surveykit.trusted_proxy", "SURVEYKIT_TRUSTED_PROXY", as_str, ""),
    Setting(
        "surveykit.trusted_proxy_headers",
        "SURVEYKIT_TRUSTED_PROXY_HEADERS",
        as_header_names,
        "x-forwarded-for x-forwarded-proto",
    ),
    # How many proxies append to X-Forwarded-For (the client is the entry before theirs).
    Setting("surveykit.trusted_proxy_count", "SURVEYKIT_TRUSTED_PROXY_COUNT", as_positive_int, 1),
)

# Shown masked by `surveykit config`.
SECRET_SETTINGS = frozenset(
    {"surveykit.secret", "surveykit.jwt_keys", "surveykit.admin_password", "sqlalchemy.url"}
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


def load_settings(
    ini_settings: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    production_checks: bool = True,
) -> dict[str, Any]:
    """Merge defaults, .ini values and environment overrides into one coerced dict.

    Unknown keys from the .ini (Pyramid's own, for instance) pass through untouched.
    ``production_checks=False`` only for tools that never serve (offline migration SQL).
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, Any] = dict(ini_settings or {})
    for setting in SETTINGS:
        source = setting_source(setting, merged, environ)
        if source == "environment":
            raw, origin = environ[setting.env], f"environment variable {setting.env}"
        elif source == "ini":
            raw, origin = merged[setting.name], f"setting {setting.name}"
        else:
            raw, origin = setting.default, f"default of {setting.name}"
        try:
            merged[setting.name] = setting.coerce(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{origin}: {exc}") from exc
    if not merged["sqlalchemy.url"]:
        merged["sqlalchemy.url"] = sqlite_url_for(merged["surveykit.data_dir"])
    check_database_url(merged["sqlalchemy.url"])
    try:
        merged["surveykit.jwt_keys"] = as_jwt_keys(
            merged["surveykit.jwt_keys"] or f"k1:{merged['surveykit.secret']}"
        )
    except ValueError as exc:
        raise ConfigurationError(f"SURVEYKIT_JWT_KEYS: {exc}") from exc
    if production_checks:
        check_production_safety(merged)
    return merged


def setting_source(setting: Setting, ini_settings: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """Where a setting's value comes from: ``environment``, ``ini`` or ``default``."""
    if setting.env in environ:
        return "environment"
    if setting.name in ini_settings and ini_settings[setting.name] not in (None, ""):
        return "ini"
    return "default"


def check_database_url(url: str) -> None:
    """Refuse, in one sentence, a database URL SQLAlchemy would fail on with a long traceback."""
    scheme = url.partition(":")[0].lower()
    if scheme in {"postgres", "postgresql", "postgresql+psycopg2"}:
        raise ConfigurationError(
            f"database URL {scheme}://... is not supported: write postgresql+psycopg://user@host/db "
            "(the psycopg 3 driver surveykit installs)"
        )
    if scheme not in {"sqlite", "sqlite+pysqlite", "postgresql+psycopg"}:
        raise ConfigurationError(
            f"database URL scheme {scheme or '(none)'!r} is not supported: use "
            "postgresql+psycopg://user@host/db, or leave the URL empty for the embedded SQLite file"
        )
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"database URL is malformed: {exc}") from exc


def sqlite_url_for(data_dir: str) -> str:
    return f"sqlite:///{Path(data_dir) / 'surveykit.sqlite3'}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def check_production_safety(settings: Mapping[str, Any]) -> None:
    if settings["surveykit.environment"] != "production":
        return
    secret = settings["surveykit.secret"]
    if secret == DEVELOPMENT_SECRET:
        raise ConfigurationError(
            "production refuses to start with the development secret: "
            "set SURVEYKIT_SECRET (at least 32 characters)"
        )
    if len(secret) < 32:
        raise ConfigurationError("SURVEYKIT_SECRET must be at least 32 characters in production")
    public_url = settings["surveykit.public_url"]
    if not public_url.startswith("https://") or len(public_url) <= len("https://"):
        # Without it, enrolment QR codes carry whatever Host header the request came with.
        raise ConfigurationError(
            "production needs SURVEYKIT_PUBLIC_URL, the https:// address tablets reach the server at "
            f"(got {public_url!r})"
        )
    for kid, key in settings["surveykit.jwt_keys"].items():
        if key == DEVELOPMENT_SECRET:
            raise ConfigurationError(f"production refuses to start with the development signing key ({kid})")
        if len(key) < 32:
            raise ConfigurationError(f"signing key {kid!r} must be at least 32 characters in production")


def setting_names() -> list[str]:
    return list(_BY_NAME)


def describe_settings(
    ini_settings: Mapping[str, Any], environ: Mapping[str, str], ini_path: str | None = None
) -> list[dict[str, str]]:
    """Every setting as ``name``, ``value`` (secrets masked) and ``source`` (default, the ini, or the
    environment variable), for ``surveykit config``."""
    settings = load_settings(ini_settings, environ)
    rows = []
    for setting in SETTINGS:
        source = setting_source(setting, ini_settings, environ)
        where = {"environment": f"environment ({setting.env})", "ini": f"ini ({ini_path or 'file'})"}
        value = settings[setting.name]
        if setting.name == "sqlalchemy.url" and source == "default":
            source, shown = "default", f"{value} (embedded SQLite in the data folder)"
        elif setting.name in SECRET_SETTINGS:
            shown = mask(setting.name, value)
        elif isinstance(value, (set, frozenset)):
            shown = " ".join(sorted(value))
        else:
            shown = str(value)
        rows.append({"name": setting.name, "value": shown, "source": where.get(source, "default")})
    return rows


def mask(name: str, value: Any) -> str:
    """A secret shown without its secret part: a URL keeps all but its password, keys their ids."""
    if name == "sqlalchemy.url":
        from sqlalchemy.engine import make_url

        return make_url(value).render_as_string(hide_password=True)
    if name == "surveykit.jwt_keys":
        return ",".join(f"{kid}:***" for kid in value)
    return "***" if value else "(empty)"
