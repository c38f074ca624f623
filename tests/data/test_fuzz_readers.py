"""Every dataset reader, fuzzed: a malformed dataset is read correctly or raises a ``DataError`` naming a file of it;
nothing else is raised, nothing hangs, nothing outside the dataset folder is opened or listed.

Each example writes a tiny dataset (1–3 samples of a few pixels) drawn valid and then broken (``fuzz_files``), and
reads all of it as the datasets do: index, every sample's image and masks, every video frame, every tracking frame.
``SEGFIT_FUZZ_EXAMPLES=10000 pytest tests/data/test_fuzz_readers.py`` runs more examples (default 1000 per reader).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from fuzz_files import FUZZ, Tree, encode, ids_map, image_bytes, map_bytes, mutated, outside_files, read_guarded, \
    sizes, write_tree
from segfit.data.formats import open_split, open_video_split
from segfit.data.formats.segments import SegmentReader, SegmentSplit
from segfit.data.formats.tracking import list_sequences
from segfit.data.image_io import read_image
from segfit.spec.schema import SplitSpec
from segfit.spec.tracking import TrackingSplitSpec

# Pillow warns about corrupt metadata (EXIF, TIFF tags) of images whose pixels still decode: those read correctly
pytestmark = pytest.mark.filterwarnings(r"ignore::UserWarning:PIL\..*")

stems = st.lists(st.sampled_from(["a", "b2", "b10", "d e"]), min_size=1, max_size=3, unique=True)
"""Image stems of folder formats (one folder, no subfolders)."""
names = st.lists(st.sampled_from(["a", "b2", "b10", "sub/c", "d e"]), min_size=1, max_size=3, unique=True)
"""Image names of formats that list them in a file (subfolders allowed)."""
image_ext = st.sampled_from([".png", ".jpg", ".bmp", ".tif"])


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    """(where the examples' datasets go, as ``ds<n>`` beside it; the folder beside them that no read may touch). In
    memory where Linux offers it: on a disk, removing each example's folders costs more than reading them."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm)) if os.access(shm, os.W_OK) else tmp_path_factory.mktemp("fuzz")
    outside_files(base / "outside")
    yield base / "ds", base / "outside"
    shutil.rmtree(base, ignore_errors=True)


_examples = itertools.count()


def _run(place: tuple[Path, Path], case: tuple[Tree, bool], read: Callable[[Path], None]) -> None:
    """Write the drawn tree and read it under the guard; an unbroken tree must read without error. Each example
    has a folder of its own: readers may keep what they parsed of a file by its path (SA-V's JSON cache)."""
    (tree, intact), (root, outside) = case, place
    root = root.with_name(f"ds{next(_examples)}")
    write_tree(tree, root, outside)
    try:
        err = read_guarded(lambda: read(root), root, outside)
    finally:
        shutil.rmtree(root)
    assert not (intact and err), f"a valid dataset did not read: {err}"


def _rle(mask: np.ndarray, compressed: bool) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    if compressed:
        return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}
    flat = np.concatenate([[0], mask.flatten(order="F").astype(np.int8), [2]])  # 2: a change after the last pixel
    return {"size": list(mask.shape), "counts": np.diff(np.flatnonzero(np.diff(flat)), prepend=0).tolist()}


@st.composite
def _segmentation(draw: st.DrawFn, mask: np.ndarray) -> object:
    kind = draw(st.sampled_from(["rle", "counts", "polygon"]))
    if kind == "polygon":
        h, w = mask.shape
        return [[0, 0, w, 0, w, h, 0, h]]
    return _rle(mask, kind == "rle")


# ---- image readers -----------------------------------------------------------------------------------------------
def _read_images(split: SplitSpec) -> None:
    reader = open_split(split, min_object_area=0)
    for i in range(len(reader)):
        reader.load(i)


