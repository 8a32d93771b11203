"""Hostile images: memory stays bounded whatever the file declares.

Each measurement runs in a child process with an address-space limit, so a regression
fails (MemoryError, or a peak over the bound) instead of taking the machine down. The
peak is the child's own peak RSS (VmHWM) minus what it held before preparing the image.

Measured with Pillow 13 (growth of peak RSS, MiB; before = without the decode budget):
  8000x8000 RGBA PNG            before 1014   now   0 (refused from the header)
  5000x5000 RGBA PNG            before  381   now 112 (decoded, flattened and scaled in strips)
  8000x8000 progressive JPEG    before  174   now   0 (refused: libjpeg's coefficient buffer)
  8000x8000 baseline JPEG       before   23   now  13 (libjpeg decodes at 1/4 scale)
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from skypost.bluesky.compose import compose_post_record
from skypost.fetch import SafeFetcher
from skypost.models import Post

SRC = Path(__file__).resolve().parents[2] / "src"
ADDRESS_SPACE_LIMIT = 1536 * 2**20  # the old code needed more than this for the 8000x8000 PNG
MB = 2**20


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, width: int, height: int, *, color_type: int = 6,
              channels: int = 4) -> Path:
    """A real, fully decodable PNG made row by row: no full-size image in this process."""
    squeeze = zlib.compressobj(1)
    row = b"\x00" + bytes(width * channels)
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
                     + _chunk(b"IEND", b""))
    return path


def write_jpeg(path: Path, size: int, *, progressive: bool) -> Path:
    """Encoded by Pillow in a child process (the full-size picture is its problem)."""
    code = (f"from PIL import Image; Image.new('RGB', ({size}, {size})).save({str(path)!r}, "
            f"quality=85, progressive={progressive})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    return path


CHILD = textwrap.dedent("""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    sys.path.insert(0, {src!r})
    sys.path.insert(0, {root!r})
    from tests.hostile.child import peak_rss_kib
    from skypost.bluesky.images import ImageError, prepare_thumbnail
    data = open({path!r}, "rb").read()
    before = peak_rss_kib()
    try:
        out, mime = prepare_thumbnail(data)
        result = {{"ok": True, "bytes": len(out), "mime": mime}}
    except ImageError as exc:
        result = {{"ok": False, "error": str(exc)}}
    peak = peak_rss_kib()
    result["growth"] = (peak - before) * 1024
    print(json.dumps(result))
""")


def prepare_in_child(path: Path) -> dict[str, Any]:
    code = CHILD.format(limit=ADDRESS_SPACE_LIMIT, src=str(SRC), root=str(SRC.parent), path=str(path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile-images")
    return {
        "png8000": write_png(folder / "rgba-8000.png", 8000, 8000),
        "png5000": write_png(folder / "rgba-5000.png", 5000, 5000),
        "jpeg8000": write_jpeg(folder / "baseline-8000.jpg", 8000, progressive=False),
        "progressive8000": write_jpeg(folder / "progressive-8000.jpg", 8000, progressive=True),
    }


def test_an_8000_pixel_rgba_png_is_refused_from_its_header(images):
    result = prepare_in_child(images["png8000"])
    assert result["ok"] is False and "too large to decode" in result["error"], result
    assert result["growth"] < 20 * MB, result


def test_a_large_png_within_the_budget_is_scaled_in_bounded_memory(images):
    result = prepare_in_child(images["png5000"])
    assert result["ok"] is True and result["mime"] == "image/jpeg", result
    # 95 MiB of decoded pixels; the old code peaked at four times that
    assert result["growth"] < 200 * MB, result


def test_a_huge_progressive_jpeg_is_refused_before_libjpeg_buffers_it(images):
    result = prepare_in_child(images["progressive8000"])
    assert result["ok"] is False and "too large to decode" in result["error"], result
    assert result["growth"] < 20 * MB, result


def test_a_huge_baseline_jpeg_is_decoded_at_a_reduced_scale(images):
    result = prepare_in_child(images["jpeg8000"])
    assert result["ok"] is True, result
    assert result["growth"] < 80 * MB, result  # 8000x8000 at full scale would be 244 MiB


class ImageServer:
    """Serves one file on 127.0.0.1, as a site's og:image would be."""

    def __init__(self, body: bytes, content_type: str):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cover.png"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def cover(images: dict[str, Path]) -> Iterator[ImageServer]:
    server = ImageServer(images["png8000"].read_bytes(), "image/png")
    yield server
    server.close()


def test_a_refused_image_leaves_the_card_without_a_thumbnail_and_says_why(cover):
    uploads: list[int] = []

    def upload(data: bytes, mime: str) -> dict[str, Any]:
        uploads.append(len(data))
        return {}

    post = Post(id="1", title="Hello", url="https://blog.example.com/hello", image_url=cover.url)
    with SafeFetcher(allow_private=True, timeout=5) as fetcher:
        composed = compose_post_record(post, now=datetime.now(timezone.utc), fetcher=fetcher,
                                       upload_blob=upload)
    external = composed.record["embed"]["external"]
    assert external["uri"] == "https://blog.example.com/hello" and external["title"] == "Hello"
    assert "thumb" not in external and composed.thumb is None and uploads == []
    assert any("no image on the link card" in w and "too large to decode" in w
               for w in composed.warnings), composed.warnings
