"""Hypothesis strategies for malformed dataset files, and the guard every fuzzed read runs under.

A dataset is drawn as a ``Tree`` (relative path → file bytes or a symlink target) that a builder makes valid, then
``mutated`` breaks: corrupt or truncated images, odd modes and palettes, huge declared sizes, edited JSON and text,
deleted files, names and symlinks that point out of the dataset. ``read_guarded`` runs a reader over the written
tree and fails the example on anything but success or a ``DataError`` naming a file: another exception, a read
under the ``outside`` folder (audit hook), or a run past the time limit.

``SEGFIT_FUZZ_EXAMPLES`` sets the examples per reader (tests/README.md).
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import sys
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image

from segfit.data.records import DataError

EXAMPLES = int(os.environ.get("SEGFIT_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=list(HealthCheck))
"""Fixed seed (derandomize) so CI draws the same examples on every run; no deadline (a shared CPU's timings vary:
``TIME_LIMIT_S`` catches hangs instead); no example database written into the repository."""

TIME_LIMIT_S = 20.0
"""A tiny dataset reads in milliseconds; an example still running after this long is a hang."""

OUT = "@OUT@"
"""Stands for the absolute path of the folder next to the dataset, substituted when a tree is written."""


@dataclass(frozen=True)
class Link:
    """A symlink in a drawn tree; ``target`` may hold ``@OUT@``."""

    target: str


Tree = dict[str, "bytes | Link"]


# ---- images --------------------------------------------------------------------------------------------------
SAVES = {"RGB": ("PNG", "JPEG", "BMP", "TIFF", "GIF"), "L": ("PNG", "JPEG", "BMP", "TIFF"), "P": ("PNG", "GIF", "TIFF"),
         "1": ("PNG", "BMP", "TIFF"), "RGBA": ("PNG", "TIFF"), "LA": ("PNG",), "I;16": ("PNG", "TIFF"),
         "I": ("TIFF",), "F": ("TIFF",), "CMYK": ("JPEG", "TIFF")}
"""Modes and the formats Pillow writes them in: the odd ones (16/32-bit, float, CMYK, alpha, palette) included."""


def encode(pixels: np.ndarray, mode: str = "", fmt: str = "PNG", palette: bytes | None = None) -> bytes:
    """Image bytes of an H×W or H×W×C uint8 array, converted to ``mode`` (default: as the array is)."""
    image = Image.fromarray(pixels)
    if mode and mode != image.mode:
        image = image.convert("I" if mode == "I;16" else mode) if mode != "P" else image.convert("L").convert("P")
        if mode == "I;16":
            image = Image.fromarray(np.asarray(image).astype(np.uint16))
    if palette is not None and image.mode in ("P", "PA"):
        image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width``×``height`` RGB pixels but carries a few bytes of data (CRCs valid)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


sizes = st.tuples(st.integers(1, 5), st.integers(1, 5))


@st.composite
def image_bytes(draw: st.DrawFn, size: tuple[int, int]) -> bytes:
    """A valid image of ``size`` (H, W) in any mode and format Pillow writes."""
    mode = draw(st.sampled_from(sorted(SAVES)))
    fmt = draw(st.sampled_from(SAVES[mode]))
    pixels = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 256, (*size, 3), dtype=np.uint8)
    palette = draw(st.none() | st.binary(max_size=12)) if mode == "P" else None
    return encode(pixels, mode, fmt, palette)


@st.composite
def map_bytes(draw: st.DrawFn, ids: np.ndarray) -> bytes:
    """An id map as a one-channel, palette, 16-bit or equal-plane RGB PNG (the layouts the readers accept)."""
    kind = draw(st.sampled_from(["L", "P", "I;16", "RGB"]))
    if kind == "RGB":
        return encode(np.repeat(ids.astype(np.uint8)[:, :, None], 3, axis=2))
    if kind == "P":
        image = Image.fromarray(ids.astype(np.uint8), "L").convert("P")
        image.putpalette(draw(st.binary(min_size=0, max_size=30)) or b"\0\0\0")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    return encode(ids.astype(np.uint16 if kind == "I;16" else np.uint8))


def ids_map(draw: st.DrawFn, size: tuple[int, int], values: int = 3) -> np.ndarray:
    return np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, values + 1, size).astype(np.int64)


@st.composite
def corrupt_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` truncated, with bytes overwritten, prefixed, emptied, or replaced by a bomb or by garbage."""
    kind = draw(st.sampled_from(["truncate", "overwrite", "prefix", "empty", "garbage", "huge", "other_size"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "overwrite":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            if out:
                out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    if kind == "prefix":
        return draw(st.binary(max_size=8)) + data
    if kind == "empty":
        return b""
    if kind == "garbage":
        return draw(st.binary(max_size=64))
    if kind == "huge":
        return png_header_only(*draw(st.sampled_from([(100_000, 100_000), (10_000, 10_000), (2**31 - 1, 1),
                                                     (1, 2**31 - 1), (0, 5), (70_000, 70_000)])))
    return draw(image_bytes(draw(sizes)))


# ---- JSON and text --------------------------------------------------------------------------------------------
TRAVERSAL = ["../outside/secret.png", "../../outside/secret.png", f"{OUT}/secret.png", f"{OUT}/secret.jpg",
             "sub/../../outside/secret.json", "..", ".", "", "/", "a\x00b.png", "../outside", f"{OUT}",
             "../outside/00000.jpg", "..\\outside\\secret.png"]
"""Names that leave the dataset (or are not names at all); ``secret.*`` files outside are valid, so a reader that
follows them succeeds silently and only the audit hook sees it."""

KEYS = ["id", "image_id", "file_name", "height", "width", "segmentation", "counts", "size", "category_id", "iscrowd",
        "segments_info", "images", "annotations", "masklet", "masklet_id", "img", "segm"]

scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**70), 10**400 // 10**390]),
    st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(TRAVERSAL),
    st.sampled_from(["1e400", "nan", "-1", "١٢", "²", "x" * 300, "OOOO", "\udcff"]), st.text(max_size=6))
nasty = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=3), inner, max_size=3), max_leaves=6)
"""Any JSON value, biased to what breaks parsers: NaN, ±inf, huge and negative numbers, traversal names."""


