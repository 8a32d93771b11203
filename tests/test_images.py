"""Thumbnail preparation (skypost.bluesky.images): every result fits and decodes."""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from skypost.bluesky import images
from skypost.bluesky.images import (
    MAX_DECODE_BYTES,
    MAX_THUMB_BYTES,
    ImageError,
    decode_cost,
    prepare_thumbnail,
    sniff_image_mime,
)


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    channels = len(mode)
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * channels))


def photo_like(size: tuple[int, int]) -> Image.Image:
    """Smooth gradients plus noise: compresses like a photo, not like noise."""
    w, h = size
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").rotate(90).resize(size)
    blue = Image.effect_noise(size, 40)
    return Image.merge("RGB", (red, green, blue))


def check(result: tuple[bytes, str], *, max_bytes: int = MAX_THUMB_BYTES, max_side: int = 2000) -> Image.Image:
    data, mime = result
    assert len(data) <= max_bytes
    assert mime in ("image/jpeg", "image/png")
    img = Image.open(io.BytesIO(data))
    img.load()  # decodes fully
    assert {"image/jpeg": "JPEG", "image/png": "PNG"}[mime] == img.format
    assert max(img.size) <= max_side
    return img


def test_noisy_png_of_several_megabytes() -> None:
    data = encode(noise((1400, 1400)), "PNG")
    assert len(data) > 5_000_000
    img = check(prepare_thumbnail(data))
    assert img.format == "JPEG"
    assert img.width == img.height  # aspect ratio kept


def test_huge_jpeg_is_scaled_down() -> None:
    data = encode(photo_like((6000, 4000)), "JPEG", quality=95)
    img = check(prepare_thumbnail(data))
    assert img.size == (2000, 1333) or img.size[0] <= 2000 and abs(img.size[0] / img.size[1] - 1.5) < 0.01


def test_png_with_alpha_is_flattened_on_white_when_reencoded() -> None:
    img = noise((1300, 1300), "RGBA")
    pixels = img.load()
    for x in range(100):
        for y in range(100):
            pixels[x, y] = (0, 0, 0, 0)  # fully transparent corner
    data = encode(img, "PNG")
    assert len(data) > MAX_THUMB_BYTES
    out = check(prepare_thumbnail(data))
    assert out.mode == "RGB"
    r, g, b = out.convert("RGB").getpixel((5, 5))
    assert min(r, g, b) > 240  # white, not black


def test_small_png_with_alpha_passes_through() -> None:
    data = encode(Image.new("RGBA", (64, 32), (255, 0, 0, 128)), "PNG")
    assert prepare_thumbnail(data) == (data, "image/png")


def test_small_jpeg_passes_through_unchanged() -> None:
    data = encode(photo_like((300, 200)), "JPEG", quality=80)
    assert prepare_thumbnail(data) == (data, "image/jpeg")


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("P", (120, 80), 0), Image.new("P", (120, 80), 1)]
    palette = [255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6)
    for frame in frames:
        frame.putpalette(palette)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    data = buf.getvalue()
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = check(prepare_thumbnail(data))
    r, g, b = out.convert("RGB").getpixel((60, 40))
    assert r > 200 and b < 60  # the red first frame


def test_gif_with_transparency() -> None:
    img = Image.new("P", (50, 50), 1)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    data = encode(img, "GIF", transparency=0)
    check(prepare_thumbnail(data))


def test_webp_is_converted() -> None:
    data = encode(photo_like((800, 600)), "WEBP", quality=80)
    assert sniff_image_mime(data) == "image/webp"
    img = check(prepare_thumbnail(data))
    assert img.format == "JPEG" and img.size == (800, 600)


def test_animated_webp() -> None:
    frames = [Image.new("RGB", (64, 64), (0, 200, 0)), Image.new("RGB", (64, 64), (200, 0, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    out = check(prepare_thumbnail(buf.getvalue()))
    r, g, b = out.convert("RGB").getpixel((32, 32))
    assert g > 150 and r < 60


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (400, 300), (0, 255, 255, 0)), "JPEG")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    img = check(prepare_thumbnail(data))
    assert img.mode == "RGB"
    r, g, b = img.getpixel((200, 150))
    assert r > 200 and g < 60 and b < 60  # red


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (200, 100), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 100))  # a red band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    out = check(prepare_thumbnail(data))
    assert out.size == (100, 200)
    r, g, b = out.getpixel((50, 5))  # the left band is now on top
    assert r > 200 and b < 80
    assert out.getexif().get(0x0112, 1) == 1


def test_sixteen_bit_greyscale_png() -> None:
    img = Image.linear_gradient("L").resize((300, 300)).convert("I")
    img = img.point(lambda v: v * 256)
    data = encode(img.convert("I;16"), "PNG")
    big = encode(Image.new("I;16", (300, 300)), "PNG")
    for blob in (data, big):
        out = check(prepare_thumbnail(blob, max_side=200))
        assert out.mode == "L"


def test_palette_png() -> None:
    data = encode(noise((1000, 1000)).quantize(64, method=Image.Quantize.FASTOCTREE), "PNG")
    check(prepare_thumbnail(data))


