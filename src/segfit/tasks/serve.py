"""``segfit serve``: the click-to-segment page (docs/serve.md) for the spec's base model and its fine-tuned one."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any

from transformers import Sam2Model, Sam2VideoModel

from segfit.engine.checkpoint import find_checkpoint
from segfit.engine.distributed import resolve_device
from segfit.models.sam2.export import image_model
from segfit.models.sam2.predict import Sam2Predictor
from segfit.registry import recipe_for
from segfit.serve.app import create_app
from segfit.serve.images import ImageCatalog
from segfit.serve.session import Segmenter, ServedModel
from segfit.serve.videos import VideoCatalog
from segfit.tasks.common import recipe_with_model


def served_models(spec: Any) -> list[ServedModel]:
    """``base``: the spec's own weights (``model.checkpoint``, random when unset); ``fine-tuned``: the weights of
    ``inference.checkpoint``, else the run's ``best`` (or ``last``) checkpoint, when there is one."""
    if spec.model.name != "sam2":
        raise ValueError(f"model.name: the page prompts SAM 2 models; {spec.model.name!r} is not one")
    base = recipe_for(spec).build_model().to(resolve_device(spec.train.device)).eval()
    models = [_served("base", spec.model.checkpoint or "random initialisation", base, spec.model.image_size)]
    found = find_checkpoint(Path(spec.results_dir), "best")
    tuned_weights = spec.inference.checkpoint or (str(found) if found else None)
    if tuned_weights:
        models.append(_served("fine-tuned", tuned_weights, recipe_with_model(spec, tuned_weights)[1], spec.model.image_size))
    return models


def _served(name: str, weights: str, model: Sam2Model | Sam2VideoModel, image_size: int) -> ServedModel:
    """A video model (the recipe of a spec with video data builds one) clicks through its image path."""
    device = next(model.parameters()).device
    video = model if isinstance(model, Sam2VideoModel) else None
    return ServedModel(name, weights, Sam2Predictor(image_model(model), image_size, device), video)


def run(spec: Any, host: str = "127.0.0.1", port: int = 8765) -> None:
    import uvicorn

    if not _is_loopback(host):
        print(f"segfit serve: warning: listening on {host}: anyone who can reach this machine on port {port} can "
              "use the models and upload images; the page has no authentication", file=sys.stderr)
    catalog = ImageCatalog.from_spec(spec.data, spec.data.min_object_area)
    videos = VideoCatalog.from_spec(spec.data)
    segmenter = Segmenter(served_models(spec), spec.inference.multimask_output)
    app = create_app(segmenter, catalog, videos)
    shown = f"[{host}]" if ":" in host else host
    print(f"segfit serve: http://{shown}:{port}/  ({len(catalog.entries())} images, {len(videos.entries())} videos; "
          "Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
