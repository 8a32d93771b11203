"""The SSRF-safe fetcher (skypost.fetch), against HTTP(S) servers on 127.0.0.1 only.

Private addresses other than loopback are never contacted: the tests that name them
use a transport that fails the test if a request is ever sent.
"""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import json
import socket
import ssl
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import zstandard

from skypost.fetch import FetchError, FetchResult, SafeFetcher, address_refusal, check_url, default_resolver


class Server:
    """A tiny threaded HTTP(S) server on 127.0.0.1 with routes by path."""

    def __init__(self, routes: dict[str, Callable[[BaseHTTPRequestHandler], None]], tls: ssl.SSLContext | None = None):
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = server.routes.get(urlsplit(self.path).path)
                try:
                    if route is None:
                        send(self, 404, b"not found", "text/plain")
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "text/plain",
         headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(body)


def redirect(handler: BaseHTTPRequestHandler) -> None:
    query = parse_qs(urlsplit(handler.path).query)
    status = int(query.get("status", ["302"])[0])
    handler.send_response(status)
    handler.send_header("Location", query["to"][0])
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def big_stream(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.end_headers()  # no Content-Length: the body ends when the connection closes
    for _ in range(5):
        handler.wfile.write(b"x" * 1000)
        handler.wfile.flush()


def slow(handler: BaseHTTPRequestHandler) -> None:
    time.sleep(3)
    send(handler, 200, b"late")


def drip(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    for _ in range(100):
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.2)


GZIP_BOMB = gzip.compress(b"\0" * 5_000_000, compresslevel=9)
TEXT = "Ünïcode text, repeated. ".encode() * 500
_raw_deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
ENCODED = {
    "gzip": gzip.compress(TEXT),
    "x-gzip": gzip.compress(TEXT[:6000]) + gzip.compress(TEXT[6000:]),  # two members
    "deflate": zlib.compress(TEXT),
    "deflate-raw": _raw_deflate.compress(TEXT) + _raw_deflate.flush(),
    "zstd": zstandard.ZstdCompressor().compress(TEXT),
}


def send_encoded(handler: BaseHTTPRequestHandler, name: str) -> None:
    coding = name.removesuffix("-raw")
    send(handler, 200, ENCODED[name], "text/plain", {"Content-Encoding": coding})


def header_drip(handler: BaseHTTPRequestHandler) -> None:
    """Headers one byte every 0.1 s: each read is quick, the whole takes minutes."""
    for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 3000:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.1)

ROUTES: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {
    "/ok": lambda h: send(h, 200, b"hello"),
    "/host": lambda h: send(h, 200, h.headers.get("Host", "").encode()),
    "/headers": lambda h: send(h, 200, json.dumps({k.lower(): v for k, v in h.headers.items()}).encode(),
                               "application/json"),
    "/big-declared": lambda h: send(h, 200, b"y" * 5000),
    "/big-stream": big_stream,
    "/gzip-bomb": lambda h: send(h, 200, GZIP_BOMB, "text/plain", {"Content-Encoding": "gzip"}),
    "/encoded": lambda h: send_encoded(h, parse_qs(urlsplit(h.path).query)["as"][0]),
    "/header-drip": header_drip,
    "/slow": slow,
    "/drip": drip,
    "/redirect": redirect,
    "/loop": lambda h: (h.send_response(302), h.send_header("Location", "/loop"),
                        h.send_header("Content-Length", "0"), h.end_headers()),
    "/not-modified": lambda h: (h.send_response(304), h.end_headers()),
}


@pytest.fixture(scope="module")
def server():
    srv = Server(ROUTES)
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _clear(request):
    if "server" in request.fixturenames:
        request.getfixturevalue("server").requests.clear()


