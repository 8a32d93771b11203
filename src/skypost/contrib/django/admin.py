"""Django admin: a read-only Bluesky status column, a list filter and a Retry action.

    @admin.register(Article)
    class ArticleAdmin(SyndicationAdminMixin, admin.ModelAdmin):
        list_display = ["title"]
"""

from __future__ import annotations

from typing import Any, Iterator

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from skypost.app import Skypost
from skypost.contrib.django.apps import SkypostConfig, get_skypost
from skypost.contrib.django.mapping import Syndication
from skypost.models import PostStatus

_PAGE = 200


def _syndication(model: type) -> Syndication:
    app_config = apps.get_app_config("skypost")
    assert isinstance(app_config, SkypostConfig)
    found = app_config.registry.for_model(model)
    if found is None:
        raise LookupError(f"{model.__name__} is not syndicated: add @syndicate or Syndicated")
    return found


def _ids_with_status(app: Skypost, status: str) -> Iterator[str]:
    """Every post id skypost holds with this status, newest first, page by page."""
    before = None
    while True:
        page = app.list_posts(status=status, limit=_PAGE, before=before)
        yield from (item["id"] for item in page)
        if len(page) < _PAGE:
            return
        before = page[-1]["seq"]


class SyndicationStatusFilter(admin.SimpleListFilter):
    title = "Bluesky"
    parameter_name = "skypost_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(s.value, s.value.replace("_", " ")) for s in PostStatus]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() is None:
            return queryset
        ids = set(_ids_with_status(get_skypost(), self.value()))
        syndication = _syndication(queryset.model)
        # the id is the site's choice (any function of the object): match it object by object
        pks = [obj.pk for obj in queryset.iterator() if syndication.document_id(obj) in ids]
        return queryset.filter(pk__in=pks)


class SyndicationAdminMixin:
    """For a ModelAdmin of a syndicated model: adds the column, the filter and the action."""

    def get_list_display(self, request: HttpRequest) -> Any:
        return [*super().get_list_display(request), "skypost_status"]  # type: ignore[misc]

    def get_list_filter(self, request: HttpRequest) -> Any:
        return [*super().get_list_filter(request), SyndicationStatusFilter]  # type: ignore[misc]

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)  # type: ignore[misc]
        off = self.actions is None or IS_POPUP_VAR in request.GET  # type: ignore[attr-defined]
        if off or not self.has_change_permission(request):  # type: ignore[attr-defined]
            return actions
        action = type(self).skypost_retry
        actions["skypost_retry"] = (action, "skypost_retry", action.short_description)
        return actions

    @admin.display(description="Bluesky")
    def skypost_status(self, obj: Any) -> str:
        status = get_skypost().status(_syndication(type(obj)).document_id(obj))
        if status is None:
            return "—"
        links = [d["url"] for d in status["deliveries"] if d.get("url")]
        if links:
            return format_html('{} <a href="{}">view</a>', status["status"], links[0])
        return status["status"]

    @admin.action(description="Retry syndication to Bluesky")
    def skypost_retry(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        app = get_skypost()
        syndication = _syndication(queryset.model)
        retried = [app.retry(syndication.document_id(obj)) for obj in queryset]
        known = [r for r in retried if r is not None]
        self.message_user(request,  # type: ignore[attr-defined]
                          f"Retry requested for {len(known)} post(s); "
                          f"{len(retried) - len(known)} never went to skypost.", messages.INFO)
