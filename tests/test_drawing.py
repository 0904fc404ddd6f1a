"""Boxes and tags drawn on real photos (fer_core/faces/drawing.py, used by Predict and Live): tags never
overlap, stay inside the picture, scale with it, and state the top two where the model is unsure."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from benchmarks.faces_dev import FACES_DEV, face_boxes
from fer_core.classes import CLASSES
from fer_core.faces.drawing import GREY, PURPLE, face_tag, tag_rects
from fer_core.faces.drawing import draw_tags as draw
from fer_core.inference.labels import UNSURE_BELOW, label_text, top_two

SURE = [0.02, 0.01, 0.02, 0.88, 0.03, 0.02, 0.02]  # happy 88%
UNSURE = [0.05, 0.02, 0.03, 0.1, 0.35, 0.04, 0.41]  # neutral 41% / sad 35%


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def tags_of(name: str, scale: float = 1.0):
    return [face_tag(box, UNSURE if i % 2 else SURE, i, scale) for i, box in enumerate(face_boxes()[name], 1)]


@pytest.mark.parametrize("name", sorted(face_boxes()))
def test_tags_never_overlap_and_stay_inside(name):
    image = Image.open(FACES_DEV / name)
    tags = tags_of(name)
    rects = tag_rects(image.size, tags)
    assert len(rects) == len(tags)
    for rect in rects:
        assert 0 <= rect[0] < rect[2] <= image.width and 0 <= rect[1] < rect[3] <= image.height
    for a, b in itertools.combinations(rects, 2):
        assert not overlap(a, b), (a, b)


def test_tags_are_drawn_where_laid_out_in_their_colours():
    image = Image.open(FACES_DEV / "2008_001322.jpg").convert("RGB")  # three people side by side
    tags = tags_of("2008_001322.jpg")
    drawn = np.asarray(draw(image, tags)).astype(int)
    for tag, (x0, y0, x1, y1) in zip(tags, tag_rects(image.size, tags), strict=True):
        patch = drawn[y0:y1, x0:x1]
        fill = np.array(GREY if tag.unsure else PURPLE)
        filled = (np.abs(patch - fill).max(axis=2) < 8).mean()
        white = (patch.min(axis=2) > 200).mean()
        assert filled > 0.4 and white > 0.05, (tag.text, filled, white)


def test_tags_scale_with_the_picture():
    image = Image.open(FACES_DEV / "2008_002506.jpg")
    small = tag_rects(image.size, tags_of("2008_002506.jpg"))
    big = tag_rects((image.width * 2, image.height * 2), tags_of("2008_002506.jpg", scale=2))
    heights = [r[3] - r[1] for r in small], [r[3] - r[1] for r in big]
    assert all(1.6 < b / s < 2.4 for s, b in zip(*heights, strict=True)), heights


def test_a_crowd_too_dense_for_full_tags_gets_smaller_or_numbered_ones():
    """50 faces in a 320x240 picture: no two tags overlap, whatever size they end up."""
    boxes = [(x, y, 20, 20) for x in range(0, 300, 30) for y in range(0, 220, 45)]
    tags = [face_tag(box, SURE, i) for i, box in enumerate(boxes, 1)]
    rects = tag_rects((320, 240), tags)
    assert rects and all(not overlap(a, b) for a, b in itertools.combinations(rects, 2))


def test_the_top_two_where_the_model_is_unsure():
    assert label_text(SURE) == "happy 88%"
    assert label_text(UNSURE) == "neutral 41% / sad 35%"
    assert label_text(dict(zip(CLASSES, UNSURE, strict=True))) == "neutral 41% / sad 35%"
    just = [UNSURE_BELOW if c == "fear" else (1 - UNSURE_BELOW) / 6 for c in CLASSES]
    assert len(top_two(just)) == 1  # at the threshold: sure
    tag = face_tag((10, 10, 50, 50), UNSURE, 3)
    assert tag.unsure and tag.text == "3: neutral 41% / sad 35%" and tag.short == "3"
    assert not face_tag((10, 10, 50, 50), SURE).unsure and face_tag((10, 10, 50, 50), SURE).short == "happy"
