"""Whatever is on a user's disk, uploaded: each file gets a clear message or a correct result.

The same `load_photo` + `find_faces` path serves the Predict page, `fer-predict` and Live;
the browser test (test_browser.py) checks that a bad upload leaves the app serving.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fer_core.faces.detection import ImageError, load_photo, scale_box
from fer_core.faces.predict import find_faces
from tests.conftest import detectable_faces, make_photo


@pytest.fixture(scope="module")
def face_photo(fer2013) -> Image.Image:
    return make_photo(detectable_faces(fer2013, n=1))


def encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of width x height black pixels: a few hundred KB that would decode to
    width x height pixels in memory (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    pixels = zlib.compressobj(9)
    idat = b"".join(pixels.compress(row) for _ in range(height)) + pixels.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("empty", "not a readable image"),
        ("text", "not a readable image"),
        ("truncated", "not a readable image"),
        ("bomb", "decompression bomb"),
    ],
)
def test_unusable_files_get_a_clear_message(face_photo, kind, needle):
    data = {
        "empty": b"",
        "text": b"name,age\nbob,3\n",
        "truncated": encoded(face_photo, "JPEG")[:2000],
        "bomb": png_bomb(20000, 20000),
    }[kind]
    with pytest.raises(ImageError) as error:
        load_photo(data, name=f"{kind}.jpg")
    assert str(error.value).startswith(f"{kind}.jpg: ") and needle in str(error.value)


def one_face(image: Image.Image) -> None:
    assert image.mode == "RGB"
    assert len(find_faces(image)) == 1


def test_animated_gif_uses_its_first_frame(face_photo):
    frames = [face_photo.convert("P"), Image.new("P", face_photo.size, 7)]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = load_photo(data, name="anim.gif")
    assert image.size == face_photo.size
    one_face(image)


def test_sixteen_bit_and_palette_png(face_photo):
    gray16 = Image.fromarray(np.asarray(face_photo.convert("L")).astype(np.uint16) * 257)
    assert gray16.mode.startswith("I")
    one_face(load_photo(encoded(gray16, "PNG"), name="16bit.png"))
    one_face(load_photo(encoded(face_photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), name="pal.png"))


def test_cmyk_jpeg(face_photo):
    one_face(load_photo(encoded(face_photo.convert("CMYK"), "JPEG"), name="cmyk.jpg"))


def test_exif_rotated_photo_is_upright(face_photo):
    rotated = face_photo.rotate(90, expand=True)  # stored sideways, EXIF says "rotate 90 CW to show"
    exif = Image.Exif()
    exif[0x0112] = 6
    image = load_photo(encoded(rotated, "JPEG", exif=exif), name="phone.jpg")
    assert image.size == face_photo.size
    one_face(image)


def test_ten_thousand_pixels_square(face_photo):
    big = Image.new("RGB", (10000, 10000), (128, 128, 128))
    big.paste(face_photo.resize((3200, 2400)), (3000, 3000))
    image = load_photo(encoded(big, "JPEG", quality=70), name="big.jpg")
    assert image.size == (2500, 2500) and image.info["fer_scale"] == (4.0, 4.0)  # the image budget: decoded at 1/4
    [face] = find_faces(image)
    x, y, w, h = scale_box(face.box, image.info["fer_scale"])  # in the file's pixels
    assert 3000 < x + w / 2 < 6200 and w > 500
