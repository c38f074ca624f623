"""``Mask2FormerForUniversalSegmentation`` from the spec: a transformers config (Swin backbone), then the weights.

Weights: ``model.checkpoint`` (a whole model: a transformers model directory or a ``.safetensors`` file), or
``model.backbone.pretrained_weights`` (backbone only), which the recipe loads only when training starts from
scratch (``load_backbone``): checkpoints hold every weight, so the file may be gone by evaluation. Nothing is
downloaded. Parameters a file lacks or
has in another shape keep their fresh initialisation (e.g. the class head of a COCO model fine-tuned on other
classes); every such key is reported, so a wrong file never loads silently.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

from segfit.models.mask2former.loss import LayoutFreeLoss
from segfit.models.mask2former.spec import SWIN_SIZES, Mask2FormerModelSpec
from segfit.models.mask2former.swin_weights import BACKBONE_PREFIX, current_names, read_backbone_weights

Report = dict[str, list[str]]


def hf_config(spec: Mask2FormerModelSpec, class_names: list[str]) -> Mask2FormerConfig:
    swin, head, decoder = spec.backbone.swin, spec.sem_seg_head, spec.mask_former
    embed_dim, depths, heads = SWIN_SIZES[swin.type]
    backbone = SwinConfig(image_size=swin.pretrain_img_size, embed_dim=embed_dim, depths=depths, num_heads=heads,
                          window_size=swin.window_size, drop_path_rate=swin.drop_path_rate,
                          use_absolute_embeddings=swin.ape, out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerConfig(
        backbone_config=backbone, num_labels=head.num_classes, feature_size=head.convs_dim,
        mask_feature_size=head.mask_dim, encoder_layers=head.transformer_enc_layers, common_stride=head.common_stride,
        num_queries=decoder.num_object_queries, hidden_dim=decoder.hidden_dim, num_attention_heads=decoder.nheads,
        dim_feedforward=decoder.dim_feedforward, decoder_layers=decoder.dec_layers, dropout=decoder.dropout,
        pre_norm=decoder.pre_norm, class_weight=decoder.class_weight, mask_weight=decoder.mask_weight,
        dice_weight=decoder.dice_weight, train_num_points=decoder.train_num_points,
        oversample_ratio=decoder.oversample_ratio, importance_sample_ratio=decoder.importance_sample_ratio,
        use_auxiliary_loss=decoder.deep_supervision, no_object_weight=decoder.no_object_weight,
        id2label=dict(enumerate(class_names)), label2id={name: k for k, name in enumerate(class_names)},
    )


def build_mask2former(spec: Mask2FormerModelSpec, class_names: list[str]) -> Mask2FormerForUniversalSegmentation:
    """The model, its loss replaced by ``LayoutFreeLoss`` (same state: the class weights)."""
    model = Mask2FormerForUniversalSegmentation(hf_config(spec, class_names))
    model.criterion = LayoutFreeLoss(model.config, model.weight_dict)
    if spec.checkpoint:
        report = load_partial(model, read_model_weights(spec.checkpoint))
        print(format_report(spec.checkpoint, report))
    return model


def load_backbone(model: Mask2FormerForUniversalSegmentation, path: str) -> None:
    """Swin backbone weights into ``model``, with the report of what did not fit."""
    print(format_report(path, load_partial(model, read_backbone_weights(path), BACKBONE_PREFIX)))


def read_model_weights(path: str) -> dict[str, torch.Tensor]:
    """A transformers model directory (``model.safetensors``) or a ``.safetensors`` file (segfit's or the Hub's names)."""
    file = Path(path) / "model.safetensors" if Path(path).is_dir() else Path(path)
    if not file.is_file() or file.suffix != ".safetensors":
        raise FileNotFoundError(f"{path}: expected a transformers model directory (with model.safetensors) or a "
                                f".safetensors file")
    return current_names(load_file(str(file)))


def load_partial(model: torch.nn.Module, weights: dict[str, torch.Tensor], prefix: str = "") -> Report:
    """Copy the tensors of ``weights`` (names relative to ``prefix``) that fit; report what did not."""
    own = {name[len(prefix):]: tensor for name, tensor in model.state_dict().items() if name.startswith(prefix)}
    fitting = {name: tensor for name, tensor in weights.items() if name in own and own[name].shape == tensor.shape}
    if not fitting:
        raise ValueError(f"no tensor of the file fits the model{' backbone' if prefix else ''}: is it the right "
                         f"kind of file (e.g. {next(iter(weights), 'nothing')} vs {next(iter(own))})?")
    model.load_state_dict({prefix + name: tensor for name, tensor in fitting.items()}, strict=False)
    return {"loaded": sorted(fitting),
            "missing": sorted(own.keys() - weights.keys()),
            "unused": sorted(weights.keys() - own.keys()),
            "other_shape": sorted(name for name in weights.keys() & own.keys() if name not in fitting)}


def format_report(path: str, report: Report) -> str:
    lines = [f"weights {path}: {len(report['loaded'])} tensors loaded"]
    for kind, meaning in (("missing", "not in the file, left as initialised"), ("unused", "in the file, not in the model"),
                          ("other_shape", "another shape in the file, left as initialised")):
        if report[kind]:
            shown = ", ".join(report[kind][:6]) + (" ..." if len(report[kind]) > 6 else "")
            lines.append(f"  {len(report[kind])} {kind} ({meaning}): {shown}")
    return "\n".join(lines)
