"""Palette, colorize, overlay, side_by_side and save_png."""

import colorsys

import numpy as np
import pytest
from PIL import Image

from segfit.visualize import colorize, overlay, palette, save_png, side_by_side


def test_palette_is_deterministic_distinct_and_starts_black():
    colours = palette(5000)
    assert colours.shape == (5000, 3) and colours.dtype == np.uint8
    assert (colours[0] == 0).all()
    assert len({tuple(c) for c in colours.tolist()}) == 5000
    np.testing.assert_array_equal(palette(10), colours[:10])
    # bright: every object colour has a channel ≥ 200
    assert (colours[1:].max(axis=1) >= 200).all()


def test_palette_matches_the_hsv_definition():
    for i, colour in enumerate(palette(40)[1:], start=1):
        hue = (i * 0.6180339887498949) % 1.0
        rgb = colorsys.hsv_to_rgb(hue, (0.95, 0.65, 0.8)[i % 3], (1.0, 0.8, 0.9)[(i // 3) % 3])
        assert tuple(colour) == tuple(round(c * 255) for c in rgb)


def test_colorize_uses_the_palette_per_id():
    ids = np.array([[0, 1], [2, 7]], dtype=np.uint16)
    out = colorize(ids)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    colours = palette(8)
    assert (out[0, 0] == 0).all() and (out[1, 1] == colours[7]).all() and (out[1, 0] == colours[2]).all()
    with pytest.raises(ValueError, match="index_map"):
        colorize(np.zeros((2, 2), np.float32))


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)


@pytest.mark.parametrize("contours", [False, True])
def test_overlay_blends_only_object_pixels(image, contours):
    ids = np.zeros((60, 80), np.int32)
    ids[10:30, 10:40] = 1
    ids[35:55, 45:75] = 3
    out = overlay(image, ids, alpha=0.5, contours=contours)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[ids == 0], image[ids == 0])
    inner = np.zeros_like(ids, dtype=bool)
    inner[12:28, 12:38] = True  # away from the contour
    expected = np.round(0.5 * image[inner] + 0.5 * palette(4)[1].astype(float)).astype(np.uint8)
    np.testing.assert_array_equal(out[inner], expected)
    edge = out[10, 20], out[20, 10]
    if contours:
        assert all((pixel == palette(4)[1]).all() for pixel in edge)
    assert not np.array_equal(out, image)


def test_overlay_masks_stack_and_outline_each(image):
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 10:40, 10:40] = True
    masks[1, 20:50, 20:50] = True
    out = overlay(image, masks, alpha=0.5, contours=True)
    colours = palette(3).astype(float)

    def blend(y, x, k):
        return np.round(0.5 * image[y, x] + 0.5 * colours[k]).astype(np.uint8)

    np.testing.assert_array_equal(out[35, 35], blend(35, 35, 2))  # overlap: the last mask fills
    np.testing.assert_array_equal(out[15, 15], blend(15, 15, 1))
    np.testing.assert_array_equal(out[39, 15], colours[1])  # outline of mask 0
    np.testing.assert_array_equal(out[35, 39], colours[1])  # ... still drawn inside mask 1
    np.testing.assert_array_equal(out[20, 30], colours[2])  # outline of mask 1 crossing mask 0
    assert np.array_equal(out[~masks.any(0)], image[~masks.any(0)])
    assert np.array_equal(overlay(image, np.zeros((0, 60, 80), bool)), image)


def test_overlay_draws_points_by_label_and_boxes(image):
    empty = np.zeros((60, 80), np.int32)
    points, labels = np.array([[[10, 10]], [[50, 40]], [[30, 30]]]), np.array([[1], [0], [-1]])
    out = overlay(image, empty, points=points, labels=labels)
    assert tuple(out[10, 10]) == (0, 255, 0) and tuple(out[40, 50]) == (255, 0, 0)
    assert np.array_equal(out[30, 30], image[30, 30])  # padding points are not drawn
    boxed = overlay(image, empty, boxes=[[5, 5, 70, 50]])
    assert tuple(boxed[5, 40]) == (255, 255, 0) and np.array_equal(boxed[30, 40], image[30, 40])


def test_overlay_refuses_a_mask_of_another_size(image):
    with pytest.raises(ValueError, match="masks"):
        overlay(image, np.zeros((60, 81), np.int32))


def test_side_by_side_width_is_the_sum_and_titles_add_a_strip(image):
    grey = np.zeros((40, 30), np.uint8)
    plain = side_by_side(image, grey)
    assert plain.shape == (60, 110, 3)
    np.testing.assert_array_equal(plain[:, :80], image)
    assert not plain[40:, 80:].any()  # the shorter panel is padded black
    titled = side_by_side(image, grey, titles=["ground truth", "prediction"])
    assert titled.shape[1] == 110 and titled.shape[0] > 60
    np.testing.assert_array_equal(titled[-60:, :80], image)
    assert titled[: titled.shape[0] - 60].any()  # some title text
    with pytest.raises(ValueError, match="titles"):
        side_by_side(image, grey, titles=["one"])


def test_save_png_makes_folders_and_round_trips(tmp_path, image):
    path = save_png(tmp_path / "a" / "b" / "x.png", image)
    assert path.exists()
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
    mask = save_png(tmp_path / "m.png", np.eye(4, dtype=bool))
    np.testing.assert_array_equal(np.asarray(Image.open(mask)), np.eye(4, dtype=np.uint8) * 255)
    ids = np.array([[0, 300], [65535, 1]], np.uint16)
    np.testing.assert_array_equal(np.asarray(Image.open(save_png(tmp_path / "i.png", ids))), ids)
