"""Keypoints drawn on their image: the set's skeleton and each keypoint's name, every mark as
strong as the model's confidence in it (`regda-dist predict --draw`)."""

from __future__ import annotations

import colorsys
from pathlib import Path

from PIL import Image, ImageDraw

from regda_dist.data.keypoints import KeypointSpec


def colours(n: int) -> list[tuple[int, int, int]]:
    """n distinct hues."""
    return [
        tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(n, 1), 0.85, 1.0)) for i in range(n)
    ]


def draw(image: Image.Image, instances: list[list[float]], spec: KeypointSpec,
         names: bool = True) -> Image.Image:  # fmt: skip
    """`image` with each instance's keypoints ([x, y, confidence] * K, file pixels) drawn:
    bones between both ends (alpha the lower confidence), dots of radius and alpha growing
    with confidence, the names beside the dots."""
    out = image.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    pen = ImageDraw.Draw(layer)
    scale = max(out.size) / 256
    hue = colours(spec.num_keypoints)
    for flat in instances:
        points = [flat[i : i + 3] for i in range(0, len(flat), 3)]
        for a, b in spec.skeleton:
            (xa, ya, ca), (xb, yb, cb) = points[a], points[b]
            alpha = int(255 * max(0.35, min(ca, cb, 1.0)))
            pen.line([(xa, ya), (xb, yb)], fill=(*hue[b], alpha), width=max(1, round(3 * scale)))
        for k, (x, y, c) in enumerate(points):
            c = max(0.0, min(float(c), 1.0))
            r = scale * (2.0 + 3.0 * c)
            pen.ellipse([x - r, y - r, x + r, y + r], fill=(*hue[k], int(255 * max(0.45, c))),
                        outline=(0, 0, 0, int(255 * max(0.45, c))))  # fmt: skip
            if names:
                pen.text((x + r + 1, y - r), spec.names[k], fill=(255, 255, 255, 200))
    return Image.alpha_composite(out, layer).convert("RGB")


MIN_SIDE = 256  # smaller images are enlarged first, so that names and dots can be read


def draw_file(path: Path, instances: list[list[float]], spec: KeypointSpec, out: Path,
              names: bool = True) -> Path:  # fmt: skip
    """The image at `path` with its instances drawn, written to `out` (PNG); an image whose
    longer side is under MIN_SIDE px is enlarged by a whole factor first (keypoints with it)."""
    with Image.open(path) as image:
        factor = -(-MIN_SIDE // max(image.size))
        if factor > 1:
            image = image.resize((image.width * factor, image.height * factor))
            instances = [[v * factor if i % 3 < 2 else v for i, v in enumerate(flat)]
                         for flat in instances]  # fmt: skip
        drawn = draw(image, instances, spec, names)
    out.parent.mkdir(parents=True, exist_ok=True)
    drawn.save(out)
    return out