@st.composite
def labpics_tree(draw: st.DrawFn, colour: bool) -> Tree:
    """Instance maps, one-channel or (for ``map_channels``) with ids in every colour plane."""
    tree: Tree = {}
    listed = draw(stems)
    for stem in listed:
        size = draw(sizes)
        tree[f"images/{stem}{draw(image_ext)}"] = draw(image_bytes(size))
        tree[f"annotations/{stem}.png"] = (encode(np.stack([ids_map(draw, size) for _ in "rgb"], -1).astype(np.uint8))
                                           if colour else draw(map_bytes(ids_map(draw, size))))
    tree["list.txt"] = "\n".join(listed).encode()
    return tree


map_channels = st.shared(st.sampled_from([None, ["blue", "red"], ["green"]]), key="map_channels")
"""One draw per example, shared by the spec and the maps (colour maps for ``map_channels``)."""


@given(channels=map_channels, listed=st.booleans(), case=map_channels.flatmap(
    lambda channels: mutated(labpics_tree(channels is not None), ("images", "annotations", "list.txt"))))
@FUZZ
def test_labpics(place, case, channels, listed):
    _run(place, case, lambda root: _read_images(SplitSpec(format="labpics", images=str(root / "images"),
                                                          annotations=str(root / "annotations"), map_channels=channels,
                                                          file_list_txt=str(root / "list.txt") if listed else None)))


@st.composite
def coco_json(draw: st.DrawFn) -> Tree:
    tree: Tree = {}
    images, annotations = [], []
    for n, stem in enumerate(draw(names)):
        size = draw(sizes)
        name = f"{stem}{draw(image_ext)}"
        tree[f"images/{name}"] = draw(image_bytes(size))
        images.append({"id": n, "file_name": name, "height": size[0], "width": size[1]})
        for k in range(draw(st.integers(0, 2))):
            mask = ids_map(draw, size, 1) > 0
            annotations.append({"id": 10 * n + k, "image_id": n, "category_id": k + 1, "iscrowd": draw(st.booleans()),
                                "segmentation": draw(_segmentation(mask))})
    tree["annotations.json"] = json.dumps({"images": images, "annotations": annotations}).encode()
    return tree


@given(case=mutated(coco_json(), ("images", "annotations.json")))
@FUZZ
def test_coco(place, case):
    _run(place, case, lambda root: _read_images(SplitSpec(format="coco", images=str(root / "images"),
                                                          annotations=str(root / "annotations.json"))))


@st.composite
def sa1b_tree(draw: st.DrawFn) -> Tree:
    tree: Tree = {}
    for stem in draw(stems):
        size = draw(sizes)
        tree[f"images/{stem}.jpg"] = draw(image_bytes(size))
        annotations = [{"id": k, "segmentation": draw(_segmentation(ids_map(draw, size, 1) > 0))}
                       for k in range(draw(st.integers(0, 2)))]
        tree[f"images/{stem}.json"] = json.dumps({"image": {"height": size[0], "width": size[1]},
                                                  "annotations": annotations}).encode()
    return tree


@given(case=mutated(sa1b_tree(), ("images",)))
@FUZZ
def test_sa1b(place, case):
    _run(place, case, lambda root: _read_images(SplitSpec(format="sa1b", images=str(root / "images"))))


# ---- labelled-segment readers ------------------------------------------------------------------------------------
def _read_segments(split: SegmentSplit) -> None:
    reader = SegmentReader(split)
    for i in range(len(reader)):
        reader.ids(i)
        reader.load(i)


@st.composite
def semantic_tree(draw: st.DrawFn) -> Tree:
    tree: Tree = {}
    lines = []
    for stem in draw(stems):
        size = draw(sizes)
        image, mask = f"images/{stem}{draw(image_ext)}", f"masks/{stem}.png"
        tree[image] = draw(image_bytes(size))
        tree[mask] = draw(map_bytes(ids_map(draw, size, 5)))
        lines.append(json.dumps({"img": image, "segm": mask}))
    tree["annotations.jsonl"] = "\n".join(lines).encode()
    return tree


@given(case=mutated(semantic_tree(), ("annotations.jsonl",)))
@FUZZ
def test_ade(place, case):
    _run(place, case, lambda root: _read_segments(SegmentSplit(format="ade", annotations=str(root / "annotations.jsonl"),
                                                               root=str(root))))


