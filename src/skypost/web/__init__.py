"""`skypost serve`: the HTTP API, signed webhooks, the dashboard and Prometheus metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skypost.web.app import create_app as create_app


def __getattr__(name: str) -> Any:
    # Starlette is imported only when the web side is used (the CLI stays fast)
    if name == "create_app":
        from skypost.web.app import create_app

        return create_app
    raise AttributeError(name)
