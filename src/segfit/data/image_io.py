"""Strict image and instance-map decoding.

Every decoder error becomes a ``DataError`` naming the file, and truncated files are errors too: a JPEG or PNG
cut short decodes "successfully" in OpenCV (with a warning on stderr) or in Pillow when some library has set
``ImageFile.LOAD_TRUNCATED_IMAGES``, and would silently train on grey or garbage pixels.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Collection, Iterator

import numpy as np
from PIL import Image, ImageFile

from segfit.data.files import contained
from segfit.data.records import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
"""Suffixes (lower case) recognised as images when a folder is listed."""

PLANES = {"red": 0, "green": 1, "blue": 2}
"""Colour plane names → index in Pillow's RGB order (OpenCV's BGR order would be 2, 1, 0)."""

_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}

_strict_lock = threading.Lock()
_strict_users = 0
_saved_truncated_flag = False


@contextmanager
def strict_pillow() -> Iterator[None]:
    """Pillow refuses truncated files while any strict decode runs, whatever another library set globally."""
    global _strict_users, _saved_truncated_flag
    with _strict_lock:
        if _strict_users == 0:
            _saved_truncated_flag = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _strict_users += 1
    try:
        yield
    finally:
        with _strict_lock:
            _strict_users -= 1
            if _strict_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _saved_truncated_flag


@contextmanager
def _decoded(path: str | Path) -> Iterator[Image.Image]:
    """The fully decoded image, closed on exit; a PNG is also CRC-checked through IEND first, which catches a
    tail cut inside chunk data that a plain decode accepts.

    An image over ``Image.MAX_IMAGE_PIXELS`` is an error, not Pillow's warning (it would then decode a bomb), and
    any exception of a decoder is an error: Pillow's decoders raise many kinds on corrupt bytes (``OSError``,
    ``SyntaxError``, ``struct.error``, ``IndexError``, ...), all meaning "this file is bad".
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "file not found")
    try:
        with strict_pillow(), warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as probe:
                if probe.format == "PNG":
                    probe.verify()
            image = Image.open(path)
            try:
                image.load()
            except BaseException:
                image.close()
                raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(str(path), f"image over the {Image.MAX_IMAGE_PIXELS} pixels Pillow decodes safely "
                                   f"(PIL.Image.MAX_IMAGE_PIXELS; raise it for such images): {err}") from err
    except MemoryError:
        raise
    except Exception as err:
        raise DataError(str(path), f"cannot decode image ({type(err).__name__}: {err})") from err
    with image:
        yield image


def _converted(image: Image.Image, mode: str, path: str | Path) -> np.ndarray:
    """``image`` in ``mode`` as an array; a mode Pillow cannot convert from is an error naming the file."""
    try:
        return np.asarray(image.convert(mode)).copy()
    except ValueError as err:
        raise DataError(str(path), f"cannot convert image mode {image.mode} to {mode}: {err}") from err


def read_image(path: str | Path) -> np.ndarray:
    """H×W×3 uint8 RGB. Grey and palette images are expanded, alpha is dropped, 16-bit values are scaled by 1/257.

    Pixels are returned as stored (EXIF orientation is not applied), so masks drawn on the stored pixels line up.
    """
    with _decoded(path) as image:
        return rgb_array(image, path)


