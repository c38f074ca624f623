"""LoRA adapters on SAM 2, adapter-only checkpoints, merging on export, activation checkpointing."""

import json
from pathlib import Path

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file
from transformers import Sam2Model

from segfit.data.synthetic import write_synthetic_images
from segfit.engine.checkpoint import load_checkpoint, save_weights, trainer_weights
from segfit.engine.trainer import train
from segfit.models.sam2.build import build_sam2
from segfit.models.sam2.peft import has_lora, merge_lora
from segfit.models.sam2.recipe import Sam2Recipe, part_of
from segfit.registry import recipe_for
from segfit.spec import load_spec
from segfit.tasks import export as export_task
from segfit.tasks.common import recipe_with_model

NUM_BLOCKS = 5  # the test size's Hiera: [1, 1, 2, 1]
ENCODER_ADAPTED = {f"vision_encoder.backbone.blocks.{i}.attn.{p}" for i in range(NUM_BLOCKS) for p in ("qkv", "proj")}
DECODER_ATTENTIONS = [f"mask_decoder.transformer.layers.{i}.{a}" for i in range(2)
                      for a in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")]
DECODER_ADAPTED = {f"{a}.{p}_proj" for a in [*DECODER_ATTENTIONS, "mask_decoder.transformer.final_attn_token_to_image"]
                   for p in "qkvo"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Synthetic data and a base model file (random test-size weights) to start runs from."""
    root = tmp_path_factory.mktemp("peft")
    write_synthetic_images(root / "data", num_train=2, num_val=1, size=(96, 128), max_objects=2, seed=3)
    base = build_sam2("test", image_size=256)
    with torch.no_grad():  # random init leaves some tensors zero; a wrong load must not pass unnoticed
        for param in base.parameters():
            param.add_(0.02 * torch.randn_like(param))
    base.save_pretrained(root / "base")
    return root


def make_spec(root: Path, run: str, *overrides: str):
    return load_spec(None, [
        "model.name=sam2", "model.size=test", "model.image_size=256", f"results_dir={root / run}",
        f"model.checkpoint={root / 'base'}", f"data.train.images={root}/data/train/images",
        f"data.train.annotations={root}/data/train/masks", "data.batch_size=1", "data.max_num_objects=2",
        "train.prompts.num_correction_clicks=0", "train.optim.base_lr=1e-2", "train.optim.vision_lr=1e-2",
        "train.optim.scheduler=constant", "train.eval_every=0", "train.log_every=1", "export.formats=[hf, official]",
        *overrides,
    ])


def outputs(model: Sam2Model) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks and IoU scores for a fixed image and two single-click objects, in eval mode."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(1, 3, 256, 256, generator=generator)
    points = torch.tensor([[[[60.0, 80.0]], [[180.0, 150.0]]]])
    model.eval()
    with torch.no_grad():
        out = model(pixel_values=pixels, input_points=points, input_labels=torch.ones(1, 2, 1, dtype=torch.long))
    return out.pred_masks, out.iou_scores


def adapted_modules(model: Sam2Model) -> set[str]:
    return {name for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)}


def one_step(recipe: Sam2Recipe, model: Sam2Model, lr: float = 0.05) -> None:
    """A training step with plain SGD (large enough that every adapter moves away from zero)."""
    torch.manual_seed(0)
    batch = recipe.collate([recipe.train_dataset().sources[0].dataset[(0, 0)]])
    recipe.training_step(model, batch)["loss"].backward()
    with torch.no_grad():
        for param in model.parameters():
            if param.grad is not None:
                param.sub_(lr * param.grad.sign())
    model.zero_grad()


def test_adapters_sit_on_the_attention_projections_and_only_they_train(workspace):
    spec = make_spec(workspace, "a", "model.lora.rank=4", "model.lora.targets=[image_encoder, mask_decoder]",
                     "model.trainable=[prompt_encoder]")
    model = recipe_for(spec).build_model()
    assert adapted_modules(model) == ENCODER_ADAPTED | DECODER_ADAPTED
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    adapters = {n for n in trainable if ".lora_" in n}
    assert len(adapters) == 2 * len(ENCODER_ADAPTED | DECODER_ADAPTED)
    assert trainable - adapters == {n for n, _ in model.named_parameters() if n.startswith("prompt_encoder.")}
    assert all(torch.count_nonzero(p) == 0 for n, p in model.named_parameters() if ".lora_B." in n)

    encoder_only = recipe_for(make_spec(workspace, "a", "model.lora.rank=4")).build_model()  # decoder trained fully
    assert adapted_modules(encoder_only) == ENCODER_ADAPTED
    for name, param in encoder_only.named_parameters():
        assert param.requires_grad == (part_of(name) != "image_encoder" or ".lora_" in name), name


def test_a_part_is_trained_fully_or_adapted_not_both(workspace):
    spec = make_spec(workspace, "a", "model.lora.rank=4", "model.lora.targets=[mask_decoder]")
    with pytest.raises(ValueError, match="model.lora.targets: mask_decoder is also in model.trainable"):
        recipe_for(spec).build_model()


def test_adapted_model_equals_base_at_init(workspace):
    base = build_sam2("test", image_size=256, checkpoint=workspace / "base")
    spec = make_spec(workspace, "a", "model.lora.rank=8", "model.lora.targets=[image_encoder, mask_decoder]",
                     "model.trainable=[]")
    adapted = recipe_for(spec).build_model()
    for ours, theirs in zip(outputs(adapted), outputs(base)):  # exact: the same base kernels, adapters add 0 (B = 0)
        assert torch.equal(ours, theirs)


def test_merged_model_computes_what_the_adapted_one_does_after_training(workspace):
    recipe = recipe_for(make_spec(workspace, "a", "model.lora.rank=4", "model.lora.alpha=8",
                                  "model.lora.targets=[image_encoder, mask_decoder]", "model.trainable=[prompt_encoder]"))
    model = recipe.build_model().train()
    one_step(recipe, model)
    assert all(torch.count_nonzero(p) > 0 for n, p in model.named_parameters() if ".lora_B." in n)
    merged = merge_lora(model)
    assert type(merged) is Sam2Model and not has_lora(merged) and has_lora(model)  # the caller's model is untouched
    assert list(merged.state_dict()) == list(build_sam2("test", image_size=256).state_dict())
    (masks, ious), (merged_masks, merged_ious) = outputs(model), outputs(merged)
    assert (masks - outputs(build_sam2("test", image_size=256, checkpoint=workspace / "base"))[0]).abs().max() > 1e-3
    # W + s·BA in one matrix vs Wx + s·B(Ax): other float32 sums (≤ 3e-9 seen on masks up to 3e-3)
    torch.testing.assert_close(merged_masks, masks, rtol=0, atol=1e-5)
    torch.testing.assert_close(merged_ious, ious, rtol=0, atol=1e-5)
    plain = build_sam2("test", image_size=256)
    assert merge_lora(plain) is plain


@pytest.mark.parametrize("setup", [("model.trainable=[image_encoder, mask_decoder]",),
                                   ("model.lora.rank=4", "model.lora.dropout=0.2", "model.trainable=[mask_decoder]")])
def test_activation_checkpointing_recomputes_blocks_with_equal_gradients(workspace, setup):
    """Same gradients (≤1e-6) with and without; Hiera blocks run twice (forward + recompute), decoder blocks once."""
    grads, calls = [], []
    for checkpointing in (False, True):
        recipe = recipe_for(make_spec(workspace, "a", *setup, f"model.activation_checkpointing={checkpointing}"))
        torch.manual_seed(1)  # the same adapter initialisation in both models
        model = recipe.build_model().train()
        count = {"block": 0, "decoder": 0}
        for key, module in (("block", model.vision_encoder.backbone.blocks[2].attn),
                            ("decoder", model.mask_decoder.transformer.layers[0].self_attn)):
            module.register_forward_hook(lambda *_, key=key: count.__setitem__(key, count[key] + 1))
        torch.manual_seed(0)
        batch = recipe.collate([recipe.train_dataset().sources[0].dataset[(0, 0)]])
        recipe.training_step(model, batch)["loss"].backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
        calls.append(count)
    assert calls == [{"block": 1, "decoder": 1}, {"block": 2, "decoder": 1}]
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():  # recomputing runs the same kernels (equal so far; gradients ≤ 4e-3)
        torch.testing.assert_close(grads[1][name], grad, rtol=0, atol=1e-6, msg=name)
    assert any(n.startswith("vision_encoder.") and g.abs().sum() > 0 for n, g in grads[0].items())


def test_whole_weights_of_an_adapted_model_reload_through_the_task_path(workspace, tmp_path):
    """Without a base file the trainer stores everything (adapter keys included); tasks load it into the rebuilt model."""
    spec = make_spec(workspace, "a", "model.lora.rank=2", "model.checkpoint=null")
    model = recipe_for(spec).build_model()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.01 * torch.randn_like(param))
    save_weights(model, tmp_path / "model.safetensors", base=spec.model.checkpoint)
    assert trainer_weights(tmp_path / "model.safetensors") == ("full", None)
    _, reloaded = recipe_with_model(spec, str(tmp_path / "model.safetensors"))
    assert has_lora(reloaded)
    for ours, theirs in zip(outputs(reloaded), outputs(model)):
        assert torch.equal(ours, theirs)


def test_whole_weights_trained_from_a_base_file_name_it(workspace, tmp_path):
    """Nothing frozen: the whole state_dict, still naming the base file, so tasks rebuild the model from it (what an
    export takes beyond the parameters, e.g. a complete checkpoint's video modules, comes from there)."""
    spec = make_spec(workspace, "b", "model.trainable=[image_encoder,prompt_encoder,mask_decoder]")
    model = recipe_for(spec).build_model()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.01 * torch.randn_like(param))
    file = tmp_path / "model.safetensors"
    save_weights(model, file, base=spec.model.checkpoint)
    base = str(Path(spec.model.checkpoint).resolve())
    assert trainer_weights(file) == ("full", base)
    _, reloaded = recipe_with_model(spec, str(file))
    assert str(reloaded.starting_checkpoint.resolve()) == base
    for ours, theirs in zip(outputs(reloaded), outputs(model)):
        assert torch.equal(ours, theirs)  # the same weights through the same code


class KeepModel(Sam2Recipe):
    """The recipe, keeping the model it builds so the test can compare the trained weights."""

    def build_model(self) -> Sam2Model:
        self.model = super().build_model()
        return self.model


@pytest.fixture(scope="module")
def lora_run(workspace):
    """2 steps with LoRA on the image encoder and the decoders trained fully, started from the base file."""
    spec = make_spec(workspace, "lora", "model.lora.rank=4", "train.max_steps=2", "train.checkpoint_every=1")
    recipe = KeepModel(spec)
    train(recipe, spec)
    return spec, recipe.model


@pytest.mark.slow
def test_adapter_only_checkpoint_is_small_and_reloads_exactly(workspace, lora_run):
    spec, trained = lora_run
    file = workspace / "lora" / "checkpoints" / "last" / "model.safetensors"
    assert trainer_weights(file) == ("trainable", str((workspace / "base").resolve()))
    stored = load_file(file)
    buffers = {n for n, _ in trained.named_buffers()}
    assert set(stored) == {n for n, p in trained.named_parameters() if p.requires_grad} | buffers
    assert not any(n.startswith("vision_encoder.") and ".lora_" not in n for n in stored)
    assert file.stat().st_size < 0.5 * (workspace / "base" / "model.safetensors").stat().st_size
    meta = json.loads(file.with_name("meta.json").read_text())
    assert meta["weights"] == "trainable" and meta["base"] == str((workspace / "base").resolve())

    _, reloaded = recipe_with_model(spec, None)  # the path of evaluate / inference / export
    assert reloaded.state_dict().keys() == trained.state_dict().keys()
    for name, tensor in trained.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name
    for ours, theirs in zip(outputs(reloaded), outputs(trained)):
        assert torch.equal(ours, theirs)


@pytest.mark.slow
def test_export_of_a_lora_run_writes_plain_merged_weights(workspace, lora_run):
    spec, trained = lora_run
    written = export_task.run(spec)
    assert [p.name for p in written] == ["hf", "sam2_finetuned.pt"]
    plain_keys = list(build_sam2("test", image_size=256).state_dict())
    hf = Sam2Model.from_pretrained(written[0])
    official = build_sam2("test", image_size=256, checkpoint=written[1])
    assert list(hf.state_dict()) == plain_keys
    expected = outputs(trained)
    for model in (hf, official):
        for ours, theirs in zip(outputs(model), expected):  # merged LoRA weights: see the merge test above
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_resume_from_adapter_only_checkpoints_is_exact(workspace, lora_run):
    """1 step, stop, resume to 2: the same losses and weights as the uninterrupted 2-step run."""
    _, trained = lora_run
    common = ("model.lora.rank=4", "train.checkpoint_every=1")
    first = make_spec(workspace, "part", *common, "train.max_steps=1")
    train(recipe_for(first), first)
    resumed_spec = make_spec(workspace, "part", *common, "train.max_steps=2")
    recipe = KeepModel(resumed_spec)
    train(recipe, resumed_spec)

    def losses(run: str) -> list[float]:
        records = map(json.loads, (workspace / run / "metrics.jsonl").read_text().splitlines())
        return [r["loss"] for r in records if r["split"] == "train"]

    assert losses("part") == losses("lora") and len(losses("lora")) == 2
    for name, tensor in trained.state_dict().items():
        assert torch.equal(recipe.model.state_dict()[name], tensor), name


@pytest.mark.slow
def test_resuming_on_another_base_is_refused(workspace, lora_run):
    spec, trained = lora_run
    other = workspace / "other.safetensors"
    with pytest.raises(ValueError, match=r"holds only the trained parameters of a model built from .*base"):
        load_checkpoint(workspace / "lora" / "checkpoints" / "last", trained, base=str(other))