def _nodes(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value inside ``value``, depth first."""
    found: list[tuple[Any, Any]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found.append((value, key))
        found.extend(_nodes(child))
    return found


@st.composite
def mutated_json(draw: st.DrawFn, value: Any) -> bytes:
    """``value`` with 1–3 values replaced or deleted, or its text cut or made invalid UTF-8."""
    value = json.loads(json.dumps(value))
    for _ in range(draw(st.integers(1, 3))):
        nodes = _nodes(value)
        if not nodes or draw(st.integers(0, 9)) == 0:
            value = draw(nasty)
            continue
        container, key = nodes[draw(st.integers(0, len(nodes) - 1))]
        if draw(st.booleans()):
            container[key] = draw(nasty)
        elif isinstance(container, dict):
            del container[key]
        else:
            container.pop(key)
    text = json.dumps(value).encode("utf-8", "surrogatepass")
    return draw(corrupt_bytes(text)) if draw(st.integers(0, 5)) == 0 else text


@st.composite
def mutated_text(draw: st.DrawFn, text: str) -> bytes:
    """Line-based text with lines or tokens replaced by numbers that are not numbers, names that leave, or junk."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        junk = draw(st.sampled_from(["nan", "inf", "-inf", "1e400", "-1", "0", "1,2,3", "a,b,c,d", "1 2 3 4 5",
                                     "nan,nan,nan,nan", "1e309,0,-5,2", "١,٢,٣,٤"] + TRAVERSAL) | st.text(max_size=8))
        position = draw(st.integers(0, len(lines)))
        if lines and position < len(lines) and draw(st.booleans()):
            tokens = lines[position].replace(",", " ").split() or [""]
            tokens[draw(st.integers(0, len(tokens) - 1))] = junk
            lines[position] = ",".join(tokens)
        else:
            lines.insert(position, junk)
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    return draw(corrupt_bytes(data)) if draw(st.integers(0, 5)) == 0 else data


odd_names = st.sampled_from(["00000.PNG", "١.png", "a b.jpg", ".png", "x", "0.jpg.png", "..png", "1", "7/00000.png",
                             "00002.JPEG", "a.tif", "secret.json", "GOT-9/groundtruth.txt", "٣"]) | st.text(
    st.characters(exclude_characters="/\0", exclude_categories=["Cs"]), min_size=1, max_size=6).filter(
    lambda name: name not in (".", ".."))
"""File names a dataset's maker may also use: odd suffixes and digits, hidden files, new subfolders."""


