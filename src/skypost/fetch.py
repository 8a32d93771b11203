"""Outgoing HTTP for pages, images and feeds, safe against SSRF.

Everything skypost fetches on behalf of a site (the page behind a link card, its
image, a feed) goes through :class:`SafeFetcher`:

* only ``http`` and ``https`` URLs with a host are fetched;
* the host is resolved first and *every* address it resolves to is checked: private,
  loopback, link-local (169.254.169.254 included), multicast, reserved, unspecified
  and other non-public addresses are refused, IPv4 and IPv6 alike (IPv4-mapped,
  6to4, Teredo and NAT64 addresses are judged by the IPv4 address they carry),
  unless ``allow_private`` is set;
* the connection is **pinned** to the address that was checked: the request is sent
  to the IP itself, with the real name in the ``Host`` header and, for https, as the
  TLS SNI name (httpcore's ``sni_hostname`` extension), so the certificate is still
  verified against the name. A second DNS answer (DNS rebinding) is never used.
  A transport passed in for tests therefore sees the IP in ``request.url`` and the
  name in the ``Host`` header;
* redirects are followed by hand, each hop checked again, at most ``max_redirects``;
* the body is streamed and the fetch stops as soon as it exceeds ``max_bytes``
  (a larger ``Content-Length`` is refused before reading); the cap applies to the
  decoded body, which is decoded here piece by piece (gzip, deflate, zstd; one coding
  at most, see :mod:`skypost.content_coding`), so a compressed bomb is stopped with
  little memory;
* ``timeout`` bounds each connect/read/write, and one wall-clock deadline,
  ``total_timeout`` (3 × ``timeout`` by default), covers the whole ``get``: every hop,
  connect, headers and body. A watchdog shuts the connection down when it passes, so
  a server dripping its headers one byte at a time cannot hold a worker;
* environment proxies are ignored (a proxy would defeat the address checks).

Every problem becomes a :class:`FetchError` with a human-readable ``reason``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Iterator, Mapping, Sequence

import httpx

from skypost.content_coding import (
    ContentCodingError,
    accept_encoding,
    decoded,
    parse_content_encoding,
)

__all__ = [
    "FetchError",
    "FetchResult",
    "SafeFetcher",
    "address_refusal",
    "check_url",
    "default_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
AddressPolicy = Callable[[IPAddress], "str | None"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SENSITIVE_HEADERS = ("authorization", "cookie", "proxy-authorization")
_MAX_ADDRESSES_TRIED = 3
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class FetchError(Exception):
    """A fetch that did not give a usable answer.

    ``reason`` is human readable ("refused: 10.0.0.1 is a private address").
    ``kind`` says what went wrong, for callers that classify failures:
    ``"invalid_url"``, ``"refused"``, ``"dns"``, ``"network"``, ``"timeout"``,
    ``"too_large"``, ``"encoding"`` (a refused or broken content coding), ``"redirects"``
    or ``"status"``. ``status`` (and ``headers``) are
    set when the server answered with a status the caller did not accept.
    """

    def __init__(
        self,
        reason: str,
        *,
        kind: str = "network",
        url: str | None = None,
        status: int | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.url = url
        self.status = status
        self.headers = headers

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class FetchResult:
    url: str  # the final URL, after redirects
    status: int
    headers: httpx.Headers
    content: bytes


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # (server, client): the client is where traffic goes
    for net in _NAT64:
        if ip in net:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(ip: IPAddress | str) -> str | None:
    """Why ``ip`` must not be fetched from (``"refused: … is a private address"``), or None."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            why = address_refusal(inner)
            shown = f"::ffff:{inner}" if ip.ipv4_mapped is not None else str(ip)
            if why is not None:
                return f"refused: {shown} carries {inner}, " + why.split(" is ", 1)[-1]
            if ip.ipv4_mapped is not None or any(ip in net for net in _NAT64):
                return None  # ::ffff:a.b.c.d and NAT64 64:ff9b::a.b.c.d reach a.b.c.d
    shown = ip
    if ip.is_unspecified:
        what = "an unspecified address"
    elif ip.is_loopback:
        what = "a loopback address"
    elif ip.is_link_local:
        what = "a link-local address"
    elif ip.is_multicast:
        what = "a multicast address"
    elif isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        what = "a site-local address"
    elif ip.is_private:
        what = "a private address"
    elif ip.is_reserved:
        what = "a reserved address"
    elif not ip.is_global:
        what = "not a public address"
    else:
        return None
    return f"refused: {shown} is {what}"