def loopback_only(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The policy of the redirect tests: loopback is fine, everything else as in production."""
    return None if ip.is_loopback else address_refusal(ip)


def never_called(request: httpx.Request) -> httpx.Response:
    pytest.fail(f"a request was sent to {request.url}")


def no_dns(host: str, port: int) -> list[str]:
    """The tests' resolver: localhost and numeric forms (2130706433, 127.1) only, never DNS."""
    if host == "localhost":
        return ["127.0.0.1"]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        pytest.fail(f"the test tried a DNS lookup of {host}")
    return [info[4][0] for info in infos]


def refusing_fetcher(**kwargs) -> SafeFetcher:
    kwargs.setdefault("resolver", no_dns)
    return SafeFetcher(transport=httpx.MockTransport(never_called), **kwargs)


# --- the address rules -------------------------------------------------------------


@pytest.mark.parametrize(
    "address,word",
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "not a public"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:a00:1::", "private"),  # 6to4 carrying 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 carrying 169.254.169.254
    ],
)
def test_address_refusal(address: str, word: str) -> None:
    reason = address_refusal(address)
    assert reason is not None and reason.startswith("refused: ") and word in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111", "::ffff:93.184.216.34", "1.1.1.1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(address) is None


def test_reason_text() -> None:
    assert address_refusal("10.0.0.1") == "refused: 10.0.0.1 is a private address"


# --- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "data:text/plain,hello",
        "javascript:alert(1)",
        "gopher://example.com/",
        "/etc/passwd",
        "etc/passwd",
        "http://",
        "http:///path",
        "https://exa mple.com/",
        "",
        "http://example.com:99999/",
    ],
)
def test_only_http_urls_with_a_host(url: str) -> None:
    with refusing_fetcher() as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(url)
    assert info.value.kind == "invalid_url"
    assert info.value.reason.startswith("refused")


def test_default_resolver_numeric_forms() -> None:
    assert default_resolver("2130706433", 80) == ["127.0.0.1"]
    assert default_resolver("127.0.0.1", 80) == ["127.0.0.1"]


def test_check_url_accepts_idn() -> None:
    assert check_url("https://bücher.example/straße").raw_host == b"xn--bcher-kva.example"


# --- refusals before any connection ------------------------------------------------------


@pytest.mark.parametrize(
    "url,word",
    [
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]:8080/", "loopback"),
        ("http://[fe80::1]/", "link-local"),
        ("http://0.0.0.0:80/", "unspecified"),
        ("http://192.168.0.1:8080/admin", "private"),
        ("https://127.0.0.1/", "loopback"),
        ("http://2130706433/", "loopback"),  # 127.0.0.1 written as a number
        ("http://127.1/", "loopback"),
        ("http://localhost/", "loopback"),
    ],
)
def test_private_targets_are_refused(url: str, word: str) -> None:
    with refusing_fetcher() as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(url)
    assert info.value.kind == "refused"
    assert word in info.value.reason


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    fetcher = refusing_fetcher(resolver=lambda host, port: ["10.0.0.5"])
    with pytest.raises(FetchError) as info:
        fetcher.get("https://intranet.example/")
    assert info.value.kind == "refused"
    assert info.value.reason == "refused: 10.0.0.5 is a private address (intranet.example resolves to it)"


def test_one_private_address_among_several_is_enough_to_refuse() -> None:
    fetcher = refusing_fetcher(resolver=lambda host, port: ["93.184.216.34", "169.254.169.254"])
    with pytest.raises(FetchError, match="169.254.169.254"):
        fetcher.get("http://mixed.example/")


def test_resolution_failure() -> None:
    def fail(host: str, port: int) -> list[str]:
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(FetchError) as info:
        refusing_fetcher(resolver=fail).get("http://nowhere.example/")
    assert info.value.kind == "dns" and "nowhere.example" in info.value.reason


# --- the loopback server ----------------------------------------------------------


def test_loopback_server_refused_by_default(server: Server) -> None:
    with SafeFetcher() as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(server.url("/ok"))
    assert info.value.kind == "refused" and "127.0.0.1 is a loopback address" in info.value.reason
    assert server.requests == []


def test_loopback_server_served_when_private_allowed(server: Server) -> None:
    with SafeFetcher(allow_private=True) as fetcher:
        result = fetcher.get(server.url("/ok"))
    assert isinstance(result, FetchResult)
    assert (result.status, result.content, result.url) == (200, b"hello", server.url("/ok"))
    assert result.headers["content-type"] == "text/plain"
    assert server.requests[0][1]["user-agent"] == "skypost (+https://github.com/skypost)"