# ---- trees ----------------------------------------------------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[Tree], spec: tuple[str, ...] = ()) -> tuple[Tree, bool]:
    """(A valid tree with 0–3 files broken, deleted, renamed, made folders or symlinks out of the dataset, or folders
    made such links; whether it is still the valid tree, which must then read without error).

    ``spec``: the files and folders the split's spec names. The user chose those, so they may be links anywhere
    (``images -> /mnt/big/images``); they are edited or deleted, never made links.
    """
    tree = dict(draw(valid))
    edits = draw(st.integers(0, 3))
    for _ in range(edits):
        name = draw(st.sampled_from(sorted(tree)))
        data, suffix = tree[name], Path(name).suffix.lower()
        folder = name.rsplit("/", 1)[0] if "/" in name else ""
        kind = draw(st.sampled_from(["edit", "edit", "edit", "delete", "rename", "folder", "link_file", "link_folder"]))
        if (kind == "link_file" and name in spec) or (kind == "link_folder" and folder in spec):
            kind = "edit"
        if kind == "delete":
            del tree[name]
        elif kind == "rename" and name not in spec:
            tree[f"{folder}/{draw(odd_names)}".lstrip("/")] = tree.pop(name)
        elif kind == "folder" and name not in spec:
            tree[f"{name}/{Path(name).name}"] = tree.pop(name)
        elif kind == "link_file":
            tree[name] = Link(draw(st.sampled_from([f"{OUT}/secret{suffix}", f"../../outside/secret{suffix}",
                                                    "/dev/zero", "missing_target"])))
        elif kind == "link_folder" and folder:
            tree = {k: v for k, v in tree.items() if not k.startswith(folder + "/")}
            tree[folder] = Link(draw(st.sampled_from([OUT, f"{OUT}/video", "../" * (folder.count("/") + 1)])))
        elif isinstance(data, bytes):
            tree[name] = draw(_edited(data, suffix))
        if not tree:
            break
    return tree, edits == 0


def _edited(data: bytes, suffix: str) -> st.SearchStrategy[bytes]:
    """Edits that fit the file: JSON values, text lines, or (for images, and files an edit already broke) bytes."""
    try:
        if suffix == ".json":
            return mutated_json(json.loads(data))
        if suffix not in IMAGE_SUFFIXES:
            return mutated_text(data.decode("utf-8"))
    except ValueError:  # not JSON, not UTF-8 any more
        pass
    return corrupt_bytes(data)


def outside_files(folder: Path) -> None:
    """Valid files outside the dataset, named as the traversal names and links expect, so following one works."""
    pixels = np.full((3, 4, 3), 7, np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for sub in (folder, folder / "video", folder / "img"):
        sub.mkdir(exist_ok=True)
        for name in ("secret.png", "00000.png", "00000000.png"):
            (sub / name).write_bytes(encode(pixels))
        for name in ("secret.jpg", "00000.jpg", "00000001.jpg"):
            (sub / name).write_bytes(encode(pixels, fmt="JPEG"))
        (sub / "secret.json").write_text('{"images": [], "annotations": [], "masklet": []}')
        (sub / "groundtruth.txt").write_text("0,0,2,2\n")
        (sub / "secret.txt").write_text("0,0,2,2\n")
        (sub / "secret.jsonl").write_text('{"img": "secret.png", "segm": "secret.png"}\n')


def write_tree(tree: Tree, root: Path, outside: Path) -> None:
    """The tree under a new folder ``root``, ``@OUT@`` replaced by ``outside``; links last, and an entry that two
    mutations made both a file and a folder is written as the first of them."""
    root.mkdir(parents=True)
    for name, data in sorted(tree.items(), key=lambda item: isinstance(item[1], Link)):
        path = root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Link):
                path.symlink_to(data.target.replace(OUT, str(outside)))
            else:
                path.write_bytes(data.replace(OUT.encode(), str(outside).encode()))
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            continue


# ---- the guard ------------------------------------------------------------------------------------------------
_watched: list[str] = []
_escapes: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _watched or event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    if isinstance(path, (str, bytes, os.PathLike)):
        real = os.path.realpath(os.fsdecode(path))
        if any(real == folder or real.startswith(folder + os.sep) for folder in _watched):
            _escapes.append(f"{event} {os.fsdecode(path)}")


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one does nothing while nothing is watched


class Hang(BaseException):
    """An example ran past ``TIME_LIMIT_S`` (a ``BaseException``, so no reader's ``except Exception`` takes it)."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def stop(signum: int, frame: Any) -> None:
        raise Hang(f"still reading after {seconds} s")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_guarded(read: Callable[[], None], root: Path, outside: Path) -> DataError | None:
    """Run ``read``; the ``DataError`` it raised (None: it read everything). Any other exception, a hang, or a file
    opened or folder listed under ``outside`` (or ``/dev/zero``) fails the example."""
    _escapes.clear()
    _watched[:] = [os.path.realpath(outside), "/dev/zero"]  # both are link targets that ``mutated`` draws
    try:
        with _time_limit(TIME_LIMIT_S):
            read()
    except DataError as err:
        named = isinstance(err.path, str) and err.path.startswith(os.path.commonpath([root, outside])) and err.problem
        assert named, f"DataError naming no file of the dataset: {err!r}"
        return err
    finally:
        _watched.clear()
        assert not _escapes, f"read outside the dataset: {_escapes}"
    return None
