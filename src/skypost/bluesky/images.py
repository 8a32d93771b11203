"""Link-card thumbnails: check that the bytes are an image and make them fit Bluesky.

Bluesky refuses a thumbnail over 1,000,000 bytes. :func:`prepare_thumbnail` decodes
the image with Pillow (only common web formats, never EPS/PostScript), applies the
EXIF orientation, keeps the first frame of an animation, and re-encodes it as JPEG —
transparency is flattened on white, palette/CMYK/16-bit images become RGB or greyscale —
scaled to at most ``max_side`` pixels a side, lowering the JPEG quality step by step and
then the dimensions until it fits ``max_bytes``.

Memory is bounded, whatever the file claims: before anything is decoded, an image with
more than :data:`MAX_PIXELS` pixels, or whose decoded pixels would take more than
:data:`MAX_DECODE_BYTES`, is refused. A JPEG is decoded at a reduced scale by libjpeg
(``draft``), so only a progressive JPEG's coefficient buffer counts against the budget.
The full-size picture is never copied: it is flattened and scaled down in strips.

A JPEG or PNG that already fits (size, dimensions, upright, plain colour mode, not
animated) is passed through byte for byte.
"""

from __future__ import annotations

import io
import math

from PIL import Image

__all__ = ["MAX_THUMB_BYTES", "MAX_PIXELS", "MAX_DECODE_BYTES", "ImageError", "decode_cost",
           "prepare_thumbnail", "sniff_image_mime"]

MAX_THUMB_BYTES = 1_000_000
MAX_PIXELS = 64_000_000  # about 8000 x 8000; larger is refused before decoding
# what decoding may hold: a 24-megapixel progressive JPEG (4:2:0), a 40-megapixel RGBA
# PNG or a 10-megapixel WebP fits; an 8000 x 8000 RGBA PNG (244 MiB decoded) does not
MAX_DECODE_BYTES = 160 * 1024 * 1024
# Pillow keeps these modes in 1 or 2 bytes a pixel; every other mode in 4
_NARROW_MODES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# decoders that hold several full-size buffers (the codec's YUV and RGBA canvases and a
# copy handed to Pillow): peak bytes a pixel, measured with Pillow 13
_DECODER_BYTES = {"WEBP": 16, "AVIF": 10}
# rows flattened and reduced at a time (a multiple of any reduction factor is used)
_STRIP_ROWS = 256
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP")
_QUALITIES = (85, 75, 65, 55, 45)
_MIN_SIDE = 16
_WHITE = (255, 255, 255)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageError(Exception):
    """The data is not an image we can use (not decodable, too big, cannot be shrunk)."""


def sniff_image_mime(data: bytes) -> str | None:
    """The MIME type of an image by its magic bytes (the formats we decode), or None."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "image/avif"
    if head[:2] == b"BM":
        return "image/bmp"
    return None


def prepare_thumbnail(
    data: bytes, *, max_bytes: int = MAX_THUMB_BYTES, max_side: int = 2000
) -> tuple[bytes, str]:
    """Return ``(bytes, mime)`` of an image that fits ``max_bytes`` and ``max_side``.

    Raises :class:`ImageError` for data that is not a decodable image, that is too large
    to decode within the memory budget, or that cannot be made small enough."""
    if not data:
        raise ImageError("empty image data")
    if max_bytes < 1 or max_side < 1:
        raise ValueError("max_bytes and max_side must be positive")
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
            try:
                width, height = img.size
                if width < 1 or height < 1:
                    raise ImageError("the image has no pixels")
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"the image is too large to decode safely ({width}x{height} pixels, "
                        f"limit {MAX_PIXELS:,})"
                    )
                if _can_pass_through(img, len(data), max_bytes, max_side):
                    img.load()  # proves the whole file decodes (small: it fits max_side)
                    return bytes(data), "image/png" if img.format == "PNG" else "image/jpeg"
                prepared = _decode_first_frame(img, max_side)
            finally:
                img.close()  # frees the full-size pixels before encoding
        return _encode_to_fit(prepared, max_bytes)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"the image is too large to decode safely ({exc})") from None
    except MemoryError:
        raise ImageError("the image is too large to decode") from None
    except Exception as exc:  # Pillow raises many kinds of errors on broken input
        raise ImageError(f"not a decodable image ({type(exc).__name__}: {exc})") from None


def decode_cost(img: Image.Image, declared_size: tuple[int, int] | None = None) -> int:
    """Bytes that decoding `img` (opened, not loaded) will hold: its pixels (more for codecs
    with buffers of their own), plus a progressive JPEG's DCT coefficients, which libjpeg
    keeps for the whole image whatever the scale it outputs. After a ``draft``,
    ``img.size`` is the reduced size; `declared_size` is then the file's own."""
    width, height = img.size
    per_pixel = max(_NARROW_MODES.get(img.mode, 4), _DECODER_BYTES.get(img.format or "", 0))
    cost = width * height * per_pixel
    layers = getattr(img, "layer", None)
    if img.format in ("JPEG", "MPO") and "progressive" in img.info and layers:
        full_w, full_h = declared_size or img.size
        h_max = max(layer[1] for layer in layers) or 1
        v_max = max(layer[2] for layer in layers) or 1
        samples = sum(full_w * full_h * layer[1] * layer[2] / (h_max * v_max) for layer in layers)
        cost += int(samples) * 2  # one 16-bit coefficient a sample
    return cost


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """`size` scaled down (aspect kept) to fit a max_side square; unchanged when it fits."""
    width, height = size
    if max(width, height) <= max_side:
        return size
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _can_pass_through(img: Image.Image, size: int, max_bytes: int, max_side: int) -> bool:
    if size > max_bytes or max(img.size) > max_side:
        return False
    if decode_cost(img) > MAX_DECODE_BYTES:
        return False
    if getattr(img, "is_animated", False) or getattr(img, "n_frames", 1) > 1:
        return False
    orientation = img.getexif().get(0x0112, 1)  # (PNG: this decodes the image; errors propagate)
    if orientation not in (0, 1):
        return False
    if img.format == "JPEG":
        return img.mode in ("RGB", "L")
    if img.format == "PNG":
        return img.mode in ("RGB", "RGBA", "L", "LA", "P")
    return False


