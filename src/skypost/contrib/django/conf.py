"""`settings.SKYPOST` → skypost's Settings.

The keys are those of `skypost.toml` (`database_url`, `allow_private_urls`, `retry_delays`…);
they go through the same conversion and checks as the environment, and win over it.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from skypost.config import Settings, load_settings


def _as_env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def settings_from(skypost: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from a `SKYPOST` dict; `database_url` is required (the site chooses the file
    or the PostgreSQL database: skypost keeps its own tables there)."""
    if not skypost.get("database_url"):
        raise ValueError('settings.SKYPOST needs a "database_url" '
                         '(e.g. "sqlite:////srv/site/skypost.db" or the site\'s PostgreSQL URL)')
    env = dict(os.environ if environ is None else environ)
    env.update({"SKYPOST_" + key.upper(): _as_env_value(value) for key, value in skypost.items()})
    return load_settings(env=env)
