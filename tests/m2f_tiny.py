"""Tiny Mask2Former specs (test-size Swin, 8 queries, 64×64 inputs) over the synthetic datasets of
``tests/models/mask2former/conftest.py``; imported as ``m2f_tiny`` (``tests/`` is on the path)."""

from pathlib import Path


TINY_MODEL = [
    "model.name=mask2former", "model.backbone.swin.type=test", "model.backbone.swin.window_size=4",
    "model.backbone.swin.drop_path_rate=0.0", "model.sem_seg_head.num_classes=5", "model.sem_seg_head.convs_dim=32",
    "model.sem_seg_head.mask_dim=32", "model.sem_seg_head.transformer_enc_layers=1",
    "model.mask_former.num_object_queries=8", "model.mask_former.hidden_dim=32", "model.mask_former.nheads=2",
    "model.mask_former.dim_feedforward=64", "model.mask_former.dec_layers=3", "model.mask_former.train_num_points=1024",
    "data.augmentation.train_min_size=[64]", "data.augmentation.train_max_size=64",
    "data.augmentation.train_crop_size=[64,64]", "data.augmentation.test_min_size=64",
    "data.augmentation.test_max_size=64", "data.train.num_workers=0",
]
"""Overrides that make any Mask2Former spec tiny (the synthetic label map has 5 classes)."""


def split_overrides(kind: str, paths: dict[str, Path], split: str, source: str = "train") -> list[str]:
    """``data.<split>`` keys pointing at the synthetic ``source`` split of a dataset of ``kind``."""
    if kind == "semantic":
        return [f"data.{split}.annot_file={paths[f'{source}_jsonl']}", f"data.{split}.root_dir={paths[f'{source}_root']}"]
    if kind == "instance":
        return [f"data.{split}.instance_json={paths[f'{source}_json']}", f"data.{split}.img_dir={paths[f'{source}_images']}"]
    return [f"data.{split}.panoptic_json={paths[f'{source}_json']}", f"data.{split}.img_dir={paths[f'{source}_images']}",
            f"data.{split}.panoptic_dir={paths[f'{source}_panoptic']}"]


DATA_TYPE = {"semantic": "ade", "instance": "coco", "panoptic": "coco_panoptic"}


def tiny_spec_overrides(kind: str, paths: dict[str, Path], results_dir: Path, val_source: str = "val") -> list[str]:
    return [*TINY_MODEL, f"model.mode={kind}", f"data.type={DATA_TYPE[kind]}", f"data.label_map={paths['label_map']}",
            *split_overrides(kind, paths, "train"), *split_overrides(kind, paths, "val", val_source),
            f"results_dir={results_dir}"]