def check_url(url: str) -> httpx.URL:
    """Parse ``url`` and make sure it is an absolute http(s) URL with a host."""
    if not isinstance(url, str) or not url.strip():
        raise FetchError("refused: empty URL", kind="invalid_url", url=str(url))
    if any(ch.isspace() for ch in url.strip()):
        raise FetchError(f"refused: {url!r} contains whitespace", kind="invalid_url", url=url)
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise FetchError(f"refused: {url!r} is not a valid URL ({exc})", kind="invalid_url", url=url) from None
    if parsed.scheme not in ("http", "https"):
        shown = parsed.scheme or "no scheme"
        raise FetchError(
            f"refused: only http:// and https:// URLs are fetched, not {shown} ({url})",
            kind="invalid_url",
            url=url,
        )
    if not parsed.raw_host:
        raise FetchError(f"refused: {url!r} has no host name", kind="invalid_url", url=url)
    try:
        port = parsed.port
    except (ValueError, httpx.InvalidURL) as exc:
        raise FetchError(f"refused: {url!r} has a bad port ({exc})", kind="invalid_url", url=url) from None
    if port is not None and not 0 < port < 65536:
        raise FetchError(f"refused: {url!r} has a bad port ({port})", kind="invalid_url", url=url)
    return parsed


def host_refusal(url: httpx.URL, resolver: Callable[[str, int], Sequence[str]] | None = None) -> str | None:
    """Why a URL given by a person (an account's service, a webhook target) must not be used:
    its host resolves to a non-public address. None when it is public or does not resolve
    (a name that resolves nowhere reaches nobody; every later request checks again)."""
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = [host] if _is_ip_literal(host) else list((resolver or default_resolver)(host, port))
    except (OSError, UnicodeError):
        return None
    for address in addresses:
        try:
            why = address_refusal(address.split("%", 1)[0])
        except ValueError:
            why = f"refused: {address} is not an IP address"
        if why:
            return f"{why} ({host})"
    return None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def default_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (system resolver), in its order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class SafeFetcher:
    """GET with SSRF checks, pinned connections, manual redirects and a size cap."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        timeout: float = 10.0,
        max_bytes: int = 10_000_000,
        user_agent: str = "skypost (+https://github.com/skypost)",
        max_redirects: int = 5,
        transport: httpx.BaseTransport | None = None,
        total_timeout: float | None = None,
        resolver: Resolver | None = None,
        address_policy: AddressPolicy | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        """``resolver(host, port) -> [ip, ...]`` and ``address_policy(ip) -> refusal or None``
        replace the system resolver and the default check (tests use them to allow loopback
        while refusing 10.x); ``verify`` is passed to httpx (a CA bundle or SSL context)."""
        self.allow_private = allow_private
        self.timeout = float(timeout)
        self.total_timeout = float(total_timeout) if total_timeout is not None else 3 * self.timeout
        self.max_bytes = int(max_bytes)
        self.user_agent = user_agent
        self.max_redirects = int(max_redirects)
        self._resolver: Resolver = resolver or default_resolver
        if address_policy is None:
            address_policy = (lambda ip: None) if allow_private else address_refusal
        self._policy: AddressPolicy = address_policy
        if transport is None:
            # No keep-alive: requests go to an IP with the name in Host/SNI, and a pooled
            # connection must never be reused for another name that shares the address.
            transport = httpx.HTTPTransport(
                verify=verify, retries=0, limits=httpx.Limits(max_keepalive_connections=0)
            )
        self._client = httpx.Client(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            timeout=self.timeout,
            headers={"User-Agent": user_agent, "Accept-Encoding": accept_encoding()},
        )

    # -- public --------------------------------------------------------------

    def get(
        self,
        url: str,
        *,
        max_bytes: int | None = None,
        headers: Mapping[str, str] | None = None,
        accept_statuses: Collection[int] = (200,),
    ) -> FetchResult:
        """GET ``url``; raise FetchError unless the final status is in ``accept_statuses``.

        Redirects are followed (each hop checked) unless the caller accepts that redirect
        status itself. ``FetchResult.url`` is the final URL."""
        cap = self.max_bytes if max_bytes is None else int(max_bytes)
        deadline = time.monotonic() + self.total_timeout
        watchdog = _Watchdog(deadline)
        try:
            return self._get(url, cap, headers, accept_statuses, deadline, watchdog)
        finally:
            watchdog.stop()

    def _get(
        self,
        url: str,
        cap: int,
        headers: Mapping[str, str] | None,
        accept_statuses: Collection[int],
        deadline: float,
        watchdog: "_Watchdog",
    ) -> FetchResult:
        request_headers = {k: v for k, v in (headers or {}).items() if k.lower() != "host"}
        current = url
        hops = 0
        while True:
            parsed = check_url(current)
            addresses = self._checked_addresses(parsed, current)
            response = self._send(parsed, addresses, request_headers, deadline, watchdog, current)
            try:
                status = response.status_code
                location = response.headers.get("location")
                if status in _REDIRECTS and location and status not in accept_statuses:
                    hops += 1
                    if hops > self.max_redirects:
                        raise FetchError(
                            f"too many redirects (more than {self.max_redirects}) from {url}",
                            kind="redirects",
                            url=current,
                        )
                    try:
                        target = parsed.join(location.strip())
                    except (httpx.InvalidURL, ValueError) as exc:
                        raise FetchError(
                            f"bad redirect from {current} to {location!r} ({exc})",
                            kind="invalid_url",
                            url=current,
                        ) from None
                    if (target.scheme, target.raw_host, target.port) != (parsed.scheme, parsed.raw_host, parsed.port):
                        request_headers = {
                            k: v for k, v in request_headers.items() if k.lower() not in _SENSITIVE_HEADERS
                        }
                    current = str(target)
                    continue
                if status not in accept_statuses:
                    raise FetchError(
                        f"HTTP {status} {response.reason_phrase or ''}".rstrip() + f" from {current}",
                        kind="status",
                        url=current,
                        status=status,
                        headers=response.headers,
                    )
                content = self._read(response, cap, deadline, watchdog, current)
                return FetchResult(url=current, status=status, headers=response.headers, content=content)
            finally:
                watchdog.forget()  # this hop's socket is closed next: never shut it down after
                response.close()

    def post(
        self,
        url: str,
        *,
        content: bytes,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = 65_536,
    ) -> FetchResult:
        """POST ``content`` to ``url`` with the same address checks, pinning and deadline as
        ``get``; redirects are not followed. Any status is returned (the caller judges it);
        the answer's body is read up to ``max_bytes`` and cut there, never refused."""
        deadline = time.monotonic() + self.total_timeout
        watchdog = _Watchdog(deadline)
        try:
            parsed = check_url(url)
            addresses = self._checked_addresses(parsed, url)
            request_headers = {k: v for k, v in (headers or {}).items() if k.lower() != "host"}
            response = self._send(parsed, addresses, request_headers, deadline, watchdog, url,
                                  method="POST", content=content)
            try:
                try:
                    body = self._read(response, max_bytes, deadline, watchdog, url)
                except FetchError as exc:
                    if exc.kind not in ("too_large", "encoding"):
                        raise
                    body = b""  # the status is the answer: a receiver's chatter is not needed
                return FetchResult(url=url, status=response.status_code, headers=response.headers,
                                   content=body)
            finally:
                watchdog.forget()
                response.close()
        finally:
            watchdog.stop()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "SafeFetcher":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------

    def _checked_addresses(self, parsed: httpx.URL, url: str) -> list[IPAddress]:
        host = parsed.raw_host.decode("ascii")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        literal = _literal_ip(host)
        if literal is not None:
            found = [literal]
        else:
            try:
                raw = list(self._resolver(host.rstrip("."), port))
            except (OSError, UnicodeError) as exc:
                raise FetchError(f"cannot resolve {host}: {exc}", kind="dns", url=url) from None
            found = []
            for value in raw:
                try:
                    found.append(ipaddress.ip_address(str(value).split("%", 1)[0]))
                except ValueError:
                    raise FetchError(f"cannot resolve {host}: bad address {value!r}", kind="dns", url=url) from None
            if not found:
                raise FetchError(f"cannot resolve {host}: no address", kind="dns", url=url)
        for ip in found:  # one bad address is enough to refuse the host
            why = self._policy(ip)
            if why:
                if literal is None:
                    why = f"{why} ({host} resolves to it)"
                raise FetchError(why, kind="refused", url=url)
        return found

    def _send(
        self,
        parsed: httpx.URL,
        addresses: list[IPAddress],
        headers: Mapping[str, str],
        deadline: float,
        watchdog: "_Watchdog",
        url: str,
        *,
        method: str = "GET",
        content: bytes | None = None,
    ) -> httpx.Response:
        host = parsed.raw_host.decode("ascii")
        is_literal = _literal_ip(host) is not None
        last: Exception | None = None
        for ip in addresses[:_MAX_ADDRESSES_TRIED]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchError(f"timed out fetching {url}", kind="timeout", url=url)
            target = parsed
            extensions: dict[str, object] = {"trace": watchdog.trace}
            if not is_literal:
                pinned = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
                target = parsed.copy_with(host=str(pinned))
                if parsed.scheme == "https":
                    extensions["sni_hostname"] = host
            request_headers = dict(headers)
            request_headers["Host"] = parsed.netloc.decode("ascii")
            try:
                request = self._client.build_request(
                    method,
                    target,
                    content=content,
                    headers=request_headers,
                    extensions=extensions,
                    timeout=httpx.Timeout(min(self.timeout, remaining)),
                )
                return self._client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if watchdog.fired:
                    raise FetchError(f"timed out fetching {url}", kind="timeout", url=url) from None
                last = exc
                continue
            except httpx.TimeoutException:
                raise FetchError(f"timed out fetching {url}", kind="timeout", url=url) from None
            except (httpx.HTTPError, httpx.InvalidURL, ssl.SSLError, OSError, ValueError) as exc:
                if watchdog.fired:  # the deadline passed while the headers came in
                    raise FetchError(f"timed out fetching {url}", kind="timeout", url=url) from None
                raise FetchError(f"cannot fetch {url}: {_describe(exc)}", kind="network", url=url) from None
            except MemoryError:
                raise FetchError(f"{url} needs more memory than this process has", kind="too_large",
                                 url=url) from None
        if isinstance(last, httpx.ConnectTimeout):
            raise FetchError(f"timed out connecting to {host} for {url}", kind="timeout", url=url)
        raise FetchError(f"cannot connect to {host} for {url}: {_describe(last)}", kind="network", url=url)

    def _read(
        self, response: httpx.Response, cap: int, deadline: float, watchdog: "_Watchdog", url: str
    ) -> bytes:
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(
                f"{url} is too large ({int(declared):,} bytes, the limit is {cap:,})", kind="too_large", url=url
            )
        body = bytearray()
        try:
            if response.is_stream_consumed:  # an in-memory answer (a test transport), decoded
                raw: Iterable[bytes] = [response.content]
                coding = "identity"
            else:
                # httpx would decode each chunk whole before the cap is seen: decode here
                raw = response.iter_raw()
                coding = parse_content_encoding(response.headers.get("content-encoding"))
            for piece in decoded(_capped(raw, cap, url), coding):
                body += piece
                if len(body) > cap:
                    raise _too_large(url, cap)
                if time.monotonic() > deadline:
                    raise FetchError(f"timed out reading {url}", kind="timeout", url=url)
        except ContentCodingError as exc:
            raise FetchError(f"{exc.reason} ({url})", kind="encoding", url=url) from None
        except httpx.TimeoutException:
            raise FetchError(f"timed out reading {url}", kind="timeout", url=url) from None
        except (httpx.HTTPError, OSError, ValueError) as exc:
            if watchdog.fired:
                raise FetchError(f"timed out reading {url}", kind="timeout", url=url) from None
            raise FetchError(f"error reading {url}: {_describe(exc)}", kind="network", url=url) from None
        except MemoryError:
            raise FetchError(f"{url} needs more memory than this process has", kind="too_large",
                             url=url) from None
        return bytes(body)


