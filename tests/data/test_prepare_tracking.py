"""``segfit data prepare-tracking``: crop511 files that read back as a pysot split, resumable, in parallel."""

from __future__ import annotations

import numpy as np

from segfit.cli import main
from segfit.data.formats.tracking import open_tracking_split
from segfit.data.pairs import PairPool, sample_pair
from segfit.data.prepare_tracking import prepare_tracking
from segfit.data.synthetic_tracking import write_synthetic_tracking
from segfit.spec.tracking import CropAugmentSpec, TrackingSplitSpec, TrackingTrainDataSpec

STILL = CropAugmentSpec(shift=0, scale=0, blur=0, flip=0, color=0)
PLAIN = TrackingTrainDataSpec(datasets=[TrackingSplitSpec(frame_range=0)], neg=0.0, gray=0.0, template_augment=STILL,
                               search_augment=STILL)


def test_crops_read_back_as_pysot_and_match_crops_cut_from_the_frames(tmp_path):
    paths = write_synthetic_tracking(tmp_path / "seq", num_train=2, num_val=0, size=(64, 80), num_frames=4, seed=2)
    raw = TrackingSplitSpec(images=str(paths["train_images"]))
    report = prepare_tracking(raw, tmp_path / "out", workers=2)
    assert report.done == {"seq_000": 4, "seq_001": 4} and not report.failed
    cropped = TrackingSplitSpec(format="pysot", images=str(tmp_path / "out" / "crop511"),
                                annotations=str(tmp_path / "out" / "train.json"))
    from_crops, from_frames = open_tracking_split(cropped), open_tracking_split(raw)
    assert [s.name for s in from_crops] == ["seq_000/00", "seq_001/00"] and all(s.cropped for s in from_crops)
    np.testing.assert_allclose(from_crops[0].boxes[:, 2:], from_frames[0].boxes[:, 2:], atol=0.01)
    a = sample_pair(PairPool([from_crops], PLAIN), 0, 0, PLAIN, 127, 255)
    b = sample_pair(PairPool([from_frames], PLAIN), 0, 0, PLAIN, 127, 255)
    np.testing.assert_allclose(a["box"], b["box"], atol=0.5)  # both put the same target at the centre
    centre = slice(96, 160)  # the target's surroundings: resampled twice (and JPEG) against once
    assert np.abs(a["search"][centre, centre] - b["search"][centre, centre]).mean() < 12


def test_a_second_run_skips_finished_sequences_and_redoes_interrupted_ones(tmp_path):
    paths = write_synthetic_tracking(tmp_path / "seq", num_train=2, num_val=0, size=(48, 64), num_frames=3, seed=2)
    out = tmp_path / "out"
    assert main(["data", "prepare-tracking", str(paths["train_images"]), "--out", str(out)]) == 0
    (out / "crop511" / "seq_001").rename(out / "crop511" / "seq_001.partial")  # as if interrupted
    report = prepare_tracking(TrackingSplitSpec(images=str(paths["train_images"])), out)
    assert report.skipped == ["seq_000"] and list(report.done) == ["seq_001"]
    assert sorted(p.name for p in (out / "crop511").iterdir()) == ["seq_000", "seq_001"]
