"""The Django app: `INSTALLED_APPS += ["skypost.contrib.django"]` and a `SKYPOST` setting."""

from __future__ import annotations

import threading
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings

from skypost.app import Skypost
from skypost.contrib.django.conf import settings_from
from skypost.contrib.django.hooks import Hooks
from skypost.contrib.django.mapping import Registry, register_mixin_models, registry


class SkypostConfig(AppConfig):
    name = "skypost.contrib.django"
    label = "skypost"
    verbose_name = "Bluesky syndication (skypost)"

    registry: Registry
    hooks: Hooks

    def ready(self) -> None:
        self.registry = registry
        register_mixin_models(apps.get_models(), into=self.registry)
        self._skypost: Skypost | None = None
        self._lock = threading.Lock()
        self.hooks = Hooks(self.registry, lambda: self.skypost.on_status_change)
        self.hooks.connect()

    @property
    def skypost(self) -> Skypost:
        """The site's Skypost, opened on first use (so `migrate` and friends never touch it)."""
        if self._skypost is None:
            with self._lock:
                if self._skypost is None:
                    config: dict[str, Any] = getattr(settings, "SKYPOST", {})
                    self._skypost = Skypost(settings_from(config))
        return self._skypost


def get_skypost() -> Skypost:
    """The Skypost of this Django site (for views and tasks: status, retry, submit)."""
    config = apps.get_app_config("skypost")
    assert isinstance(config, SkypostConfig)
    return config.skypost