@given(case=mutated(semantic_tree(), ("images", "masks")))
@FUZZ
def test_folders(place, case):
    _run(place, case, lambda root: _read_segments(SegmentSplit(format="folders", images=str(root / "images"),
                                                               masks=str(root / "masks"))))


@st.composite
def panoptic_tree(draw: st.DrawFn) -> Tree:
    tree: Tree = {}
    images, annotations = [], []
    for n, stem in enumerate(draw(names)):
        size = draw(sizes)
        name = f"{stem}{draw(image_ext)}"
        tree[f"images/{name}"] = draw(image_bytes(size))
        ids = ids_map(draw, size) * draw(st.sampled_from([1, 300, 70_000]))
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)
        tree[f"panoptic/{stem}.png"] = encode(rgb)
        segments = [{"id": int(v), "category_id": int(v) % 7, "iscrowd": 0} for v in np.unique(ids) if v]
        images.append({"id": n, "file_name": name, "height": size[0], "width": size[1]})
        annotations.append({"image_id": n, "file_name": f"{stem}.png", "segments_info": segments})
    tree["panoptic.json"] = json.dumps({"images": images, "annotations": annotations, "categories": []}).encode()
    return tree


@given(case=mutated(panoptic_tree(), ("images", "panoptic", "panoptic.json")))
@FUZZ
def test_coco_panoptic(place, case):
    _run(place, case, lambda root: _read_segments(SegmentSplit(format="coco_panoptic", images=str(root / "images"),
                                                               annotations=str(root / "panoptic.json"),
                                                               masks=str(root / "panoptic"))))


@given(case=mutated(coco_json(), ("images", "annotations.json")))
@FUZZ
def test_coco_segments(place, case):
    _run(place, case, lambda root: _read_segments(SegmentSplit(format="coco", images=str(root / "images"),
                                                               annotations=str(root / "annotations.json"))))


# ---- video readers -----------------------------------------------------------------------------------------------
def _read_videos(split: SplitSpec) -> None:
    reader = open_video_split(split)
    for i in range(len(reader)):
        info = reader.info(i)
        for t in info.annotated:
            reader.objects(i, t)
        reader.load(i)


videos = st.lists(st.sampled_from(["v1", "v2", "v10"]), min_size=1, max_size=2, unique=True)


@st.composite
def davis_tree(draw: st.DrawFn) -> Tree:
    tree: Tree = {}
    per_object = draw(st.booleans())
    for video in draw(videos):
        size = draw(sizes)
        maps = [ids_map(draw, size, 2) for _ in range(draw(st.integers(1, 3)))]
        maps[0][0, 0] = 1  # a video with no object has no mask folder: an error
        for t, ids in enumerate(maps):
            tree[f"JPEGImages/{video}/{t:05d}.jpg"] = draw(image_bytes(size))
            if per_object:  # a folder per object that shows somewhere: one that never does is an error
                for k in set(np.unique(maps)) - {0}:
                    tree[f"Annotations/{video}/{k}/{t:05d}.png"] = draw(map_bytes((ids == k).astype(np.int64)))
            else:
                ids[ids == 2] = draw(st.sampled_from([2, 255]))  # 255: DAVIS void
                tree[f"Annotations/{video}/{t:05d}.png"] = draw(map_bytes(ids))
    return tree


@given(case=mutated(davis_tree(), ("JPEGImages", "Annotations")))
@FUZZ
def test_davis(place, case):
    _run(place, case, lambda root: _read_videos(SplitSpec(format="davis", images=str(root / "JPEGImages"),
                                                          annotations=str(root / "Annotations"))))


@st.composite
def sav_tree(draw: st.DrawFn) -> Tree:
    tree: Tree = {}
    for video in draw(videos):
        size = draw(sizes)
        masklet = []
        for k in range(draw(st.integers(1, 3))):
            tree[f"JPEGImages/{video}/{4 * k:05d}.jpg"] = draw(image_bytes(size))
            masks = [ids_map(draw, size, 1) > 0 for _ in range(2)]
            for mask in masks:
                mask[0, 0] |= k == 0  # every masklet shows somewhere: one that never does is an error
            masklet.append([_rle(mask, draw(st.booleans())) for mask in masks])
        tree[f"JPEGImages/{video}_manual.json"] = json.dumps({"masklet": masklet, "masklet_id": [3, 5]}).encode()
    return tree


