"""Settings: defaults, then an optional TOML config file, then the environment.

Every knob has a config-file key (the lower-case name without the SKYPOST_
prefix); the environment wins over the file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import tomllib
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "sqlite:///skypost.db"


class ConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    retry_delays: tuple[float, ...] = (60.0, 120.0, 300.0)
    circuit_threshold: int = 3
    circuit_cooldown: float = 900.0
    job_lease: float = 60.0
    allow_private_urls: bool = False
    secret_key: str | None = None
    secret_key_file: str | None = None
    # "db": a worker publishes; "inline": submit runs the pipeline in-process (rule 13)
    queue: str = "db"
    # how often an idle worker looks for due jobs (a wake-up also comes in-process / by NOTIFY)
    poll_interval: float = 1.0
    # seconds without a heartbeat after which `status` warns that no worker runs
    worker_stale_after: float = 120.0
    # the name of this host's egress IP budget (Bluesky limits each IP)
    egress_id: str = dataclasses.field(default_factory=socket.gethostname)
    # requests kept in reserve: work is held back when a budget falls to this
    rate_limit_reserve: int = 1
    # network timeout for one Bluesky call
    http_timeout: float = 30.0
    # the shortest interval between two polls of a feed
    feed_min_interval: float = 60.0
    # a new feed entry dated up to this long before the feed was added is still a new post
    feed_cutoff_grace: float = 86400.0
    # finished jobs and activity-log events older than this many days are deleted (0: keep all)
    retention_days: float = 30.0
    # how often a worker prunes them
    prune_interval: float = 3600.0
    # mark the dashboard cookie Secure on every response (off: only for requests over HTTPS)
    cookie_secure: bool = False
    # peers (IPs or networks) whose X-Forwarded-Proto is believed (TLS-terminating proxies)
    trusted_proxies: tuple[str, ...] = ()
    # seconds between two backfeed polls of an account (0: no recurring poll, `skypost backfeed` only)
    backfeed_interval: float = 300.0
    # the backfeed looks after posts syndicated in the last this many days
    backfeed_days: float = 14.0
    # where `skypost serve` is reached from the internet: each interaction gets a public
    # h-entry page {public_url}/i/{id}, sent to the site as a Webmention (None: no Webmention)
    public_url: str | None = None
    # seconds one webhook or Webmention request (and endpoint discovery) may take
    notify_timeout: float = 10.0

    def key_file(self) -> Path:
        """Where the Fernet key lives when it is not given in SKYPOST_SECRET_KEY."""
        if self.secret_key_file:
            return Path(self.secret_key_file)
        path = sqlite_path(self.database_url)
        if path is not None:
            return path.parent / "skypost.key"
        return Path("skypost.key")

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (None for in-memory or another database)."""
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    rest = rest.split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


_FLOAT_LIST = ("retry_delays",)
_INTS = ("circuit_threshold", "rate_limit_reserve")
_FLOATS = ("circuit_cooldown", "job_lease", "poll_interval", "worker_stale_after", "http_timeout",
           "feed_min_interval", "feed_cutoff_grace", "retention_days", "prune_interval",
           "backfeed_interval", "backfeed_days", "notify_timeout")
_BOOLS = ("allow_private_urls", "cookie_secure")
_NETWORKS = ("trusted_proxies",)
_STRINGS = ("database_url", "secret_key", "secret_key_file", "queue", "egress_id", "public_url")


def _convert(name: str, value: Any) -> Any:
    try:
        if name in _FLOAT_LIST:
            items = value.split(",") if isinstance(value, str) else list(value)
            delays = tuple(float(str(v).strip()) for v in items if str(v).strip())
            if any(d < 0 for d in delays):
                raise ValueError("delays must not be negative")
            return delays
        if name in _INTS:
            number = int(value)
            if number < 1 and name == "circuit_threshold":
                raise ValueError("must be at least 1")
            return number
        if name in _FLOATS:
            number = float(value)
            if number < 0:
                raise ValueError("must not be negative")
            return number
        if name in _BOOLS:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("must be 0 or 1")
        if name in _NETWORKS:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(ipaddress.ip_network(str(v).strip(), strict=False))
                         for v in items if str(v).strip())
        if name in _STRINGS:
            text = str(value)
            if name == "queue" and text not in ("db", "inline"):
                raise ValueError("must be 'db' or 'inline'")
            if name == "public_url":
                return _public_url(text)
            return text
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: invalid value {value!r} ({exc})") from None
    raise ConfigError(f"unknown setting {name!r}")


def _public_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("must be an http:// or https:// URL without query or fragment")
    return text.strip().rstrip("/")


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults < config file (SKYPOST_CONFIG or ./skypost.toml) < environment < overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = Path(config_file or env.get("SKYPOST_CONFIG") or "skypost.toml")
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for key, value in data.items():
            values[key] = _convert(key, value)
    elif config_file or env.get("SKYPOST_CONFIG"):
        raise ConfigError(f"config file {path} does not exist")
    for field in dataclasses.fields(Settings):
        raw = env.get("SKYPOST_" + field.name.upper())
        if raw is not None and raw != "":
            values[field.name] = _convert(field.name, raw)
    for key, value in overrides.items():
        if value is not None:
            values[key] = value
    return Settings(**values)
