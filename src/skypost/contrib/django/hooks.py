"""Signal handlers: a change of a syndicated object into "published" reaches skypost only after
the site's transaction commits, so a rolled-back save never posts."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Callable

from django.apps import apps
from django.db import transaction
from django.db.models.signals import post_save, pre_save

from skypost.contrib.django.mapping import Registry, Syndication
from skypost.models import ValidationError

log = logging.getLogger("skypost.contrib.django")

# on_status_change(document, old=..., new=...)
StatusChange = Callable[..., Any]

_WAS_PUBLISHED = "_skypost_was_published"
PUBLISHED, DRAFT = "published", "draft"


def _wagtail_installed() -> bool:
    # imported only when the site runs Wagtail: its models need its app to be installed
    return apps.is_installed("wagtail")


def _is_wagtail_page(model: type) -> bool:
    if not _wagtail_installed():
        return False
    from wagtail.models import Page

    return issubclass(model, Page)


class Hooks:
    """Connects the registry's models to skypost. `status_change` is called after commit."""

    def __init__(self, registry: Registry, status_change: Callable[[], StatusChange]) -> None:
        self.registry = registry
        self._status_change = status_change  # a getter: skypost is opened on first use

    def connect(self) -> None:
        pre_save.connect(self.remember_state, dispatch_uid="skypost.pre_save")
        post_save.connect(self.after_save, dispatch_uid="skypost.post_save")
        if not _wagtail_installed():
            return
        from wagtail.signals import page_published, page_unpublished

        page_published.connect(self.after_publish, dispatch_uid="skypost.page_published")
        page_unpublished.connect(self.after_unpublish, dispatch_uid="skypost.page_unpublished")

    def disconnect(self) -> None:
        pre_save.disconnect(dispatch_uid="skypost.pre_save")
        post_save.disconnect(dispatch_uid="skypost.post_save")
        if not _wagtail_installed():
            return
        from wagtail.signals import page_published, page_unpublished

        page_published.disconnect(dispatch_uid="skypost.page_published")
        page_unpublished.disconnect(dispatch_uid="skypost.page_unpublished")

    # --- plain models: pre_save / post_save ----------------------------------------------

    def remember_state(self, sender: type, instance: Any, raw: bool = False,
                       using: str | None = None, **kwargs: Any) -> None:
        """Whether the stored row was published before this save (what `old` is)."""
        syndication = self.registry.for_instance(instance)
        if syndication is None or raw:
            return
        was = False
        if not instance._state.adding and instance.pk is not None:
            stored = sender._base_manager.using(using).filter(pk=instance.pk).first()
            was = stored is not None and syndication.is_published(stored)
        setattr(instance, _WAS_PUBLISHED, was)

    def after_save(self, sender: type, instance: Any, created: bool = False, raw: bool = False,
                   using: str | None = None, **kwargs: Any) -> None:
        syndication = self.registry.for_instance(instance)
        if syndication is None or raw or _is_wagtail_page(sender):
            return  # a page is syndicated when Wagtail publishes it, not on every save
        was = getattr(instance, _WAS_PUBLISHED, not created)
        self._transition(syndication, instance, was, using)

    # --- Wagtail: page_published / page_unpublished ----------------------------------------

    def after_publish(self, sender: type, instance: Any, **kwargs: Any) -> None:
        syndication = self.registry.for_instance(instance)
        if syndication is None:
            return
        # the page row was saved (live) just before the signal: pre_save saw the old row
        first_publish = instance.first_published_at == instance.last_published_at
        was = getattr(instance, _WAS_PUBLISHED, not first_publish)
        self._transition(syndication, instance, was, None)

    def after_unpublish(self, sender: type, instance: Any, **kwargs: Any) -> None:
        syndication = self.registry.for_instance(instance)
        if syndication is not None:
            # a change out of "published" never posts; skypost is told for completeness
            self._later(syndication.document(instance), PUBLISHED, DRAFT, None)

    # --- both ----------------------------------------------------------------------------

    def _transition(self, syndication: Syndication, instance: Any, was: bool,
                    using: str | None) -> None:
        now = syndication.is_published(instance)
        setattr(instance, _WAS_PUBLISHED, now)  # a second save of this object is an edit
        if now and not was:  # edits and unpublished saves never post: nothing to tell
            self._later(syndication.document(instance), DRAFT, PUBLISHED, using)

    def _later(self, document: dict[str, Any], old: str, new: str, using: str | None) -> None:
        # the document is taken now, as saved; skypost hears of it once the commit is done
        transaction.on_commit(partial(self._deliver, document, old, new), using=using, robust=True)

    def _deliver(self, document: dict[str, Any], old: str, new: str) -> None:
        try:
            self._status_change()(document, old=old, new=new)
        except ValidationError as exc:
            log.error("skypost refused the post document of %s: %s", document.get("id"), exc)