@given(case=mutated(sav_tree(), ("JPEGImages",)))
@FUZZ
def test_sav(place, case):
    _run(place, case, lambda root: _read_videos(SplitSpec(format="sav", images=str(root / "JPEGImages"))))


# ---- tracking readers --------------------------------------------------------------------------------------------
def _read_sequences(split: TrackingSplitSpec) -> None:
    for load in list_sequences(split).values():
        sequence = load()
        sequence.usable
        for frame in sequence.frames:
            read_image(frame)


def _boxes(draw: st.DrawFn, count: int) -> str:
    return "\n".join(",".join(str(draw(st.integers(0, 4))) for _ in range(4)) for _ in range(count))


@st.composite
def got10k_tree(draw: st.DrawFn) -> Tree:
    tree: Tree = {}
    names = draw(st.lists(st.sampled_from(["GOT-1", "GOT-2", "x y"]), min_size=1, max_size=2, unique=True))
    for name in names:
        count, size = draw(st.integers(1, 3)), draw(sizes)
        for t in range(count):
            tree[f"{name}/{t + 1:08d}.jpg"] = draw(image_bytes(size))
        tree[f"{name}/groundtruth.txt"] = _boxes(draw, count).encode()
        for label in ("absence.label", "cover.label"):
            if draw(st.booleans()):
                tree[f"{name}/{label}"] = "\n".join(str(draw(st.integers(0, 8))) for _ in range(count)).encode()
    if draw(st.booleans()):
        tree["list.txt"] = "\n".join(names).encode()
    return tree


@given(case=mutated(got10k_tree()))
@FUZZ
def test_got10k(place, case):
    _run(place, case, lambda root: _read_sequences(TrackingSplitSpec(format="got10k", images=str(root))))


@st.composite
def lasot_tree(draw: st.DrawFn) -> Tree:
    tree: Tree = {}
    for name in draw(st.lists(st.sampled_from(["cat-1", "cat-2", "dog-1"]), min_size=1, max_size=2, unique=True)):
        folder = f"{name.split('-')[0]}/{name}"
        count, size = draw(st.integers(1, 3)), draw(sizes)
        for t in range(count):
            tree[f"{folder}/img/{t + 1:08d}.jpg"] = draw(image_bytes(size))
        tree[f"{folder}/groundtruth.txt"] = _boxes(draw, count).encode()
        for flags in ("full_occlusion.txt", "out_of_view.txt"):
            tree[f"{folder}/{flags}"] = ",".join(str(draw(st.integers(0, 1))) for _ in range(count)).encode()
    return tree


@given(case=mutated(lasot_tree()))
@FUZZ
def test_lasot(place, case):
    _run(place, case, lambda root: _read_sequences(TrackingSplitSpec(format="lasot", images=str(root))))


@st.composite
def pysot_tree(draw: st.DrawFn) -> Tree:
    tree: Tree = {}
    videos_json: dict = {}
    for video in draw(st.lists(st.sampled_from(["a/v1", "v2"]), min_size=1, max_size=2, unique=True)):
        for track in draw(st.lists(st.sampled_from(["00", "01"]), min_size=1, max_size=2, unique=True)):
            frames = {}
            for t in range(draw(st.integers(1, 3))):
                tree[f"crop511/{video}/{t:06d}.{track}.x.jpg"] = draw(image_bytes((3, 3)))
                frames[f"{t:06d}"] = draw(st.sampled_from([[1, 1, 3, 4], [2, 3], [0, 0, 0, 0]])) if t else [1, 1, 3, 4]
            videos_json.setdefault(video, {})[track] = frames
    tree["train.json"] = json.dumps(videos_json).encode()
    return tree


@given(case=mutated(pysot_tree(), ("crop511", "train.json")))
@FUZZ
def test_pysot(place, case):
    _run(place, case, lambda root: _read_sequences(TrackingSplitSpec(format="pysot", images=str(root / "crop511"),
                                                                     annotations=str(root / "train.json"))))