def _capped(raw: Iterable[bytes], cap: int, url: str) -> Iterator[bytes]:
    """The raw (still encoded) body, refused past ``cap`` bytes too: a compressed stream
    may also be endless without ever producing output."""
    total = 0
    for chunk in raw:
        total += len(chunk)
        if total > cap:
            raise _too_large(url, cap)
        yield chunk


def _too_large(url: str, cap: int) -> FetchError:
    return FetchError(f"{url} is larger than the limit of {cap:,} bytes", kind="too_large", url=url)


class _Watchdog:
    """Shuts down the connections of one ``get`` when its deadline passes.

    httpx's timeouts bound each read, not the whole: a server that sends one byte a
    second never trips them. httpcore reports each new connection through the request's
    ``trace`` extension; shutting the socket down wakes a blocked read at once, and the
    fetch then ends as a timeout."""

    _EVENTS = ("connection.connect_tcp.complete", "connection.start_tls.complete")

    def __init__(self, deadline: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._stopped = False
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, event: str, info: Mapping[str, object]) -> None:
        if event not in self._EVENTS:
            return
        stream = info.get("return_value")
        get_extra_info = getattr(stream, "get_extra_info", None)
        sock = get_extra_info("socket") if get_extra_info is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                _shutdown(sock)

    def forget(self) -> None:
        """Drop the sockets seen so far: their connection is about to be closed (and its
        file descriptor number may then be given to an unrelated socket)."""
        with self._lock:
            self._sockets.clear()

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._stopped = True
            self._sockets.clear()

    def _fire(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        # the plain socket's shutdown, also for a TLS socket: no TLS close_notify exchange
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no address to connect to"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class CachingFetcher:
    """Remembers recent answers (and failures) for a short while.

    A post sent to twenty accounts needs its page and image once, not twenty
    times; a retry a minute later fetches afresh. Bounded by entries and bytes.
    """

    def __init__(self, inner: SafeFetcher, *, ttl: float = 120.0, max_entries: int = 256,
                 max_bytes: int = 64_000_000, clock: Callable[[], float] = time.monotonic):
        import collections
        import threading

        self.inner = inner
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: "collections.OrderedDict[tuple, tuple[float, FetchResult | FetchError]]" = (
            collections.OrderedDict())
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, url: str, *, max_bytes: int | None = None, headers: Mapping[str, str] | None = None,
            accept_statuses: Collection[int] = (200,)) -> FetchResult:
        lowered = {k.lower() for k in (headers or {})}
        if lowered & {"if-none-match", "if-modified-since", "authorization", "cookie"}:
            # conditional or personal requests are never shared
            return self.inner.get(url, max_bytes=max_bytes, headers=headers, accept_statuses=accept_statuses)
        key = (url, max_bytes, tuple(sorted(accept_statuses)), tuple(sorted((headers or {}).items())))
        now = self._clock()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                self._entries.move_to_end(key)
                if isinstance(hit[1], FetchError):
                    raise hit[1]
                return hit[1]
        try:
            answer: FetchResult | FetchError = self.inner.get(url, max_bytes=max_bytes, headers=headers,
                                                              accept_statuses=accept_statuses)
        except FetchError as exc:
            answer = exc
        self._store(key, now, answer)
        if isinstance(answer, FetchError):
            raise answer
        return answer

    def _store(self, key: tuple, now: float, answer: "FetchResult | FetchError") -> None:
        size = len(answer.content) if isinstance(answer, FetchResult) else 0
        if size > self.max_bytes // 4:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None and isinstance(old[1], FetchResult):
                self._bytes -= len(old[1].content)
            self._entries[key] = (now, answer)
            self._bytes += size
            while self._entries and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
                _, (_, dropped) = self._entries.popitem(last=False)
                if isinstance(dropped, FetchResult):
                    self._bytes -= len(dropped.content)

    def close(self) -> None:
        self.inner.close()
