"""A served page on generated data: two tiny random SAM 2 models (``base`` and ``fine-tuned``) behind a real
uvicorn server on a free loopback port, in this process (so tests reach the same predictors)."""

import pytest
import torch

from segfit.data.synthetic import write_synthetic_images, write_synthetic_videos
from segfit.models.sam2.predict import Sam2Predictor
from segfit.serve.app import create_app
from segfit.serve.images import ImageCatalog, Limits
from segfit.serve.server import running
from segfit.serve.session import Segmenter
from segfit.serve.video_upload import VideoLimits
from segfit.serve.videos import VideoCatalog
from segfit.spec import load_spec
from segfit.tasks.serve import served_models

from serve_helpers import FRAMES, SIZE, perturbed_weights


@pytest.fixture(scope="package")
def serve_spec(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    paths = write_synthetic_images(root / "data", num_train=2, num_val=2, size=(120, 160), max_objects=3, seed=2)
    return load_spec(None, [
        "model.name=sam2", "model.size=test", f"model.image_size={SIZE}", f"results_dir={root / 'run'}",
        f"model.checkpoint={perturbed_weights(root / 'base.safetensors', 1)}",
        f"inference.checkpoint={perturbed_weights(root / 'tuned.safetensors', 2)}",
        f"data.train.images={paths['train_images']}", f"data.train.annotations={paths['train_annotations']}",
        f"data.val.images={paths['val_images']}", f"data.val.annotations={paths['val_annotations']}",
    ])


LIMITS = Limits(max_bytes=200_000, max_side=512, max_uploads=2)
"""Small limits, so the tests can pass them with small files."""


@pytest.fixture(scope="package")
def server(serve_spec):
    """``(base_url, app)`` of a running server; stopped after the package's tests."""
    catalog = ImageCatalog.from_spec(serve_spec.data, serve_spec.data.min_object_area, LIMITS)
    app = create_app(Segmenter(served_models(serve_spec), serve_spec.inference.multimask_output), catalog)
    with running(app) as url:
        yield url, app


VIDEO_LIMITS = VideoLimits(max_bytes=300_000, max_frames=6, max_side=200, max_uploads=2)
"""Small limits for video uploads (the generated videos are 160×120)."""


@pytest.fixture(scope="package")
def video_server(tmp_path_factory):
    """``(base_url, app, spec)`` of a server with two tiny video models on generated DAVIS-layout videos."""
    root = tmp_path_factory.mktemp("serve_video")
    paths = write_synthetic_videos(root / "data", num_train=1, num_val=1, num_frames=FRAMES, max_objects=2, seed=3)
    spec = load_spec(None, [
        "model.name=sam2", "model.size=test", f"model.image_size={SIZE}", f"results_dir={root / 'run'}",
        f"model.checkpoint={perturbed_weights(root / 'base.safetensors', 3, video=True)}",
        f"inference.checkpoint={perturbed_weights(root / 'tuned.safetensors', 4, video=True)}",
        "data.train.format=davis", f"data.train.images={paths['train_images']}",
        f"data.train.annotations={paths['train_annotations']}",
        "data.val.format=davis", f"data.val.images={paths['val_images']}", f"data.val.annotations={paths['val_annotations']}",
    ])
    app = create_app(Segmenter(served_models(spec), True), ImageCatalog.from_spec(spec.data, 1),
                     VideoCatalog.from_spec(spec.data, VIDEO_LIMITS))
    with running(app) as url:
        yield url, app, spec


SCORE_GAP = 1e-4
"""The best of 3 masks must lead by this much: a near tie could go either way between two runs of the model."""


@pytest.fixture(scope="package")
def expected_logits():
    """The model's own answer to a prompt, by a fresh ``Sam2Predictor`` on the same model: (H, W) logits of the
    mask ``segfit inference`` would keep, and its score."""

    def expected(model, image, points, labels, box, multimask=True):
        predictor = Sam2Predictor(model, SIZE)
        predictor.set_image(image)
        single_click = len(points) == 1 and box is None
        pred = predictor.predict(torch.tensor([points]) if points else None, torch.tensor([labels]) if points else None,
                                 torch.tensor([box]) if box else None, multimask_output=multimask and single_click)
        scores = pred.scores[0].sort(descending=True).values
        assert len(scores) == 1 or scores[0] - scores[1] > SCORE_GAP, f"near-tied mask scores {scores.tolist()}"
        best = pred.scores[0].argmax()
        return pred.logits[0, best], float(pred.scores[0, best])

    return expected
