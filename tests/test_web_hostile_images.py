"""Hostile and unusual pictures posted to the drawing page's API: every one gets a 200 or a 4xx with
``{"error": ...}``, never a 500, and the server keeps serving. Pictures that claim more pixels than Pillow's
decompression-bomb limit are refused from their header (413) before anything is decoded."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from test_web_server import call, deep_file, server, still_serving  # noqa: F401  (fixtures)


def data_url(media: str, raw: bytes) -> str:
    return f"data:{media};base64,{base64.b64encode(raw).decode()}"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, bit_depth: int = 1, colour: int = 0, extra: bytes = b"") -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with one tiny compressed row of data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + extra
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def digit(mode: str = "L", size: int = 64) -> Image.Image:
    image = Image.new("L", (size, size), 255)
    for i in range(size // 4, 3 * size // 4):
        image.putpixel((size // 2, i), 0)
        image.putpixel((size // 2 + 1, i), 0)
    return image.convert(mode)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose start-of-frame marker is rewritten to claim ``width`` x ``height``."""
    raw = bytearray(encoded(digit(), "JPEG"))
    at = raw.index(b"\xff\xc0") + 5
    raw[at:at + 4] = struct.pack(">HH", height, width)
    return bytes(raw)


def animated(fmt: str) -> bytes:
    frames = [digit(), digit().rotate(90)]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


HOSTILE = {
    # claims beyond Pillow's bomb limit (2 x 89.5 million pixels): refused from the header
    "PNG of 20000 x 20000": ("image/png", png_claiming(20000, 20000), {413}),
    "PNG of 65535 x 65535 in 16-bit RGBA": ("image/png", png_claiming(65535, 65535, 16, 6), {413}),
    "JPEG of 65500 x 65500": ("image/jpeg", jpeg_claiming(65500, 65500), {413}),
    # claims over the page's own limit but under the bomb limit
    "PNG of 10000 x 10000": ("image/png", png_claiming(10000, 10000), {413}),
    # damaged data
    "PNG cut short": ("image/png", encoded(digit(), "PNG")[:60], {400}),
    "JPEG cut short": ("image/jpeg", encoded(digit(), "JPEG")[:200], {400}),
    "WebP cut short": ("image/webp", encoded(digit(), "WEBP")[:40], {400}),
    "PNG whose data is not zlib": ("image/png", png_claiming(64, 64)[:33] + png_chunk(b"IDAT", b"garbage")
                                   + png_chunk(b"IEND", b""), {400}),
    "PNG with a palette of 1000 colours": ("image/png", png_claiming(64, 64, 8, 3, png_chunk(b"PLTE", bytes(3000))),
                                           {200, 400}),
    "PNG of 0 x 0": ("image/png", png_claiming(0, 0), {400}),
    # unusual but valid pictures: read
    "animated PNG": ("image/png", animated("PNG"), {200}),
    "animated WebP": ("image/webp", animated("WEBP"), {200}),
    "16-bit grey PNG": ("image/png", encoded(Image.fromarray(np.asarray(digit(), np.uint16) * 257), "PNG"), {200}),
    "1-bit PNG": ("image/png", encoded(digit("1"), "PNG"), {200}),
    "palette PNG with transparency": ("image/png", encoded(digit("P"), "PNG", transparency=0), {200}),
    "grey + alpha PNG": ("image/png", encoded(digit("LA"), "PNG"), {200}),
    "CMYK JPEG": ("image/jpeg", encoded(digit("CMYK"), "JPEG"), {200}),
    "RGBA WebP": ("image/webp", encoded(digit("RGBA"), "WEBP"), {200}),
}


# Pillow warns (DecompressionBombWarning) on opening the 10000 x 10000 claim, which the page then refuses itself.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("route", ["/api/predict", "/api/conv-step"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_every_picture_gets_an_answer_not_a_500(server, route, name):  # noqa: F811
    media, raw, statuses = HOSTILE[name]
    where = {"layer": 0, "channel": 0, "row": 0, "col": 0} if route == "/api/conv-step" else {}
    status, _, data = call(server, "POST", route, {"image": data_url(media, raw), **where})
    assert status in statuses, (status, data)
    if status != 200:
        assert isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"], data
        assert "Internal" not in data["error"]
    still_serving(server)


def test_a_bomb_is_refused_with_its_size_and_the_limit(server):  # noqa: F811
    status, _, data = call(server, "POST", "/api/predict", {"image": data_url("image/png", png_claiming(20000, 20000))})
    assert status == 413 and "claims 400,000,000 pixels" in data["error"] and "the limit is" in data["error"], data
