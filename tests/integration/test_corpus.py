"""A corpus of nasty posts, all accepted by the real PDS, every thumbnail within 1,000,000 bytes."""

from __future__ import annotations

import io
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import regex
from PIL import Image

CREATE = "com.atproto.repo.createRecord"


def _png_noise(w, h, mode="RGB"):
    rng = random.Random(7)
    img = Image.frombytes(mode, (w, h), bytes(rng.getrandbits(8) for _ in range(w * h * len(mode))))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def _encode(img, fmt, **kw):
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


@pytest.fixture(scope="module")
def site():
    big_jpeg = Image.radial_gradient("L").resize((6000, 4000)).convert("RGB")
    frames = [Image.new("P", (300, 200), i) for i in (10, 200)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files = {
        "/noise.png": ("image/png", _png_noise(1400, 1400)),  # ~5.9 MB of incompressible pixels
        "/big.jpg": ("image/jpeg", _encode(big_jpeg, "JPEG", quality=95)),
        "/alpha.png": ("image/png", _png_noise(900, 900, "RGBA")),
        "/anim.gif": ("image/gif", gif.getvalue()),
        "/photo.webp": ("image/webp", _encode(Image.new("RGB", (1200, 800), (30, 90, 200)), "WEBP")),
        "/corrupt.jpg": ("image/jpeg", b"\xff\xd8\xff\xe0 this is not really a jpeg"),
        "/article.html": ("text/html; charset=utf-8", (
            '<html><head><title>Fallback</title><meta property="og:title" content="An og: title &amp; more">'
            '<meta property="og:description" content="Described by the page itself.">'
            '<meta property="og:image" content="/big.jpg"></head><body>hi</body></html>').encode()),
    }

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path not in files:
                self.send_error(404)
                return
            mime, body = files[path]
            self.send_response(200)
            self.send_header("Content-Type", mime)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


_CLUSTER = regex.compile(r"\X")


def _graphemes(text: str) -> int:
    return len(_CLUSTER.findall(text))


LONG = "Ünïcödé 🧑‍🧑‍🧒 flags 🇺🇦🇯🇵 CJK 日本語のタイトル RTL עברית ومرحبا combining é̃̂ " * 12


def corpus(site):
    return [
        {"title": LONG, "excerpt": LONG},
        {"title": "👩🏽‍💻" * 400},
        {"title": "Entities &amp; <b>tags</b>", "content_html":
            "<p>Hello &eacute;&nbsp;world</p><script>alert('x')</script><style>p{}</style>" + "<p>More text</p>" * 200},
        {"title": "A Unicode URL", "url": "https://例え.テスト/パス/ページ?q=ü"},
        {"title": "Multi-MB PNG", "image_url": f"{site}/noise.png"},
        {"title": "6000x4000 JPEG", "image_url": f"{site}/big.jpg"},
        {"title": "PNG with alpha", "image_url": f"{site}/alpha.png"},
        {"title": "Animated GIF", "image_url": f"{site}/anim.gif"},
        {"title": "WebP", "image_url": f"{site}/photo.webp"},
        {"title": "Corrupt image", "image_url": f"{site}/corrupt.jpg"},
        {"title": "Missing image", "image_url": f"{site}/nope.png"},
        {"title": "", "url": f"{site}/article.html",
         "text": "Custom text with a #hashtag, a link https://example.com/a?b=c, and @nobody.invalid " * 10},
        {"title": "The page's own card", "url": f"{site}/article.html"},
        {"title": "Tags and langs", "tags": ["#python", "bluesky", "x" * 100], "langs": ["en", "ja"]},
        # Indic conjuncts are one grapheme each: 300 of them fill the text exactly
        {"title": "", "text": "नमस्ते क्षत्रिय " * 60},
        {"title": "", "text": "Bare domains example.com/a?b=c (docs.python.org), $AAPL and ($btc) " * 5},
    ]


def test_nasty_corpus_is_accepted(sqlite_url, make_app, make_account, pds, proxy, site):
    app = make_app(sqlite_url)
    alice = make_account("corpus")
    app.add_account(alice.handle, alice.app_password, service=proxy.url)
    docs = corpus(site)
    for n, doc in enumerate(docs):
        doc = {"id": f"c{n}", "url": doc.pop("url", f"{site}/article.html?{n}"), **doc}
        app.submit(doc)
    app.run_worker(burst=True)
    statuses = {f"c{n}": app.status(f"c{n}") for n in range(len(docs))}
    rejected = {k: s["deliveries"][0]["error"] for k, s in statuses.items() if s["status"] != "completed"}
    assert rejected == {}
    records = {r["uri"].rsplit("/", 1)[1]: r["value"] for r in pds.list_posts(alice.did)}
    assert len(records) == len(docs)
    thumbs = 0
    for post_id, status in statuses.items():
        value = records[status["deliveries"][0]["uri"].rsplit("/", 1)[1]]
        assert _graphemes(value["text"]) <= 300 and len(value["text"].encode()) <= 3000
        external = value.get("embed", {}).get("external")
        assert external is not None, post_id  # every post with a URL gets a card
        if "thumb" in external:
            thumbs += 1
            assert external["thumb"]["size"] <= 1_000_000
    assert thumbs >= 7  # png, jpeg, alpha, gif, webp and the two article pages
    warnings = [e["message"] for e in app.events(limit=200) if e["kind"] == "card_warning"]
    assert any("corrupt" in w.lower() or "not" in w.lower() for w in warnings)


def test_preview_prints_the_exact_record_without_contacting_bluesky(sqlite_url, site, proxy, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import TEST_KEY

    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPOST_")}
    env.update(SKYPOST_DATABASE_URL=sqlite_url, SKYPOST_SECRET_KEY=TEST_KEY, SKYPOST_ALLOW_PRIVATE_URLS="1")
    result = subprocess.run(
        [sys.executable, "-m", "skypost.cli", "preview", "--id", "p1", "--title", "Preview me #python",
         "--url", f"{site}/article.html", "--lang", "en"],
        env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["$type"] == "app.bsky.feed.post" and record["langs"] == ["en"]
    assert record["text"].startswith("Preview me #python")
    assert record["facets"][0]["features"][0] == {"$type": "app.bsky.richtext.facet#tag", "tag": "python"}
    external = record["embed"]["external"]
    assert external["description"] == "Described by the page itself."
    assert 0 < external["thumb"]["size"] <= 1_000_000 and external["thumb"]["mimeType"].startswith("image/")
    assert proxy.calls() == 0
    status = subprocess.run([sys.executable, "-m", "skypost.cli", "status", "p1"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 2  # preview recorded nothing