def _decode_first_frame(img: Image.Image, max_side: int) -> Image.Image:
    """The first frame, upright, scaled to ``max_side``, in mode RGB or L (no alpha)."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    declared = img.size
    target = _fit(declared, max_side)  # a square box: the same whatever the orientation
    if img.format in ("JPEG", "MPO"):
        img.draft(None, target)  # libjpeg decodes at 1/2, 1/4 or 1/8 scale, at least `target`
    cost = decode_cost(img, declared)
    if cost > MAX_DECODE_BYTES:
        width, height = declared
        raise ImageError(
            f"the image is too large to decode safely ({width}x{height} pixels, {img.mode}: "
            f"{cost / 2**20:.0f} MiB to decode, limit {MAX_DECODE_BYTES / 2**20:.0f} MiB)"
        )
    img.load()
    orientation = img.getexif().get(0x0112, 1)  # only now: for a PNG, this decodes the image
    icc = img.info.get("icc_profile")
    source_mode = img.mode
    frame = _shrink_flat(img, target)
    img.close()  # the full-size pixels are not needed any more: free them before resizing
    if frame.size != target:
        frame = frame.resize(target, Image.Resampling.LANCZOS)
    method = _ORIENTATIONS.get(orientation)
    if method is not None:
        frame = frame.transpose(method)
    # Keep a colour profile only when the colour space is still the one it describes.
    same_space = (source_mode in ("RGB", "RGBA", "RGBa") and frame.mode == "RGB") or (
        source_mode in ("L", "LA", "La") and frame.mode == "L"
    )
    if icc and same_space:
        frame.info["icc_profile"] = icc
    else:
        frame.info.pop("icc_profile", None)
    return frame


def _shrink_flat(img: Image.Image, target: tuple[int, int]) -> Image.Image:
    """`img` flattened (RGB or L) and box-reduced by the largest whole factor that keeps it
    at least `target`, strip by strip: only a strip of the full-size picture is copied."""
    factor = max(1, min(img.width // target[0], img.height // target[1]))
    rows = max(1, _STRIP_ROWS // factor) * factor  # strips on block boundaries: exact
    scale = _sixteen_bit_scale(img)
    out: Image.Image | None = None
    for top in range(0, img.height, rows):
        strip = _flatten(img.crop((0, top, img.width, min(img.height, top + rows))), scale)
        if factor > 1:
            strip = strip.reduce(factor)
        if out is None:
            size = (math.ceil(img.width / factor), math.ceil(img.height / factor))
            out = Image.new(strip.mode, size)
        out.paste(strip, (0, top // factor))
    assert out is not None
    return out


def _sixteen_bit_scale(img: Image.Image) -> float:
    """The factor that maps a 16/32-bit greyscale image's range onto 0..255 (1 for others);
    computed once for the whole image so that every strip gets the same."""
    if img.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return 1.0
    peak = img.getextrema()[1] or 1
    return 255 / 65535 if peak > 255 else 1.0


def _flatten(img: Image.Image, scale: float = 1.0) -> Image.Image:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = img if mode == "I" else img.convert("I")
        return wide.point(lambda v: v * scale).convert("L")
    if mode == "F":
        return img.convert("L")
    has_alpha = mode in _ALPHA_MODES or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode == "L":
        return img
    if mode == "1":
        return img.convert("L")
    return img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, RGBX ...


def _encode(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    options: dict[str, object] = {"quality": quality, "optimize": True}
    icc = img.info.get("icc_profile")
    if icc:
        options["icc_profile"] = icc
    img.save(out, format="JPEG", **options)
    return out.getvalue()


def _encode_to_fit(img: Image.Image, max_bytes: int) -> tuple[bytes, str]:
    while True:
        encoded = b""
        for quality in _QUALITIES:
            encoded = _encode(img, quality)
            if len(encoded) <= max_bytes:
                return encoded, "image/jpeg"
            if quality == _QUALITIES[0] and len(encoded) > 6 * max_bytes:
                # Quality alone will not get there: shrink first.
                encoded = _encode(img, _QUALITIES[-1])
                if len(encoded) <= max_bytes:
                    return encoded, "image/jpeg"
                break
        if max(img.size) <= _MIN_SIDE:
            raise ImageError(f"cannot make the image smaller than {max_bytes:,} bytes")
        factor = math.sqrt(max_bytes / len(encoded)) * 0.9
        factor = min(0.8, max(0.3, factor))
        new_size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
        icc = img.info.get("icc_profile")
        img = img.resize(new_size, Image.Resampling.LANCZOS)
        if icc:
            img.info["icc_profile"] = icc
