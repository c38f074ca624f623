"""``segfit serve`` itself: which models it serves, and where it listens (uvicorn replaced by a recorder)."""

import dataclasses

import pytest
import uvicorn

from segfit.cli import main
from segfit.engine.checkpoint import MODEL_FILE, STATE_FILE
from segfit.spec import load_spec
from segfit.tasks.serve import served_models

from serve_helpers import perturbed_weights


def test_without_a_checkpoint_only_the_base_model_is_served(serve_spec):
    spec = dataclasses.replace(serve_spec, inference=dataclasses.replace(serve_spec.inference, checkpoint=None))
    assert [(m.name, m.weights) for m in served_models(spec)] == [("base", serve_spec.model.checkpoint)]


def test_the_runs_best_checkpoint_is_the_fine_tuned_model(serve_spec, tmp_path):
    best = tmp_path / "checkpoints" / "best"
    best.mkdir(parents=True)
    perturbed_weights(best / MODEL_FILE, 5)
    (best / STATE_FILE).write_bytes(b"")  # find_checkpoint only asks that it exists
    spec = dataclasses.replace(serve_spec, results_dir=str(tmp_path),
                               inference=dataclasses.replace(serve_spec.inference, checkpoint=None))
    assert [(m.name, m.weights) for m in served_models(spec)] == [("base", spec.model.checkpoint),
                                                                    ("fine-tuned", str(best))]


def test_other_families_are_refused_by_name():
    with pytest.raises(ValueError, match="model.name: the page prompts SAM 2 models; 'siamban' is not one"):
        served_models(load_spec(None, ["model.name=siamban"]))


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("::1", False), ("0.0.0.0", True)])
def test_other_addresses_than_loopback_print_a_warning(serve_spec, tmp_path, monkeypatch, capsys, host, warned):
    listened = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: listened.update(kwargs))
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("model: {name: sam2, size: test, image_size: 256}\n")
    data = serve_spec.data
    assert main(["serve", "-e", str(spec_file), "--host", host, "--port", "9123", f"results_dir={tmp_path}",
                 f"model.checkpoint={serve_spec.model.checkpoint}", f"data.val.images={data.val.images}",
                 f"data.val.annotations={data.val.annotations}", f"data.train.images={data.train.images}",
                 f"data.train.annotations={data.train.annotations}"]) == 0
    out, err = capsys.readouterr()
    assert listened == {"host": host, "port": 9123, "log_level": "warning"}
    assert "4 images, 0 videos" in out
    assert ("warning: listening on " + host in err) == warned
