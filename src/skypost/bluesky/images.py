"""Link-card thumbnails: check that the bytes are an image and make them fit Bluesky.

Bluesky refuses a thumbnail over 1,000,000 bytes. :func:`prepare_thumbnail` decodes
the image with Pillow (only common web formats, never EPS/PostScript; a guard refuses
images with more than :data:`MAX_PIXELS` pixels before anything is decoded), applies the
EXIF orientation, keeps the first frame of an animation, and re-encodes it as JPEG —
transparency is flattened on white, palette/CMYK/16-bit images become RGB or greyscale —
scaled to at most ``max_side`` pixels a side, lowering the JPEG quality step by step and
then the dimensions until it fits ``max_bytes``.

A JPEG or PNG that already fits (size, dimensions, upright, plain colour mode, not
animated) is passed through byte for byte.
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageOps

__all__ = ["MAX_THUMB_BYTES", "MAX_PIXELS", "ImageError", "prepare_thumbnail", "sniff_image_mime"]

MAX_THUMB_BYTES = 1_000_000
MAX_PIXELS = 64_000_000  # about 8000 x 8000; larger is refused before decoding
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

    Raises :class:`ImageError` for data that is not a decodable image, or that cannot be
    made small enough."""
    if not data:
        raise ImageError("empty image data")
    if max_bytes < 1 or max_side < 1:
        raise ValueError("max_bytes and max_side must be positive")
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
            width, height = img.size
            if width < 1 or height < 1:
                raise ImageError("the image has no pixels")
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"the image is too large to decode safely ({width}x{height} pixels, "
                    f"limit {MAX_PIXELS:,})"
                )
            source_format = img.format
            if _can_pass_through(img, len(data), max_bytes, max_side):
                img.load()  # proves the whole file decodes
                return bytes(data), "image/png" if source_format == "PNG" else "image/jpeg"
            prepared = _decode_first_frame(img, max_side)
        return _encode_to_fit(prepared, max_bytes)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"the image is too large to decode safely ({exc})") from None
    except MemoryError:
        raise ImageError("the image is too large to decode") from None
    except Exception as exc:  # Pillow raises many kinds of errors on broken input
        raise ImageError(f"not a decodable image ({type(exc).__name__}: {exc})") from None


def _can_pass_through(img: Image.Image, size: int, max_bytes: int, max_side: int) -> bool:
    if size > max_bytes or max(img.size) > max_side:
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
    if img.format in ("JPEG", "MPO"):
        img.draft(None, (max_side, max_side))  # let libjpeg decode at a reduced scale
    img.load()
    icc = img.info.get("icc_profile")
    source_mode = img.mode
    frame = ImageOps.exif_transpose(img)  # a copy; the EXIF orientation applied
    frame = _flatten(frame)
    if frame.width > max_side or frame.height > max_side:
        frame.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    # Keep a colour profile only when the colour space is still the one it describes.
    same_space = (source_mode in ("RGB", "RGBA", "RGBa") and frame.mode == "RGB") or (
        source_mode in ("L", "LA", "La") and frame.mode == "L"
    )
    if icc and same_space:
        frame.info["icc_profile"] = icc
    else:
        frame.info.pop("icc_profile", None)
    return frame


def _flatten(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = img if mode == "I" else img.convert("I")
        peak = wide.getextrema()[1] or 1
        scale = 255 / 65535 if peak > 255 else 1.0
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