def test_max_side_and_tight_budget() -> None:
    data = encode(photo_like((1200, 900)), "PNG")
    check(prepare_thumbnail(data, max_side=300), max_side=300)
    check(prepare_thumbnail(data, max_bytes=20_000), max_bytes=20_000)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
        b"<svg xmlns='http://www.w3.org/2000/svg'></svg>",
        b"%!PS-Adobe-3.0 EPSF-3.0\n",  # never handed to Ghostscript
    ],
)
def test_not_images(data: bytes) -> None:
    with pytest.raises(ImageError):
        prepare_thumbnail(data)


def test_truncated_jpeg() -> None:
    data = encode(photo_like((600, 400)), "JPEG")
    with pytest.raises(ImageError):
        prepare_thumbnail(data[: len(data) // 2])


def test_corrupt_middle() -> None:
    data = bytearray(encode(Image.linear_gradient("L").resize((300, 300)).convert("RGB"), "PNG"))
    middle = len(data) // 2
    data[middle:middle + 200] = b"\xff" * 200
    with pytest.raises(ImageError):
        prepare_thumbnail(bytes(data))


def test_decompression_bomb_is_refused_before_decoding() -> None:
    small = encode(Image.new("L", (1, 1)), "PNG")
    # Rewrite the IHDR to claim 100000 x 100000 pixels (with a valid CRC).
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    bomb = small[:8] + chunk + small[8 + 25:]
    with pytest.raises(ImageError, match="too large"):
        prepare_thumbnail(bomb)


def forged_png(width: int, height: int, color_type: int = 6) -> bytes:
    """A PNG whose header claims `width` x `height` (its pixel data is one tiny row)."""
    small = encode(Image.new("L", (1, 1)), "PNG")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return small[:8] + chunk + small[8 + 25:]


def test_images_over_the_decode_budget_are_refused_from_the_header() -> None:
    # within MAX_PIXELS, but 244 MiB of RGBA: refused before a byte is decoded
    for width, height, color_type in ((8000, 8000, 6), (8000, 6000, 2)):
        with pytest.raises(ImageError, match=r"too large to decode safely .* MiB to decode"):
            prepare_thumbnail(forged_png(width, height, color_type))
    # greyscale of the same size is a quarter of that: it gets as far as decoding
    with pytest.raises(ImageError, match="not a decodable image"):
        prepare_thumbnail(forged_png(8000, 8000, 0))


def test_decode_cost_counts_modes_codecs_and_progressive_jpegs() -> None:
    def opened(data: bytes) -> Image.Image:
        return Image.open(io.BytesIO(data))

    assert decode_cost(opened(encode(Image.new("L", (100, 50)), "PNG"))) == 5_000
    assert decode_cost(opened(encode(Image.new("RGB", (100, 50)), "PNG"))) == 20_000
    assert decode_cost(opened(encode(Image.new("RGB", (100, 50)), "WEBP"))) == 80_000
    baseline = encode(Image.new("RGB", (160, 80)), "JPEG")
    progressive = encode(Image.new("RGB", (160, 80)), "JPEG", progressive=True)
    assert decode_cost(opened(baseline)) == 160 * 80 * 4
    # 4:2:0: one luma and two quarter-size chroma planes of 16-bit coefficients
    assert decode_cost(opened(progressive)) == 160 * 80 * 4 + int(160 * 80 * 1.5) * 2
    assert MAX_DECODE_BYTES < 8000 * 8000 * 4


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "L", "LA", "P", "I;16", "CMYK"])
@pytest.mark.parametrize("factor", [1, 3, 7])
def test_strips_give_the_same_pixels_as_the_whole_picture(mode: str, factor: int) -> None:
    base = noise((701, 613), "RGBA")
    img = base.quantize(64) if mode == "P" else base.convert(mode)
    img = Image.open(io.BytesIO(encode(img, "TIFF" if mode in ("CMYK", "I;16") else "PNG")))
    img.load()
    target = (701 // factor, 613 // factor)
    whole = images._flatten(img, images._sixteen_bit_scale(img))
    whole = whole.reduce(factor) if factor > 1 else whole
    strips = images._shrink_flat(img, target)
    assert strips.mode == whole.mode and strips.size == whole.size
    assert strips.tobytes() == whole.tobytes()


def test_sniff() -> None:
    assert sniff_image_mime(encode(Image.new("RGB", (2, 2)), "JPEG")) == "image/jpeg"
    assert sniff_image_mime(encode(Image.new("RGB", (2, 2)), "PNG")) == "image/png"
    assert sniff_image_mime(encode(Image.new("P", (2, 2)), "GIF")) == "image/gif"
    assert sniff_image_mime(b"<html>") is None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "CMYK", "1", "I"]),
    fmt=st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "BMP"]),
    width=st.integers(1, 700),
    height=st.integers(1, 700),
    max_bytes=st.sampled_from([5_000, 50_000, MAX_THUMB_BYTES]),
    seed=st.binary(min_size=1, max_size=8),
)
def test_any_image_fits(mode: str, fmt: str, width: int, height: int, max_bytes: int, seed: bytes) -> None:
    base = Image.frombytes("RGB", (width, height), (seed * (width * height * 3 // len(seed) + 1))[: width * height * 3])
    base = Image.blend(base, noise((width, height)), 0.5)
    img = base.convert(mode) if mode != "P" else base.quantize(200)
    try:
        data = encode(img, fmt)
    except (OSError, ValueError, KeyError):
        return  # this format cannot store this mode
    out = check(prepare_thumbnail(data, max_bytes=max_bytes, max_side=500), max_bytes=max_bytes, max_side=500)
    assert out.width >= 1 and out.height >= 1
