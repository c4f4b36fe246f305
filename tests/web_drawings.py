"""Digits drawn as strokes on a 280x280 pad, shared by the API tests (rendered with Pillow) and the browser
tests (drawn with the mouse on the page's canvas)."""

from __future__ import annotations

import base64
import io
import math

SIZE = 280
WIDTH = 20  # the page's pen width, in pad pixels


def _ellipse(cx, cy, rx, ry, n=28):
    return [(cx + rx * math.sin(2 * math.pi * k / n), cy - ry * math.cos(2 * math.pi * k / n)) for k in range(n + 1)]


#: label -> strokes, each a list of (x, y) points in pad pixels.
DIGITS = {
    "0": [_ellipse(140, 140, 62, 92)],
    "1": [[(118, 78), (145, 50), (145, 232)]],
    "2": [[(88, 95), (102, 64), (140, 50), (180, 64), (190, 100), (175, 135), (92, 228), (200, 228)]],
    "3": [[(88, 70), (130, 50), (178, 62), (186, 102), (140, 134), (188, 160), (190, 205), (145, 232), (86, 216)]],
    "4": [[(165, 232), (165, 48), (80, 172), (210, 172)]],
    "7": [[(78, 58), (202, 58), (122, 234)]],
}


def render(strokes, size=SIZE, width=WIDTH):
    """The strokes drawn black on a white pad, as the page's canvas exports them (an opaque RGBA image)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        draw.line(stroke, fill=(0, 0, 0, 255), width=width, joint="curve")
        for x, y in (stroke[0], stroke[-1]):
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=(0, 0, 0, 255))
    return image


def data_url(image, fmt="PNG"):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    media = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}[fmt]
    return f"data:{media};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
