"""Strict decoding: every bad file raises DataError naming it; maps keep ids and colour planes exact."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from segfit.data.image_io import list_images, read_image, read_index_map
from segfit.data.records import DataError


@pytest.fixture
def rgb() -> np.ndarray:
    return (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)


def test_png_rgb_is_exact(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (40, 56, 3)
    np.testing.assert_array_equal(out, rgb)


def test_jpeg_is_rgb_not_bgr(tmp_path):
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(tmp_path / "red.jpg", quality=95)
    out = read_image(tmp_path / "red.jpg").astype(int)
    assert out[..., 0].mean() > 240 and out[..., 1:].mean() < 15


def test_grey_rgba_palette_and_16bit_become_rgb(tmp_path, rgb):
    grey = rgb[..., 0]
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.repeat(grey[..., None], 3, 2))

    rgba = np.concatenate([rgb, np.full((40, 56, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)

    palette = Image.fromarray(np.arange(40 * 56, dtype=np.uint8).reshape(40, 56) % 3).convert("L").convert("P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette.save(tmp_path / "pal.png")
    out = read_image(tmp_path / "pal.png")
    assert out.shape == (40, 56, 3) and tuple(out[0, 1]) == (0, 255, 0) and tuple(out[0, 2]) == (0, 0, 255)

    sixteen = (grey.astype(np.uint16) * 257)  # 8-bit values spread over the 16-bit range
    cv2.imwrite(str(tmp_path / "g16.png"), sixteen)
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png"), np.repeat(grey[..., None], 3, 2))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found") as err:
        read_image(tmp_path / "nope.jpg")
    assert err.value.path == str(tmp_path / "nope.jpg")


def test_corrupt_png(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    data = bytearray((tmp_path / "a.png").read_bytes())
    data[60:80] = b"\x00" * 20  # inside the IDAT chunk: CRC and zlib stream broken
    (tmp_path / "a.png").write_bytes(bytes(data))
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    for name in ("a.png", "junk.png"):
        with pytest.raises(DataError, match="cannot decode") as err:
            read_image(tmp_path / name)
        assert err.value.path == str(tmp_path / name)


@pytest.mark.parametrize("cut", [2, 100, 1500])
def test_truncated_jpeg(tmp_path, rgb, cut):
    Image.fromarray(np.tile(rgb, (4, 4, 1))).save(tmp_path / "a.jpg", quality=95)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(data[:-cut])
    assert cv2.imread(str(tmp_path / "a.jpg")) is not None  # OpenCV decodes it (with only a warning)
    with pytest.raises(DataError, match="truncated"):
        read_image(tmp_path / "a.jpg")


@pytest.mark.parametrize("cut", [12, 13, 100])
def test_truncated_png(tmp_path, rgb, cut):
    """12: IEND gone; 13: the IDAT CRC cut (Pillow's plain load() accepts both)."""
    Image.fromarray(rgb).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[:-cut])
    with pytest.raises(DataError):
        read_image(tmp_path / "a.png")
    with pytest.raises(DataError):
        read_index_map(tmp_path / "a.png", ["red"])


def test_truncated_jpeg_raises_even_if_pillow_was_told_to_allow_it(tmp_path, rgb, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    Image.fromarray(rgb).save(tmp_path / "a.jpg")
    (tmp_path / "a.jpg").write_bytes((tmp_path / "a.jpg").read_bytes()[:-50])
    with pytest.raises(DataError):
        read_image(tmp_path / "a.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


def test_palette_map_reads_indices_not_colours(tmp_path):
    ids = np.zeros((20, 30), np.uint8)
    ids[2:8, 3:9], ids[10:15, 20:28] = 1, 7
    image = Image.fromarray(ids).convert("P")
    image.putpalette([0, 0, 0] + [200, 100, 50] * 255)
    image.save(tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as written:
        assert written.mode == "P"
    out = read_index_map(tmp_path / "m.png", None)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, ids)


def test_16bit_map_keeps_large_ids(tmp_path):
    ids = np.zeros((10, 10), np.uint16)
    ids[:5], ids[5:, :3] = 300, 1000
    Image.fromarray(ids).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_index_map(tmp_path / "m.png", None), ids.astype(np.int32))


def test_rgb_map_needs_channels_unless_planes_are_equal(tmp_path):
    grey = np.zeros((10, 10, 3), np.uint8)
    grey[3:6, 3:6] = 4
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_index_map(tmp_path / "grey.png", None), grey[..., 0])
    grey[0, 0, 2] = 9
    Image.fromarray(grey).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="map_channels"):
        read_index_map(tmp_path / "colour.png", None)
    Image.fromarray(grey[..., 0]).save(tmp_path / "one.png")
    with pytest.raises(DataError, match="one-channel"):
        read_index_map(tmp_path / "one.png", ["blue", "red"])
    with pytest.raises(DataError, match="map_channels"):
        read_index_map(tmp_path / "colour.png", ["purple"])


def test_labpics_blue_red_combination(tmp_path):
    """Written in PIL's RGB order; the blue plane (materials) wins, red (vessels) fills where blue is 0."""
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[0:10, 0:10, 2] = 1        # material 1 (blue)
    rgb[0:10, 20:30, 2] = 2       # material 2 (blue)
    rgb[5:20, 5:25, 0] = 1        # vessel 1 (red), partly under both materials
    rgb[:, :, 1] = 77             # green is ignored
    Image.fromarray(rgb).save(tmp_path / "m.png")
    bgr = cv2.imread(str(tmp_path / "m.png"))
    np.testing.assert_array_equal(bgr[..., 0], rgb[..., 2])  # blue is OpenCV channel 0, as in the LabPics recipe

    ids = read_index_map(tmp_path / "m.png", ["blue", "red"])
    expected = np.zeros((20, 30), np.int32)
    expected[5:20, 5:25] = 256 + 1
    expected[0:10, 0:10], expected[0:10, 20:30] = 1, 2
    np.testing.assert_array_equal(ids, expected)

    swapped = read_index_map(tmp_path / "m.png", ["red", "blue"])
    assert swapped[7, 7] == 1 and swapped[2, 2] == 256 + 1  # the order of the names decides who wins
    np.testing.assert_array_equal(read_index_map(tmp_path / "m.png", ["green"]), np.full((20, 30), 77))


def test_list_images_natural_order_and_duplicates(tmp_path):
    for name in ("sa_10.jpg", "sa_2.png", "sa_1.tif", "sa_3.webp"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    assert list(list_images(tmp_path)) == ["sa_1", "sa_2", "sa_3", "sa_10"]
    Image.new("RGB", (4, 4)).save(tmp_path / "sa_2.jpg")
    with pytest.raises(DataError, match="same stem"):
        list_images(tmp_path)
    with pytest.raises(DataError, match="not found"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        list_images(tmp_path / "empty")
