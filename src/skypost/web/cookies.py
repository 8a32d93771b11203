"""The session cookie's Secure flag, and the scheme a request really came over.

Behind a TLS-terminating proxy, skypost sees plain HTTP; the proxy says `https` in
X-Forwarded-Proto. Anyone can send that header, so it is believed only from the
peers listed in the trusted_proxies setting.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Sequence

from starlette.datastructures import Headers
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_SECURE_SCHEMES = ("https", "wss")


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """IPs or networks ("10.0.0.1", "10.0.0.0/8", "::1"); ValueError for anything else."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def peer_is_trusted(host: str | None, trusted: Sequence[Network]) -> bool:
    if not host or not trusted:
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:  # a Unix socket path, a test client's name
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


class TrustedProxyScheme:
    """Set the request's scheme from X-Forwarded-Proto when the peer is a trusted proxy."""

    def __init__(self, app: ASGIApp, *, trusted: Sequence[Network]):
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.trusted:
            client = scope.get("client")
            if client and peer_is_trusted(client[0], self.trusted):
                forwarded = Headers(scope=scope).get("x-forwarded-proto", "")
                # the last value is the one the nearest proxy (the trusted peer) added
                proto = forwarded.split(",")[-1].strip().lower()
                if proto in ("http", "https"):
                    if scope["type"] == "websocket":
                        proto = "wss" if proto == "https" else "ws"
                    scope = {**scope, "scheme": proto}
        await self.app(scope, receive, send)


class SessionCookies:
    """Starlette's SessionMiddleware whose cookie is marked Secure when the request came
    over HTTPS, or always when `always_secure`."""

    def __init__(self, app: ASGIApp, *, always_secure: bool, **options: Any):
        self.secure = SessionMiddleware(app, https_only=True, **options)
        self.plain = self.secure if always_secure else SessionMiddleware(app, https_only=False,
                                                                         **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        secure = scope.get("scheme") in _SECURE_SCHEMES
        await (self.secure if secure else self.plain)(scope, receive, send)
