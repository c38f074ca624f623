"""``segfit export`` for SAM 2: a Hugging Face directory, a complete official ``.pt`` and ONNX graphs checked in onnxruntime.

The official ``.pt`` holds the complete model, image path and video-memory modules, so Meta's ``build_sam2`` and
``build_sam2_video_predictor`` load it as they load a release checkpoint (strictly). A ``Sam2VideoModel`` writes
its own tensors. A ``Sam2Model`` has no video modules: its image tensors go onto the video tensors of the
checkpoint it started from (``model.starting_checkpoint``, set by ``build_sam2`` from ``model.checkpoint``), so a
fine-tuned image path tracks with the released memory modules. Without such a checkpoint (random initialisation,
or an image-only one) the video modules are freshly initialised, untrained ones, and the export says so.

Example:
    >>> model = build_sam2("tiny", checkpoint="sam2.1_hiera_tiny.pt")  # ... fine-tuned ...
    >>> export_official_pt(model, Path("out/sam2_finetuned.pt"))      # image: fine-tuned; video: sam2.1_hiera_tiny.pt
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Sam2Config, Sam2Model, Sam2VideoModel

from segfit.models.sam2.build import sam2_video_config
from segfit.models.sam2.convert import (
    HF_IMAGE_FOURIER,
    HF_VIDEO_ONLY,
    checkpoint_version,
    hf_to_official,
    infer_size_version,
    is_official_layout,
    video_tensors,
)
from segfit.models.sam2.onnx import export_onnx
from segfit.models.sam2.weights import read_state_dict, save_hf_dir, write_official_pt

RANDOM_VIDEO_MODULES = "freshly initialised (untrained) video modules"


def export_model(model: Sam2Model | Sam2VideoModel, formats: list[str], out_dir: Path) -> list[Path]:
    """``hf``: the model's own class (a video model stays one); ``official``: the complete ``.pt``; ``onnx``: the
    image path's graphs (of a video model too: the graphs are per image)."""
    writers = {
        "hf": lambda: save_hf_dir(model, out_dir / "hf"),
        "official": lambda: export_official_pt(model, out_dir / "sam2_finetuned.pt"),
        "onnx": lambda: export_onnx(image_model(model), model.config.prompt_encoder_config.image_size, out_dir / "onnx"),
    }
    written: list[Path] = []
    for name in formats:
        result = writers[name]()
        written += result if isinstance(result, list) else [result]
    return written


def image_model(model: Sam2Model | Sam2VideoModel) -> Sam2Model:
    """``model`` itself, or the image path of a video model as a ``Sam2Model`` (same config parts, tensors shared)."""
    if not isinstance(model, Sam2VideoModel):
        return model
    config = model.config
    image = Sam2Model(
        Sam2Config(
            vision_config=config.vision_config,
            prompt_encoder_config=config.prompt_encoder_config.to_dict(),
            mask_decoder_config=config.mask_decoder_config.to_dict(),
            sam2_size=getattr(config, "sam2_size", None),
            sam2_version=getattr(config, "sam2_version", None),
        )
    ).to(next(model.parameters()).device)
    image.load_state_dict({k: v for k, v in model.state_dict().items() if not HF_VIDEO_ONLY.fullmatch(k)}, strict=True, assign=True)
    return image.train(model.training)


def export_official_pt(
    model: Sam2Model | Sam2VideoModel, path: Path, video_from: str | Path | None = None
) -> Path:
    """The complete official checkpoint of ``model`` at ``path``; prints where the video modules came from.

    Args:
        model: a video model (written as it is) or an image model (completed with video modules).
        path: the ``.pt`` to write (through a temporary file).
        video_from: for an image model, the checkpoint whose video tensors complete it; by default the one the
            model was built from (``model.starting_checkpoint``). Ignored for a video model.
    """
    if isinstance(model, Sam2VideoModel):
        return write_official_pt(hf_to_official(model.state_dict()), path)
    official, video_source = complete_official_state_dict(model, video_from)
    written = write_official_pt(official, path)
    if video_source is None:
        print(f"{written}: image model only: no SAM 2 video model has this image model's widths")
    else:
        print(f"{written}: image modules from the model, video modules: {video_source}")
    return written


def complete_official_state_dict(
    model: Sam2Model, video_from: str | Path | None = None
) -> tuple[dict[str, torch.Tensor], str | None]:
    """The image model's official tensors plus video tensors, and a phrase naming their source.

    The video tensors come from ``video_from`` (default ``model.starting_checkpoint``) when it holds them, else
    from a freshly initialised ``Sam2VideoModel`` of the model's size and version. The result is checked
    against the official key set and shapes of that video model. The source is None (and the result image-only)
    when no video model has the image model's widths: the ``test`` size, whose video heads are wider.
    """
    image = hf_to_official(model.state_dict())
    size, version, image_size = _architecture(model)
    reference = _official_shapes(size, version, image_size)
    if any(reference.get(k) != v.shape for k, v in image.items()):
        return image, None
    source = video_from if video_from is not None else getattr(model, "starting_checkpoint", None)
    video = _video_tensors_of(source, version) if source is not None else None
    described = str(source)
    if video is None:
        video = hf_to_official(video_tensors(_video_model(size, version, image_size).state_dict()))
        why = f"{source} holds no video tensors" if source is not None else "no starting checkpoint"
        described = f"{RANDOM_VIDEO_MODULES} ({why})"
    complete = {**image, **video}
    missing = sorted(set(reference) - set(complete))
    unexpected = sorted(set(complete) - set(reference))
    wrong = [k for k in reference if k in complete and complete[k].shape != reference[k]]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{described}: its video tensors do not complete a SAM {version} {size} model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]})"
        )
    return complete, described


def _architecture(model: Sam2Model) -> tuple[str, str, int]:
    """(size, version, image_size) of an image model; size and version from the weights when the config lacks them."""
    config = model.config
    size, version = getattr(config, "sam2_size", None), getattr(config, "sam2_version", None)
    if size is None or version is None:
        size, version = infer_size_version(model.state_dict())
    return size, version, config.prompt_encoder_config.image_size


def _video_model(size: str, version: str, image_size: int) -> Sam2VideoModel:
    return Sam2VideoModel(sam2_video_config(size, version, image_size))


def _official_shapes(size: str, version: str, image_size: int) -> dict[str, torch.Size]:
    """Official key → shape of the complete model, from a video model on the meta device (no memory used)."""
    with torch.device("meta"):
        state = _video_model(size, version, image_size).state_dict()
    state.pop(HF_IMAGE_FOURIER)  # its equality check with the prompt copy cannot run on meta tensors
    return {k: v.shape for k, v in hf_to_official(state).items()}


def _video_tensors_of(checkpoint: str | Path, version: str) -> dict[str, torch.Tensor] | None:
    """The official-named video tensors of ``checkpoint``, or None when it has none; its version must be ``version``."""
    stored = read_state_dict(checkpoint)
    video = video_tensors(stored)
    if not video:
        return None
    found = checkpoint_version(stored)
    if found != version:
        raise ValueError(f"{checkpoint}: its video modules are SAM {found} but the model is SAM {version}")
    return video if is_official_layout(stored) else hf_to_official(video)
