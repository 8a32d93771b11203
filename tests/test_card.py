"""Link cards (skypost.bluesky.card) against a page server on 127.0.0.1."""

from __future__ import annotations

import io
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from PIL import Image

from skypost.bluesky.card import CardData, fetch_thumbnail, gather_card, parse_page_meta
from skypost.bluesky.compose import compose_post_record
from skypost.fetch import SafeFetcher
from skypost.models import Post


def png_bytes(size=(120, 60), color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def big_jpeg_bytes() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((2600, 1800), 80).convert("RGB").save(out, "JPEG", quality=98)
    return out.getvalue()


OG_PAGE = b"""<!doctype html><html><head>
<meta charset="utf-8">
<title>Fallback title</title>
<meta property="og:title" content="The OG title &amp; more">
<meta property="og:description" content="The OG description.">
<meta property="og:image" content="/images/card.png">
<meta name="twitter:title" content="Twitter title">
<meta name="description" content="Meta description">
</head><body><p>Body</p></body></html>"""

TWITTER_PAGE = b"""<html><head><title>T</title>
<meta name="twitter:title" content="Twitter title">
<meta name="twitter:description" content="Twitter description">
<meta name="twitter:image" content="https://cdn.example/tw.png">
<base href="https://cdn.example/base/">
</head></html>"""

PLAIN_PAGE = """<html><head><meta http-equiv="content-type" content="text/html; charset=iso-8859-1">
<title>  Caf\xe9   page </title><meta name="description" content="D\xe9j\xe0 vu"></head></html>""".encode("latin-1")

BIG_JPEG = big_jpeg_bytes()

PAGES = {
    "/post": (200, "text/html; charset=utf-8", OG_PAGE),
    "/images/card.png": (200, "image/png", png_bytes()),
    "/twitter": (200, "text/html", TWITTER_PAGE),
    "/plain": (200, "text/html", PLAIN_PAGE),
    "/broken-image-page": (200, "text/html", b'<meta property="og:image" content="/missing.png"><title>B</title>'),
    "/html-as-image": (200, "text/html", b"<html>oops</html>"),
    "/octet.png": (200, "application/octet-stream", png_bytes()),
    "/corrupt.png": (200, "image/png", b"\x89PNG\r\n\x1a\n garbage"),
    "/svg": (200, "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
    "/big.jpg": (200, "image/jpeg", BIG_JPEG),
    "/pdf": (200, "application/pdf", b"%PDF-1.4"),
}


class PageServer:
    def __init__(self) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.requests.append(self.path)
                status, ctype, body = PAGES.get(urlsplit(self.path).path, (404, "text/html", b"<h1>404</h1>"))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def site():
    server = PageServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _fresh_log(request):
    if "site" in request.fixturenames:
        request.getfixturevalue("site").requests.clear()


@pytest.fixture
def fetcher(site):
    with SafeFetcher(allow_private=True, timeout=5) as f:
        yield f


def test_card_from_the_page_og_tags(site, fetcher) -> None:
    card, warnings = gather_card(Post(id="1", url=site.url("/post")), fetcher)
    assert card == CardData(
        uri=site.url("/post"),
        title="The OG title & more",
        description="The OG description.",
        image_url=site.url("/images/card.png"),
    )
    assert warnings == []
    thumb, warnings = fetch_thumbnail(card.image_url, fetcher)
    assert warnings == [] and thumb is not None
    assert thumb[1] == "image/png" and Image.open(io.BytesIO(thumb[0])).size == (120, 60)


def test_post_data_wins_and_the_page_fills_the_gaps(site, fetcher) -> None:
    post = Post(id="1", title="Post title", excerpt="Post excerpt", url=site.url("/post"))
    card, warnings = gather_card(post, fetcher)
    assert (card.title, card.description, card.image_url) == ("Post title", "Post excerpt", site.url("/images/card.png"))
    assert site.requests == ["/post"]


def test_description_from_content_html(site, fetcher) -> None:
    post = Post(id="1", title="T", content_html="<p>From <b>the</b> body</p>", url=site.url("/post"),
                image_url=site.url("/images/card.png"))
    card, _ = gather_card(post, fetcher)
    assert card.description == "From the body"
    assert site.requests == []  # nothing was missing: the page is not fetched


def test_twitter_fallbacks_and_base_href(site, fetcher) -> None:
    card, warnings = gather_card(Post(id="1", url=site.url("/twitter")), fetcher)
    assert (card.title, card.description, card.image_url) == (
        "Twitter title", "Twitter description", "https://cdn.example/tw.png",
    )


def test_title_tag_meta_description_and_charset(site, fetcher) -> None:
    card, warnings = gather_card(Post(id="1", url=site.url("/plain")), fetcher)
    assert (card.title, card.description, card.image_url) == ("Café page", "Déjà vu", None)
    assert warnings == []


def test_no_fetcher_no_fetch(site) -> None:
    card, warnings = gather_card(Post(id="1", url=site.url("/post")), None)
    assert card == CardData(uri=site.url("/post"), title=site.url("/post"), description="", image_url=None)
    assert warnings == [] and site.requests == []


def test_missing_page_is_a_warning(site, fetcher) -> None:
    post = Post(id="1", title="Kept", url=site.url("/gone"))
    card, warnings = gather_card(post, fetcher)
    assert card.title == "Kept" and card.image_url is None
    assert len(warnings) == 1 and "404" in warnings[0]


def test_refused_page_is_a_warning(site) -> None:
    with SafeFetcher() as strict:  # loopback not allowed
        card, warnings = gather_card(Post(id="1", url=site.url("/post")), strict)
    assert card.title == site.url("/post")
    assert "loopback" in warnings[0]
    assert site.requests == []


def test_non_html_page_is_a_warning(site, fetcher) -> None:
    card, warnings = gather_card(Post(id="1", title="T", url=site.url("/pdf")), fetcher)
    assert card.title == "T" and "not HTML" in warnings[0]


def test_bad_post_image_url_is_ignored_with_a_warning(site, fetcher) -> None:
    post = Post(id="1", title="T", excerpt="E", url=site.url("/post"), image_url="javascript:alert(1)")
    card, warnings = gather_card(post, fetcher)
    assert card.image_url == site.url("/images/card.png")
    assert "not an http(s) URL" in warnings[0]


def test_long_card_fields_are_cut() -> None:
    post = Post(id="1", title="word " * 200, excerpt="more " * 500, url="https://blog.example/p")
    card, _ = gather_card(post, None)
    assert len(card.title) <= 300 and card.title.endswith("…")
    assert len(card.description) <= 1000 and card.description.endswith("…")


@pytest.mark.parametrize(
    "path,word",
    [
        ("/missing.png", "404"),
        ("/html-as-image", "not an image"),
        ("/corrupt.png", "not a decodable image"),
        ("/svg", "SVG"),
    ],
)
def test_thumbnail_problems_are_warnings(site, fetcher, path: str, word: str) -> None:
    thumb, warnings = fetch_thumbnail(site.url(path), fetcher)
    assert thumb is None
    assert len(warnings) == 1 and word in warnings[0]


def test_thumbnail_sniffed_despite_content_type(site, fetcher) -> None:
    thumb, warnings = fetch_thumbnail(site.url("/octet.png"), fetcher)
    assert thumb is not None and warnings == []


def test_big_thumbnail_is_shrunk(site, fetcher) -> None:
    assert len(BIG_JPEG) > 1_000_000
    thumb, warnings = fetch_thumbnail(site.url("/big.jpg"), fetcher)
    assert warnings == [] and thumb is not None
    assert len(thumb[0]) <= 1_000_000 and thumb[1] == "image/jpeg"
    Image.open(io.BytesIO(thumb[0])).load()


def test_parse_page_meta_resolves_relative_images() -> None:
    meta = parse_page_meta('<meta property="og:image" content="../i.png">', "https://a.example/x/y/page")
    assert meta.image_url == "https://a.example/x/i.png"
    meta = parse_page_meta('<meta property="og:image" content="data:image/png;base64,xx">', "https://a.example/")
    assert meta.image_url is None


NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_record_with_card_and_uploaded_thumb(site, fetcher) -> None:
    uploads = []

    def upload(data: bytes, mime: str) -> dict:
        uploads.append((len(data), mime))
        return {"$type": "blob", "ref": {"$link": "bafkreie"}, "mimeType": mime, "size": len(data)}

    result = compose_post_record(Post(id="1", title="Hello", url=site.url("/post")), now=NOW,
                                 fetcher=fetcher, upload_blob=upload)
    external = result.record["embed"]["external"]
    assert external["uri"] == site.url("/post")
    assert external["title"] == "Hello"
    assert external["description"] == "The OG description."
    assert external["thumb"]["mimeType"] == "image/png"
    assert uploads == [(len(PAGES["/images/card.png"][2]), "image/png")]
    assert result.record["text"] == "Hello"
    assert result.warnings == []


def test_record_with_a_404_image_has_no_thumb(site, fetcher) -> None:
    uploads = []
    post = Post(id="1", title="Hello", url=site.url("/broken-image-page"))
    result = compose_post_record(post, now=NOW, fetcher=fetcher, upload_blob=lambda d, m: uploads.append(d))
    external = result.record["embed"]["external"]
    assert "thumb" not in external and external["title"] == "Hello"
    assert uploads == [] and result.thumb is None
    assert len(result.warnings) == 1 and "404" in result.warnings[0]
