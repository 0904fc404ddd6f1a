"""Faces boxed and labelled on a picture: the one drawing behind the Predict and Live pages.

Each face gets a box and a tag (white text on a filled label) placed where no other tag is:
above its box, else below, else inside its top edge, else the nearest free place; always
inside the image. The text scales with the picture (TEXT_SHARE of its longer side); when the
tags of a crowded photo cannot all fit at that size they are made smaller, and at the smallest
size a tag shows just its face's number (the page lists each face's answer beside the photo).
Where the model is unsure, the tag says the top two classes (fer_core/inference/labels.py) on a grey fill
instead of purple: the same box, a visibly weaker claim.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from ..inference.labels import is_unsure, label_text, top_two

PURPLE = (123, 63, 160)  # boxes, and tags of sure answers
GREY = (88, 88, 96)  # tags of unsure answers (the top two)
TEXT_SHARE = 0.03  # text height as a share of the picture's longer side
MIN_TEXT_PX = 11


@dataclass(frozen=True)
class Tag:
    box: tuple[int, int, int, int]  # the face: x, y, w, h in the picture's pixels
    text: str  # e.g. "1: happy 82%" or "neutral 41% / sad 35%"
    short: str = ""  # what to show when even the smallest tags do not fit (e.g. "1")
    unsure: bool = False


Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 excluded)


def face_tag(box, probabilities, number: int | None = None, scale: float = 1.0) -> Tag:
    """The tag of one face: '2: happy 82%' (numbered, as Predict lists faces) or 'happy 82%';
    `scale` maps the box into the picture drawn on (a photo shown smaller than it is)."""
    text = label_text(probabilities)
    short = str(number) if number is not None else top_two(probabilities)[0][0]
    return Tag(
        tuple(round(v * scale) for v in box),
        f"{number}: {text}" if number is not None else text,
        short,
        is_unsure(probabilities),
    )


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place(box, size, taken: list[Rect], width: int, height: int) -> Rect | None:
    """Where a tag of `size` goes for a face `box`: above it, below it or inside its top edge
    if free, else the free place nearest to above it; slid sideways to stay inside the picture.
    None: no room left."""
    x, y, w, h = box
    tw, th = size
    if tw > width or th > height:
        return None
    left = min(max(0, x), width - tw)

    def free(tx, ty):
        rect = (tx, ty, tx + tw, ty + th)
        return 0 <= ty <= height - th and not any(_overlaps(rect, other) for other in taken)

    for ty in (y - th, y + h, y):
        if free(left, ty):
            return (left, ty, left + tw, ty + th)
    spots = [
        (tx, ty)
        for ty in range(0, height - th + 1, max(1, th // 2))
        for tx in range(0, width - tw + 1, max(1, tw // 4))
    ]
    spots.sort(key=lambda p: (p[0] - left) ** 2 + (p[1] - (y - th)) ** 2)
    for tx, ty in spots:
        if free(tx, ty):
            return (tx, ty, tx + tw, ty + th)
    return None


def _layout(draw, tags: list[Tag], font_px: int, width: int, height: int, short: bool):
    font = ImageFont.load_default(size=font_px)
    pad = max(2, font_px // 5)
    placed, taken = [], []
    for i in sorted(range(len(tags)), key=lambda i: (tags[i].box[1], tags[i].box[0])):  # top to bottom
        text = tags[i].short if short else tags[i].text
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        rect = _place(tags[i].box, (right - left + 2 * pad, bottom - top + 2 * pad), taken, width, height)
        if rect is None:
            return None
        taken.append(rect)
        placed.append((i, rect, text, (rect[0] + pad - left, rect[1] + pad - top)))
    return font, placed


def layout_tags(draw: ImageDraw.ImageDraw, tags: list[Tag], width: int, height: int):
    """(font, [(tag index, rect, text, text origin)]) at the largest size where every tag fits,
    down to MIN_TEXT_PX, then numbers only; None when not even those fit."""
    size = max(MIN_TEXT_PX, round(TEXT_SHARE * max(width, height)))
    while size >= MIN_TEXT_PX:
        layout = _layout(draw, tags, size, width, height, short=False)
        if layout:
            return layout
        size -= max(1, size // 6)
    return _layout(draw, tags, MIN_TEXT_PX, width, height, short=True)


def draw_tags(image: Image.Image, tags: list[Tag]) -> Image.Image:
    """A copy of `image` (RGB) with each tag's face boxed and labelled, no two tags overlapping
    (a crowd too large for even numbered tags gets its boxes only)."""
    canvas = image.convert("RGB") if image.mode != "RGB" else image.copy()
    draw = ImageDraw.Draw(canvas)
    line = max(2, round(max(canvas.size) / 320))
    for tag in tags:
        x, y, w, h = tag.box
        draw.rectangle([x, y, x + w, y + h], outline=PURPLE, width=line)
    layout = layout_tags(draw, tags, *canvas.size)
    if layout:
        font, placed = layout
        for i, rect, text, origin in placed:
            draw.rectangle((rect[0], rect[1], rect[2] - 1, rect[3] - 1), fill=GREY if tags[i].unsure else PURPLE)
            draw.text(origin, text, fill="white", font=font)
    return canvas


def tag_rects(image_size: tuple[int, int], tags: list[Tag]) -> list[Rect]:
    """Where draw_tags puts each tag, in `tags` order (empty when they do not fit)."""
    layout = layout_tags(ImageDraw.Draw(Image.new("RGB", (1, 1))), tags, *image_size)
    return [rect for _, rect, _, _ in sorted(layout[1])] if layout else []
