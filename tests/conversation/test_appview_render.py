"""What people will see: a post published by skypost, read back from the AppView of the full
local network the way the Bluesky app reads it (getPosts, getPostThread). Its link card renders
as an external view with a thumbnail, and its link, mention and hashtag are facets over the
right bytes of its text."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from PIL import Image

from tests.support.network import LocalNetwork


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (600, 315), (17, 133, 254)).save(out, "PNG")
    return out.getvalue()


PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>Fallback</title>
<meta property="og:title" content="Syndication, seen from Bluesky">
<meta property="og:description" content="How a post looks once it arrives.">
<meta property="og:image" content="/card.png"></head><body>A post</body></html>"""


@pytest.fixture
def site() -> Iterator[str]:
    """A blog post page with an og:image, on 127.0.0.1."""
    pages = {"/post": ("text/html; charset=utf-8", PAGE), "/card.png": ("image/png", _png())}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            ctype, body = pages.get(self.path, ("text/plain", b"not found"))
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def facet_text(text: str, facet: dict[str, Any]) -> str:
    index = facet["index"]
    return text.encode()[index["byteStart"]:index["byteEnd"]].decode()


def test_a_published_post_renders_with_its_card_thumbnail_and_facets(
        network: LocalNetwork, network_proxy: Any, make_app: Any, sqlite_url: str, site: str) -> None:
    author, friend, reader = (network.create_account(p) for p in ("author", "friend", "reader"))
    app = make_app(sqlite_url, use_clock=False)
    app.add_account(author.handle, author.app_password, service=network.pds_url)
    text = f"Café notes ✨ with @{friend.handle}: read https://example.com/docs?x=1 first #skypost"
    app.submit({"id": "seen-1", "title": "Seen from Bluesky", "text": text, "url": site + "/post"})
    app.run_worker(burst=True)
    status = app.status("seen-1")
    assert status is not None and status["status"] == "completed", status
    uri = status["deliveries"][0]["uri"]

    post = network.wait_for(lambda: (network.appview("app.bsky.feed.getPosts", uris=[uri])["posts"] or [None])[0])
    assert post["author"]["did"] == author.did and post["author"]["handle"] == author.handle
    record = post["record"]
    assert record["text"] == text
    # the link card, as the app draws it: an external view with its thumbnail's URL
    embed = post["embed"]
    assert embed["$type"] == "app.bsky.embed.external#view", embed
    external = embed["external"]
    assert external["uri"] == site + "/post"
    assert external["title"] == "Seen from Bluesky"  # the post's own title wins over the page's
    assert external["description"] == "How a post looks once it arrives."  # the page fills the gap
    thumb_cid = record["embed"]["external"]["thumb"]["ref"]["$link"]
    assert external["thumb"].startswith("http") and thumb_cid in external["thumb"], external
    assert author.did in external["thumb"]
    # the facets cover exactly the mention, the link and the tag (UTF-8 byte offsets)
    features = {f["features"][0]["$type"].rsplit("#", 1)[1]: (facet_text(text, f), f["features"][0])
                for f in record["facets"]}
    assert features["mention"] == (f"@{friend.handle}",
                                   {"$type": "app.bsky.richtext.facet#mention", "did": friend.did})
    assert features["link"] == ("https://example.com/docs?x=1",
                                {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/docs?x=1"})
    assert features["tag"] == ("#skypost", {"$type": "app.bsky.richtext.facet#tag", "tag": "skypost"})
    assert len(record["facets"]) == 3

    # the thread people open: the post with its card, and what was said under it
    reply = network.post(reader, "Nice card!", reply_to={"uri": uri, "cid": post["cid"]})
    thread = network.wait_for(lambda: (t := network.thread(uri))["replies"] and t)
    assert thread["post"]["uri"] == uri
    assert thread["post"]["embed"]["$type"] == "app.bsky.embed.external#view"
    assert thread["post"]["embed"]["external"]["thumb"] == external["thumb"]
    assert [r["post"]["uri"] for r in thread["replies"]] == [reply["uri"]]
    assert thread["post"]["replyCount"] == 1
    # the mentioned account was told
    notified = network.wait_for(lambda: [n for n in network.pds(
        "app.bsky.notification.listNotifications", token=friend.token)["notifications"]
        if n["reason"] == "mention"])
    assert [n["uri"] for n in notified] == [uri]