def test_redirects_are_followed(server: Server) -> None:
    with SafeFetcher(allow_private=True) as fetcher:
        result = fetcher.get(server.url("/redirect?to=/redirect%3Fto%3D/ok%26status%3D301&status=307"))
    assert result.content == b"hello" and result.url == server.url("/ok")
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "target,word",
    [
        ("http://10.0.0.1/secret", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[fd00::1]/", "private"),
        ("http://internal.test:8080/", "10.0.0.7 is a private address (internal.test resolves to it)"),
        ("file:///etc/passwd", "only http:// and https://"),
    ],
)
def test_redirect_to_a_private_address_is_refused(server: Server, target: str, word: str) -> None:
    resolver = {"internal.test": ["10.0.0.7"]}
    fetcher = SafeFetcher(
        address_policy=loopback_only,
        resolver=lambda host, port: resolver.get(host) or no_dns(host, port),
    )
    with fetcher, pytest.raises(FetchError) as info:
        fetcher.get(server.url("/redirect?to=" + target))
    assert word in info.value.reason
    assert len(server.requests) == 1  # the first hop only


def test_too_many_redirects(server: Server) -> None:
    with SafeFetcher(allow_private=True, max_redirects=3) as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(server.url("/loop"))
    assert info.value.kind == "redirects"
    assert len(server.requests) == 4


def test_an_accepted_redirect_status_is_returned(server: Server) -> None:
    with SafeFetcher(allow_private=True) as fetcher:
        result = fetcher.get(server.url("/redirect?to=/ok&status=301"), accept_statuses=(200, 301))
    assert result.status == 301 and result.headers["location"] == "/ok"


def test_status_not_accepted(server: Server) -> None:
    with SafeFetcher(allow_private=True) as fetcher:
        with pytest.raises(FetchError) as info:
            fetcher.get(server.url("/missing"))
        assert info.value.kind == "status" and info.value.status == 404
        assert "404" in info.value.reason
        with pytest.raises(FetchError) as info:
            fetcher.get(server.url("/not-modified"))
        assert info.value.status == 304
        result = fetcher.get(server.url("/not-modified"), accept_statuses=(200, 304))
        assert result.status == 304 and result.content == b""


def test_cross_origin_redirect_drops_credentials(server: Server) -> None:
    fetcher = SafeFetcher(allow_private=True, resolver=lambda host, port: ["127.0.0.1"])
    secret = {"Authorization": "Bearer s3cret", "X-Other": "kept"}
    with fetcher:
        same = fetcher.get(server.url("/redirect?to=/headers"), headers=secret)
        other = fetcher.get(server.url("/redirect?to=" + server.url("/headers", host="other.test")), headers=secret)
    assert json.loads(same.content)["authorization"] == "Bearer s3cret"
    received = json.loads(other.content)
    assert "authorization" not in received and received["x-other"] == "kept"
    assert received["host"] == f"other.test:{server.port}"


# --- size and time ----------------------------------------------------------------


def test_declared_size_over_the_cap(server: Server) -> None:
    with SafeFetcher(allow_private=True) as fetcher:
        with pytest.raises(FetchError) as info:
            fetcher.get(server.url("/big-declared"), max_bytes=1000)
        assert info.value.kind == "too_large" and "5,000" in info.value.reason
        assert len(fetcher.get(server.url("/big-declared"), max_bytes=5000).content) == 5000


def test_streamed_size_over_the_cap(server: Server) -> None:
    with SafeFetcher(allow_private=True, max_bytes=4999) as fetcher:
        with pytest.raises(FetchError) as info:
            fetcher.get(server.url("/big-stream"))
        assert info.value.kind == "too_large"
        assert len(fetcher.get(server.url("/big-stream"), max_bytes=5000).content) == 5000


def test_compressed_bomb_is_stopped(server: Server) -> None:
    assert len(GZIP_BOMB) < 10_000
    with SafeFetcher(allow_private=True) as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(server.url("/gzip-bomb"), max_bytes=1_000_000)
    assert info.value.kind == "too_large"


@pytest.mark.parametrize("coding", sorted(ENCODED))
def test_encoded_bodies_are_decoded(server: Server, coding: str) -> None:
    with SafeFetcher(allow_private=True) as fetcher:
        assert fetcher.get(server.url(f"/encoded?as={coding}")).content == TEXT


