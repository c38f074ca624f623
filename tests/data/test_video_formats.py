"""Video records and readers on hand-made DAVIS folders: exact masks, both mask layouts, void pixels, sparse
annotations, images as one-frame videos, and a DataError naming the file for each kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segfit.data.formats import ImagesAsVideos, open_split, open_video_split
from segfit.data.records import DataError, VideoRecord
from segfit.data.image_io import davis_palette
from segfit.spec.schema import SplitSpec

T, H, W = 4, 12, 16


def _ids() -> np.ndarray:
    """T×H×W palette indices: object 2 moves right, object 5 appears in frame 2, void (255) border in frame 0."""
    ids = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        ids[t, 2:6, 1 + 2 * t:5 + 2 * t] = 2
    ids[2:, 8:11, 10:14] = 5
    ids[0, 6, 1:9] = 255
    return ids


def _frames(folder: Path, count: int = T, size: tuple[int, int] = (H, W), ext: str = ".jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(count):
        pixels = np.full((*size, 3), 40 * t, np.uint8)
        Image.fromarray(pixels).save(folder / f"{t:05d}{ext}")


def _palette_png(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    png = Image.fromarray(ids.astype(np.uint8))
    png.putpalette(davis_palette())
    png.save(path)


def _split(root: Path, **kwargs) -> SplitSpec:
    return SplitSpec(format="davis", images=str(root / "JPEGImages"), annotations=str(root / "Annotations"), **kwargs)


@pytest.fixture
def palette_video(tmp_path) -> SplitSpec:
    """One video, PNG frames, palette masks on frames 0 and 2 only."""
    ids = _ids()
    _frames(tmp_path / "JPEGImages/cows", ext=".png")
    for t in (0, 2):
        _palette_png(tmp_path / f"Annotations/cows/{t:05d}.png", ids[t])
    return _split(tmp_path)


def test_palette_masks_void_and_unannotated_frames(palette_video):
    reader = open_video_split(palette_video)
    info = reader.info(0)
    assert len(reader) == 1 and info.name == "cows" and info.annotated == (0, 2)
    assert info.frame_names == tuple(f"{t:05d}.png" for t in range(T)) and info.source.endswith("JPEGImages/cows")
    record = reader.load(0)
    ids = _ids()
    assert record.object_ids == (2, 5)  # palette indices; 255 is void, not an object
    assert record.frames.shape == (T, H, W, 3) and record.frames[3, 0, 0, 0] == 120
    np.testing.assert_array_equal(record.annotated, [True, False, True, False])
    for t in (0, 2):
        np.testing.assert_array_equal(record.masks[t], np.stack([ids[t] == 2, ids[t] == 5]))
    assert not record.masks[[1, 3]].any()  # unannotated frames: empty masks, flagged by `annotated`
    np.testing.assert_array_equal(record.ignore[0], ids[0] == 255)
    assert not record.ignore[1:].any()
    assert reader.objects(0, 0) == [2] and reader.objects(0, 2) == [2, 5] and reader.objects(0, 1) == []


def test_frames_and_objects_are_chosen_in_order(palette_video):
    reader = open_video_split(palette_video)
    clip = reader.load(0, frames=[2, 0], objects=[5, 2, 7])
    ids = _ids()
    assert clip.frame_names == ("00002.png", "00000.png") and clip.object_ids == (5, 2, 7)
    np.testing.assert_array_equal(clip.masks[0], np.stack([ids[2] == 5, ids[2] == 2, np.zeros((H, W), bool)]))
    np.testing.assert_array_equal(clip.masks[1, 1], ids[0] == 2)
    assert clip.ignore is not None and clip.ignore[1].any() and not clip.ignore[0].any()
    again = reader.load(0).subset(frames=[2, 0], objects=[5, 2])
    np.testing.assert_array_equal(again.masks, clip.masks[:, :2])
    assert clip.frame(1).source.endswith("cows/00000.png") and clip.frame(1).masks.shape == (3, H, W)
    assert reader.load(0, frames=[1]).object_ids == ()  # an unannotated frame shows no object
    with pytest.raises(IndexError, match="outside the 4 frames"):
        reader.load(0, frames=[4])


def test_per_object_folders(tmp_path):
    ids = _ids()
    _frames(tmp_path / "JPEGImages/v")
    for object_id, value in ((0, 2), (3, 5)):
        for t in range(T):
            if value == 5 and t == 3:
                continue  # a missing PNG: object absent from this frame
            path = tmp_path / f"Annotations/v/{object_id}/{t:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((ids[t] == value).astype(np.uint8) * 255).save(path)
    reader = open_video_split(_split(tmp_path))
    record = reader.load(0)
    assert record.object_ids == (0, 3) and record.ignore is None and record.annotated.all()
    np.testing.assert_array_equal(record.masks[:, 0], ids == 2)
    np.testing.assert_array_equal(record.masks[:3, 1], ids[:3] == 5)
    assert not record.masks[3, 1].any()
    assert reader.objects(0, 0) == [0] and reader.objects(0, 2) == [0, 3]


def _broken(tmp_path: Path, case: str) -> Path:
    """A two-video split whose video ``bad`` has one problem; returns the file the error must name."""
    ids = _ids()
    root = tmp_path / case
    for name in ("good", "bad"):
        _frames(root / "JPEGImages" / name)
        for t in range(T):
            _palette_png(root / f"Annotations/{name}/{t:05d}.png", ids[t])
    bad_frames, bad_masks = root / "JPEGImages/bad", root / "Annotations/bad"
    if case == "missing frame folder":
        for path in bad_frames.iterdir():
            path.unlink()
        bad_frames.rmdir()
        return bad_frames
    if case == "missing mask folder":
        for path in bad_masks.iterdir():
            path.unlink()
        bad_masks.rmdir()
        return bad_masks
    if case == "mask of the wrong size":
        _palette_png(bad_masks / "00002.png", ids[2][:, :-1])
        return bad_masks / "00002.png"
    if case == "truncated mask":
        data = (bad_masks / "00001.png").read_bytes()
        (bad_masks / "00001.png").write_bytes(data[: len(data) // 2])
        return bad_masks / "00001.png"
    if case == "frame of another size":
        Image.fromarray(np.zeros((H + 2, W, 3), np.uint8)).save(bad_frames / "00003.jpg")
        return bad_frames / "00003.jpg"
    if case == "mask without a frame":
        _palette_png(bad_masks / "00009.png", ids[0])
        return bad_masks / "00009.png"
    if case == "no masks":
        for path in bad_masks.iterdir():
            path.unlink()
        return bad_masks
    if case == "both layouts":
        (bad_masks / "1").mkdir()
        return bad_masks
    if case == "object never appears":
        for path in bad_masks.iterdir():
            path.unlink()
        for object_id, value in ((1, 2), (2, 7)):
            for t in range(T):
                path = bad_masks / str(object_id) / f"{t:05d}.png"
                path.parent.mkdir(exist_ok=True)
                Image.fromarray((ids[t] == value).astype(np.uint8)).save(path)
        return bad_masks / "2"
    raise AssertionError(case)


@pytest.mark.parametrize("case, problem", [
    ("missing frame folder", "frame folder of video bad not found"),
    ("missing mask folder", "mask folder of video bad not found"),
    ("mask of the wrong size", f"mask is {H}×{W - 1} but frame"),
    ("truncated mask", "cannot decode image"),
    ("frame of another size", f"frame is {H + 2}×{W}, the video's first frame {H}×{W}"),
    ("mask without a frame", "has no frame 00009"),
    ("no masks", "no PNG masks"),
    ("both layouts", "both PNG masks and object folders"),
    ("object never appears", f"object 2 never appears: its mask is empty in all {T} annotated frames"),
])
def test_bad_video_is_a_data_error_naming_the_file(tmp_path, case, problem):
    bad_file = _broken(tmp_path, case)
    reader = open_video_split(_split(tmp_path / case))
    assert [video.name for video in reader.videos] == ["bad", "good"]
    with pytest.raises(DataError) as caught:
        reader.load(0)
    assert caught.value.path == str(bad_file) and problem in caught.value.problem
    assert reader.load(1).object_ids == (2, 5)  # one bad video costs that video only


def test_split_level_errors_and_file_list(tmp_path, palette_video):
    root = Path(palette_video.images).parent
    with pytest.raises(DataError, match="folder of mask folders"):
        open_video_split(SplitSpec(format="davis", images=palette_video.images))
    with pytest.raises(DataError, match="folder of frame folders .* not found"):
        open_video_split(SplitSpec(format="davis", images=str(tmp_path / "nowhere"), annotations=palette_video.annotations))
    (root / "JPEGImages/extra").mkdir()
    (root / "list.txt").write_text("# one video\ncows\n")
    assert len(open_video_split(palette_video)) == 2
    assert len(open_video_split(_split(root, file_list_txt=str(root / "list.txt")))) == 1
    (root / "list.txt").write_text("horses\n")
    with pytest.raises(DataError, match="'horses' names no video of the split"):
        open_video_split(_split(root, file_list_txt=str(root / "list.txt")))
    with pytest.raises(ValueError, match="holds videos"):
        open_split(palette_video)


def test_images_as_one_frame_videos(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((H, W, 3), 9, np.uint8)).save(tmp_path / "images/a.png")
    ids = np.zeros((H, W), np.uint8)
    ids[1:4, 1:4], ids[6:9, 6:9], ids[11, 15] = 3, 8, 9
    (tmp_path / "maps").mkdir()
    Image.fromarray(ids).save(tmp_path / "maps/a.png")
    split = SplitSpec(format="labpics", images=str(tmp_path / "images"), annotations=str(tmp_path / "maps"))
    reader = open_video_split(split, min_object_area=2)
    assert isinstance(reader, ImagesAsVideos) and len(reader) == 1
    info = reader.info(0)
    assert (info.name, info.frame_names, info.annotated) == ("a", ("a.png",), (0,))
    assert reader.objects(0, 0) == [1, 2]  # the 1-pixel object fell below min_object_area
    video = reader.load(0)
    assert video.frames.shape == (1, H, W, 3) and video.object_ids == (1, 2)
    np.testing.assert_array_equal(video.masks[0], np.stack([ids == 3, ids == 8]))
    assert video.frame(0).source == str(tmp_path / "images/a.png")
    clip = reader.load(0, frames=[0], objects=[2, 5])
    np.testing.assert_array_equal(clip.masks[0, 0], ids == 8)
    assert clip.object_ids == (2, 5) and not clip.masks[0, 1].any()
    with pytest.raises(IndexError, match="one-frame video"):
        reader.load(0, frames=[1])


def test_video_record_checks_its_shapes():
    frames = [np.zeros((H, W, 3), np.uint8)] * 2
    record = VideoRecord(frames=frames, masks=np.zeros((2, 1, H, W), bool), object_ids=[4], frame_names=["a", "b"],
                         source="v")
    assert record.frames.shape == (2, H, W, 3) and record.object_ids == (4,) and record.annotated.tolist() == [1, 1]
    assert record.size == (H, W)
    with pytest.raises(DataError, match="do not match 2 frames"):
        VideoRecord(frames=frames, masks=np.zeros((2, 1, H, W + 1), bool), object_ids=[4], frame_names=["a", "b"],
                    source="v")
    with pytest.raises(DataError, match="2 distinct ids"):
        VideoRecord(frames=frames, masks=np.zeros((2, 2, H, W), bool), object_ids=[4, 4], frame_names=["a", "b"],
                    source="v")
    with pytest.raises(DataError, match="2 frames but 1 frame names"):
        VideoRecord(frames=frames, masks=np.zeros((2, 0, H, W), bool), object_ids=[], frame_names=["a"], source="v")
    with pytest.raises(DataError) as caught:
        VideoRecord(frames=[frames[0], np.zeros((H, W + 1, 3), np.uint8)], masks=np.zeros((2, 0, H, W), bool),
                    object_ids=[], frame_names=["a", "b"], source="v")
    assert caught.value.path == "v/b"
