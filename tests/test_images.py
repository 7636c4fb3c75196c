"""read_image on bad files (a BadImageError naming the file) and on unusual but valid formats."""

import cv2
import numpy as np
import pytest
from conftest import write_truncated_jpeg

from gender import UserError
from gender.images import BadImageError, load_image, parse_image_size, read_image, resize


def assert_bad(path, problem_words):
    with pytest.raises(BadImageError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message
    # look for the problem after the path: tmp_path itself holds words like "truncated"
    assert problem_words in message.split(str(path), 1)[1]
    assert "\n" not in message
    assert isinstance(info.value, UserError)  # the CLIs report it as one line, exit 2


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes_as_photo.jpg"
    path.write_text("this is not an image\n")
    assert_bad(path, "not an image")


def test_truncated_jpeg(tmp_path):
    path = write_truncated_jpeg(tmp_path / "cut_in_half.jpg")
    assert path.read_bytes().startswith(b"\xff\xd8")
    assert_bad(path, "truncated")


def test_jpeg_with_trailing_zero_padding_is_fine(tmp_path):
    ok, buffer = cv2.imencode(".jpg", np.full((16, 16, 3), 120, np.uint8))
    path = tmp_path / "padded.jpg"
    path.write_bytes(buffer.tobytes() + b"\x00" * 64)
    assert read_image(path).shape == (16, 16, 3)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert_bad(path, "empty")


def test_missing_file(tmp_path):
    assert_bad(tmp_path / "never_written.jpg", "no such file")


def test_folder_instead_of_file(tmp_path):
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    assert_bad(folder, "folder")


def test_bgr_png_reads_as_rgb(tmp_path):
    bgr = np.zeros((8, 10, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), bgr)
    image = read_image(path)
    assert image.shape == (8, 10, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [200, 0, 0]


def test_grayscale_png(tmp_path):
    gray = np.tile(np.arange(0, 240, 10, dtype=np.uint8), (5, 1))  # 5 x 24
    path = tmp_path / "gray.png"
    cv2.imwrite(str(path), gray)
    image = read_image(path)
    assert image.shape == (5, 24, 3) and image.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], gray)


def test_16bit_png_keeps_the_top_8_bits(tmp_path):
    gray16 = (np.arange(12 * 16).reshape(12, 16) * 300).astype(np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), gray16)
    image = read_image(path)
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], (gray16 >> 8).astype(np.uint8))


def test_16bit_colour_png(tmp_path):
    bgr16 = np.zeros((6, 6, 3), np.uint16)
    bgr16[..., 0] = 65535  # blue
    path = tmp_path / "deep_colour.png"
    cv2.imwrite(str(path), bgr16)
    image = read_image(path)
    assert image.dtype == np.uint8
    assert image[0, 0].tolist() == [0, 0, 255]


def test_rgba_png_drops_alpha(tmp_path):
    bgra = np.zeros((7, 9, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 200, 77
    path = tmp_path / "alpha.png"
    cv2.imwrite(str(path), bgra)
    image = read_image(path)
    assert image.shape == (7, 9, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [200, 20, 10]


def test_cmyk_jpeg_keeps_its_colours(tmp_path):
    from PIL import Image

    path = tmp_path / "print.jpg"
    rgb = (200, 30, 60)
    Image.new("RGB", (40, 30), rgb).convert("CMYK").save(path, "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    image = read_image(path)
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    assert np.abs(image[15, 20].astype(int) - rgb).max() <= 12


def test_resize_and_load_image(tmp_path):
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), np.full((20, 50, 3), 90, np.uint8))
    assert load_image(path, (32, 16)).shape == (32, 16, 3)
    image = np.zeros((10, 10, 3), np.uint8)
    assert resize(image, (10, 10)) is image


@pytest.mark.parametrize(
    "text, size", [("150", (150, 150)), ("128x64", (128, 64)), ("128×64", (128, 64))]
)
def test_parse_image_size(text, size):
    assert parse_image_size(text) == size


@pytest.mark.parametrize("text", ["16", "abc", "32x32x3", "0"])
def test_parse_image_size_rejects(text):
    with pytest.raises(UserError, match="--image-size"):
        parse_image_size(text)