def test_the_codings_it_decodes_are_asked_for(server: Server) -> None:
    with SafeFetcher(allow_private=True) as fetcher:
        sent = json.loads(fetcher.get(server.url("/headers")).content)
    assert sent["accept-encoding"] == "gzip, deflate, zstd"


def test_one_deadline_covers_dripped_headers(server: Server) -> None:
    threads = threading.active_count()
    started = time.monotonic()
    with SafeFetcher(allow_private=True, timeout=1.0, total_timeout=1.5) as fetcher:
        with pytest.raises(FetchError) as info:
            fetcher.get(server.url("/header-drip"))
        assert info.value.kind == "timeout" and "timed out" in info.value.reason
        assert 1.4 < time.monotonic() - started < 3
        for _ in range(20):  # the watchdog of a finished fetch leaves no thread behind
            fetcher.get(server.url("/ok"))
    time.sleep(0.2)
    assert threading.active_count() <= threads + 2  # the drip route's server thread


def test_timeout(server: Server) -> None:
    started = time.monotonic()
    with SafeFetcher(allow_private=True, timeout=0.5) as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(server.url("/slow"))
    assert info.value.kind == "timeout" and "timed out" in info.value.reason
    assert time.monotonic() - started < 2.5


def test_total_timeout_stops_a_drip_feed(server: Server) -> None:
    started = time.monotonic()
    with SafeFetcher(allow_private=True, timeout=1.0, total_timeout=1.0) as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(server.url("/drip"))
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 3


def test_connection_refused_is_a_network_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with SafeFetcher(allow_private=True, timeout=2) as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(f"http://127.0.0.1:{port}/")
    assert info.value.kind == "network"


# --- pinning ------------------------------------------------------------------------


def test_the_connection_goes_to_the_checked_address(server: Server) -> None:
    """pinned.test is in no DNS: the request can only arrive through the checked IP, and a
    second DNS answer (rebinding to 10.x) is refused, never connected to."""
    answers = [["127.0.0.1"], ["10.0.0.1"]]
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls), len(answers)) - 1]

    with SafeFetcher(address_policy=loopback_only, resolver=resolver) as fetcher:
        result = fetcher.get(server.url("/host", host="pinned.test"))
        assert result.content == f"pinned.test:{server.port}".encode()
        assert calls == ["pinned.test"]
        with pytest.raises(FetchError, match="10.0.0.1 is a private address"):
            fetcher.get(server.url("/host", host="pinned.test"))
    assert len(server.requests) == 1


def test_a_transport_sees_the_ip_and_the_host_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"ok")

    fetcher = SafeFetcher(transport=httpx.MockTransport(handler), resolver=lambda host, port: ["93.184.216.34"])
    result = fetcher.get("https://bücher.example/straße?x=1")
    assert result.url == "https://bücher.example/straße?x=1"
    request = seen[0]
    assert request.url.host == "93.184.216.34"
    assert request.headers["host"] == "xn--bcher-kva.example"
    assert request.extensions["sni_hostname"] == "xn--bcher-kva.example"
    assert request.url.raw_path == b"/stra%C3%9Fe?x=1"


def _self_signed(tmp_path, name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_https_is_pinned_with_sni_and_a_verified_certificate(tmp_path) -> None:
    cert_file, key_file = _self_signed(tmp_path, "pinned.test")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: sni.append(name)
    srv = Server(ROUTES, tls=server_ctx)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    try:
        fetcher = SafeFetcher(address_policy=loopback_only, resolver=lambda h, p: ["127.0.0.1"], verify=client_ctx)
        with fetcher:
            result = fetcher.get(srv.url("/host", host="pinned.test"))
            assert result.content == f"pinned.test:{srv.port}".encode()
            assert sni == ["pinned.test"]
            # The certificate is checked against the name, not the IP.
            with pytest.raises(FetchError) as info:
                fetcher.get(srv.url("/ok", host="impostor.test"))
            assert info.value.kind == "network" and "certificate" in info.value.reason.lower()
    finally:
        srv.close()


def test_fetch_error_is_readable() -> None:
    error = FetchError("refused: 10.0.0.1 is a private address", kind="refused")
    assert str(error) == error.reason == "refused: 10.0.0.1 is a private address"
