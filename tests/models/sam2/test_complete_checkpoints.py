"""Complete official checkpoints: the image model reads them, and the official export always writes one.

A complete file holds the image path and the video-memory modules, as Meta's releases do. Tiny at 256² (the
weights do not depend on the resolution): the ``test`` size's video model has wider heads than its image model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segfit.models.sam2.build import build_sam2, build_sam2_video
from segfit.models.sam2.convert import OFFICIAL_VIDEO_ONLY, hf_to_official, official_to_hf
from segfit.models.sam2.export import RANDOM_VIDEO_MODULES, export_model, export_official_pt, image_model
from segfit.models.sam2.weights import read_state_dict, save_hf_dir, save_official_pt

SIZE = 256


def perturbed(model, seed: int = 1):
    """Every tensor moved off its initial value (one Fourier matrix kept), so a wrong merge cannot pass."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
        model.shared_image_embedding.positional_embedding.copy_(model.prompt_encoder.shared_embedding.positional_embedding)
    return model


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """A complete official SAM 2.1 tiny checkpoint, like ``sam2.1_hiera_tiny.pt`` (random weights)."""
    path = tmp_path_factory.mktemp("release") / "sam2.1_hiera_tiny.pt"
    return save_official_pt(perturbed(build_sam2_video("tiny", "2.1", SIZE)), path)


def video_part(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if OFFICIAL_VIDEO_ONLY.fullmatch(k)}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    assert not [k for k in a if not torch.equal(a[k], b[k])]


def fine_tuned(checkpoint) -> torch.nn.Module:
    model = build_sam2("tiny", "2.1", SIZE, checkpoint=checkpoint)
    with torch.no_grad():
        model.mask_decoder.iou_token.weight.add_(1.0)
    return model


def test_image_model_loads_a_complete_checkpoint(release):
    model = build_sam2("tiny", "2.1", SIZE, checkpoint=release)
    assert_same(model.state_dict(), official_to_hf(read_state_dict(release)))
    assert model.starting_checkpoint == release


def test_export_completes_a_fine_tuned_image_model(release, tmp_path, capsys):
    """Image tensors from the model, video tensors from the checkpoint it started from: a release-shaped file."""
    model = fine_tuned(release)
    written = read_state_dict(export_official_pt(model, tmp_path / "sam2_finetuned.pt"))
    start = read_state_dict(release)
    assert sorted(written) == sorted(start)
    assert_same(video_part(written), video_part(start))
    assert_same({k: v for k, v in written.items() if k not in video_part(written)}, hf_to_official(model.state_dict()))
    assert f"video modules: {release}" in capsys.readouterr().out
    assert_same(build_sam2_video("tiny", "2.1", SIZE, checkpoint=tmp_path / "sam2_finetuned.pt").state_dict(), official_to_hf(written, video=True))


def test_export_takes_video_modules_from_a_hugging_face_start(release, tmp_path):
    hf_dir = save_hf_dir(build_sam2_video("tiny", "2.1", SIZE, checkpoint=release), tmp_path / "hf")
    written = read_state_dict(export_official_pt(fine_tuned(hf_dir), tmp_path / "out.pt"))
    assert_same(video_part(written), video_part(read_state_dict(release)))


def test_export_without_video_tensors_initialises_them(release, tmp_path, capsys):
    """From random weights, or from an image-only start: complete, with fresh video modules, and it says so."""
    image_only = save_official_pt(build_sam2("tiny", "2.1", SIZE, checkpoint=release), tmp_path / "image_only.pt")
    for model, reason in ((build_sam2("tiny", "2.1", SIZE), "no starting checkpoint"),
                          (fine_tuned(image_only), f"{image_only} holds no video tensors")):
        written = read_state_dict(export_official_pt(model, tmp_path / "out.pt"))
        assert sorted(written) == sorted(read_state_dict(release))
        assert not any(torch.equal(written[k], v) for k, v in video_part(read_state_dict(release)).items() if v.numel() > 1)
        assert f"{RANDOM_VIDEO_MODULES} ({reason})" in capsys.readouterr().out


def test_export_video_from_overrides_the_start(release, tmp_path):
    other = save_official_pt(perturbed(build_sam2_video("tiny", "2.1", SIZE), seed=2), tmp_path / "other.pt")
    written = read_state_dict(export_official_pt(fine_tuned(release), tmp_path / "out.pt", video_from=other))
    assert_same(video_part(written), video_part(read_state_dict(other)))


def test_export_refuses_video_modules_of_the_other_version(release, tmp_path):
    model = build_sam2("tiny", "2.0", SIZE)
    with pytest.raises(ValueError, match=r"sam2\.1_hiera_tiny\.pt: its video modules are SAM 2\.1 but the model is SAM 2\.0"):
        export_official_pt(model, tmp_path / "out.pt", video_from=release)


def test_export_of_a_video_model_is_its_own_state(release, tmp_path, capsys):
    model = build_sam2_video("tiny", "2.1", SIZE, checkpoint=release)
    assert_same(read_state_dict(export_official_pt(model, tmp_path / "out.pt")), read_state_dict(release))
    assert capsys.readouterr().out == ""


def test_test_size_image_model_exports_its_image_path(tmp_path, capsys):
    """No video model has the ``test`` image model's widths: the export holds the image path, and says so."""
    model = build_sam2("test", image_size=SIZE)
    (written,) = export_model(model, ["official"], tmp_path)
    assert written == tmp_path / "sam2_finetuned.pt"
    assert_same(read_state_dict(written), hf_to_official(model.state_dict()))
    assert "image model only" in capsys.readouterr().out


def test_video_model_exports_every_format(tmp_path):
    """``hf`` stays a video model, ``official`` is complete, ``onnx`` holds the image path's graphs."""
    model = perturbed(build_sam2_video("test", image_size=SIZE))
    written = export_model(model, ["hf", "official", "onnx"], tmp_path)
    assert written[:2] == [tmp_path / "hf", tmp_path / "sam2_finetuned.pt"]
    assert {path.suffix for path in written[2:]} >= {".onnx"}
    reloaded = build_sam2_video("test", image_size=SIZE, checkpoint=tmp_path / "hf")
    assert_same(reloaded.state_dict(), model.state_dict())
    assert_same(read_state_dict(written[1]), hf_to_official(model.state_dict()))
    image = image_model(model)
    assert_same(image.state_dict(), {k: v for k, v in model.state_dict().items() if k in image.state_dict()})