def rgb_array(image: Image.Image, source: str | Path) -> np.ndarray:
    """A decoded Pillow image as ``read_image`` returns it (``segfit serve`` decodes uploads the same way);
    ``source`` names it in the error of a mode that has no RGB conversion."""
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = np.clip(np.rint(np.asarray(image) / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return _converted(image, "RGB", source)


def read_index_map(path: str | Path, channels: list[str] | None) -> np.ndarray:
    """H×W int32 instance ids (0 = background).

    ``channels is None``: a one-channel map (grey, 16-bit, or palette: the palette *indices* are the ids); a 3-channel
    map is accepted only when its planes are equal. ``channels`` names colour planes (``red``/``green``/``blue``,
    in the file's RGB sense whatever library wrote it) that are merged into one map: the first plane's values are
    taken as they are; where the map is still 0, the k-th listed plane (k = 1, 2) fills in its nonzero values plus
    k·256, so ids of different planes never collide. ``[blue, red]`` is the LabPics recipe (materials = blue =
    OpenCV channel 0, vessels = red = OpenCV channel 2, vessels fill where there is no material).
    """
    if channels is not None and (not channels or any(c not in PLANES for c in channels)):
        raise DataError(str(path), f"map_channels {channels}: name one or more of {sorted(PLANES)}")
    with _decoded(path) as image:
        if channels is None:
            return _one_channel_ids(image, str(path))
        if image.mode not in ("RGB", "RGBA", "P"):
            raise DataError(str(path), f"map_channels {channels} needs a colour map, but this map is one-channel "
                                       f"(mode {image.mode}); set map_channels to null")
        rgb = _converted(image, "RGB", path)
    ids = rgb[:, :, PLANES[channels[0]]].astype(np.int32)
    for k, name in enumerate(channels[1:], start=1):
        plane = rgb[:, :, PLANES[name]].astype(np.int32)
        fill = (ids == 0) & (plane != 0)
        ids[fill] = plane[fill] + k * 256
    return ids


def _one_channel_ids(image: Image.Image, path: str) -> np.ndarray:
    if image.mode in ("RGB", "RGBA"):
        rgb = np.asarray(image)[:, :, :3]
        if not ((rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all()):
            raise DataError(path, "map has differing colour planes; save a one-channel or palette PNG, or set "
                                  "map_channels (e.g. [blue, red] for LabPics)")
        return rgb[:, :, 0].astype(np.int32)
    if image.mode in ("LA", "PA"):
        return np.asarray(image)[:, :, 0].astype(np.int32)
    if image.mode in ("1", "L", "P") or image.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image).astype(np.int32)
    raise DataError(path, f"unsupported map mode {image.mode}; save a one-channel (8/16-bit) or palette PNG")


def list_images(folder: str | Path, root: str | Path | None = None) -> dict[str, Path]:
    """Images of a folder by stem, in natural order (``sa_2`` before ``sa_10``); two images with one stem are an
    error, since annotations are matched by stem, and so is a symlink out of ``root`` (default: ``folder``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(str(folder), "images folder not found")
    images: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        listed = sorted((entry for entry in entries if Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS),
                        key=lambda entry: entry.name)
    for entry in listed:
        if not entry.is_file():
            continue
        path = Path(entry.path)
        if entry.is_symlink():
            contained(path, root or folder)
        if path.stem in images:
            raise DataError(str(path), f"same stem as {images[path.stem].name}; annotations are matched by stem")
        images[path.stem] = path
    if not images:
        raise DataError(str(folder), f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder")
    return dict(sorted(images.items(), key=lambda item: natural_key(item[0])))


def orphans(folder: str | Path, suffix: str, images: str | Path) -> list[Path]:
    """Files of ``folder`` ending in ``suffix`` (any case) whose stem names no image of ``images``: annotations of
    images that are gone or misnamed, which a reader matching by stem never sees."""
    return unused_files(folder, suffix, list_images(images).keys())


def unused_files(folder: str | Path, suffix: str, used_stems: Collection[str]) -> list[Path]:
    """Files of ``folder`` ending in ``suffix`` (any case) whose stem is not in ``used_stems``, in natural order."""
    return sorted((path for path in Path(folder).iterdir()
                   if path.suffix.lower() == suffix and path.is_file() and path.stem not in used_stems),
                  key=lambda path: natural_key(path.name))


def natural_key(name: str) -> list[tuple[int, int | str]]:
    """Sort key that orders digit runs by value: ``sa_2`` before ``sa_10``, ``frame9`` before ``frame10``."""
    return [(0, int(part)) if part[0] in "0123456789" else (1, part) for part in re.split("([0-9]+)", name) if part]


def davis_palette() -> list[int]:
    """The DAVIS (PASCAL VOC) palette, flat RGB: index 1 dark red, 2 green, 3 olive, ..., bits of the index spread
    over the high bits of the three channels."""
    palette = []
    for index in range(256):
        rgb = [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
        palette += rgb
    return palette


def save_index_png(path: str | Path, index_map: np.ndarray) -> Path:
    """An H×W index map (0 background, k object k) as a DAVIS-style palette PNG: readers take the pixel values as
    the indices, viewers show the DAVIS colours."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    palette_image(index_map).save(path)
    return path


def palette_image(index_map: np.ndarray) -> Image.Image:
    """The palette image ``save_index_png`` writes, for writers that save it elsewhere (a zip entry)."""
    image = Image.fromarray(index_map.astype(np.uint8))
    image.putpalette(davis_palette())  # makes it a palette ("P") image
    return image
