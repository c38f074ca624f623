"""The spec loader: precedence, typing, and errors that name the key and suggest the fix."""

from pathlib import Path

import pytest

from segfit.models.sam2.spec import Sam2Spec
from segfit.spec import SpecError, load_spec, save_resolved


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_defaults_file_then_overrides(tmp_path):
    path = write(tmp_path, "model: {name: sam2, size: small}\ntrain: {max_steps: 7, optim: {base_lr: 0.001}}\n")
    spec = load_spec(path, ["train.max_steps=9", "model.trainable=[mask_decoder]", "data.val.images=v"])
    assert isinstance(spec, Sam2Spec)
    assert spec.model.size == "small"  # file
    assert spec.train.max_steps == 9  # command line beats file
    assert spec.train.optim.base_lr == 0.001 and spec.train.optim.vision_lr == 3.0e-6  # file, default
    assert spec.model.trainable == ["mask_decoder"]
    assert spec.data.val.images == "v" and spec.data.val.format == "labpics"  # optional section created with defaults


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.max_step=3", "train.max_step: unknown key (did you mean train.max_steps?)"),
        ("train.optim.vison_lr=1", "train.optim.vison_lr: unknown key (did you mean train.optim.vision_lr?)"),
        ("train.precision=bf18", "train.precision: 'bf18' is not one of fp32, bf16, fp16 (did you mean 'bf16'?)"),
        ("train.max_steps=abc", "train.max_steps: expected an integer, got 'abc'"),
        ("train.resume=maybe", "train.resume: expected true or false"),
        ("data.train.map_channels=[blue,purple]", "data.train.map_channels[1]: 'purple' is not one of blue, green, red"),
        ("model.image_size=500", "model.image_size: 500 must be a multiple of 32"),
        ("inference.points=[[1,2],[3]]", "inference.points: each point is [x, y]"),
        ("model.size=huge", "model.size: 'huge' is not one of"),
    ],
)
def test_errors_name_the_key(override, message):
    with pytest.raises(SpecError) as err:
        load_spec(None, ["model.name=sam2", override])
    assert message in str(err.value)


def test_unknown_family_and_missing_name():
    with pytest.raises(ValueError, match=r"model.name: unknown model family 'sam3' \(did you mean 'sam2'\?\)"):
        load_spec(None, ["model.name=sam3"])
    with pytest.raises(SpecError, match="model.name: missing"):
        load_spec(None, ["train.max_steps=3"])


def test_bad_files(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="spec"):
        load_spec(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(SpecError, match="expected key=value"):
        load_spec(None, ["model.name=sam2", "train.max_steps"])


def test_interpolation_and_resolved_copy(tmp_path):
    path = write(tmp_path, f"results_dir: {tmp_path}/run\nmodel: {{name: sam2}}\ninference: {{output_dir: '${{results_dir}}/out'}}\n")
    spec = load_spec(path)
    assert spec.inference.output_dir == f"{tmp_path}/run/out"
    saved = save_resolved(spec)
    assert saved == tmp_path / "run" / "spec.resolved.yaml"
    assert load_spec(saved) == spec  # the resolved spec reproduces the run


def test_yaml_booleans_map_back_to_choices(tmp_path):
    """``mode: off`` is a YAML boolean; a choice spelled ``off`` must still be accepted, from file and command line."""
    spec = load_spec(write(tmp_path, "model: {name: sam2}\ntrain: {embedding_cache: {mode: off}}\n"))
    assert spec.train.embedding_cache.mode == "off"
    assert load_spec(None, ["model.name=sam2", "train.embedding_cache.mode=off"]).train.embedding_cache.mode == "off"
    with pytest.raises(SpecError, match="train.precision: False is not one of"):
        load_spec(None, ["model.name=sam2", "train.precision=off"])
