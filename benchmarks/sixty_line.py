"""The "60-line" SAM 2 fine-tuning loop (Sagi Eppel's widely copied LabPics script), re-implemented faithfully: the
peer every segfit speed figure is compared with.

One image per step, the image encoder under no_grad every step, one random click per object, multimask decoding,
BCE on mask 0 at the original resolution + 0.05·|IoU − score|, AdamW (lr 1e-5, weight decay 4e-5).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch


def sixty_line_loop(data_dir: Path, size: str, image_size: int, steps: int, device: str = "cpu",
                    autocast_dtype: torch.dtype | None = None) -> dict[str, list[float] | float]:
    """``steps`` steps on ``data_dir/train`` → the time of every step (``times``, s), the objects of every step
    (``objects``) and, on CUDA, the peak memory tensors held (``gpu_mem``, GiB)."""
    from segfit.data.formats import open_split
    from segfit.models.sam2.build import build_sam2
    from segfit.models.sam2.preprocess import masks_to_original, points_to_model, preprocess_image
    from segfit.spec.schema import SplitSpec

    torch.manual_seed(0)
    cuda = device.startswith("cuda")
    reader = open_split(SplitSpec(images=str(data_dir / "train/images"), annotations=str(data_dir / "train/masks")))
    model = build_sam2(size, image_size=image_size).to(device).train()
    model.vision_encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=4e-5)
    rng = np.random.default_rng(0)
    times, objects = [], []
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(steps):
        started = time.perf_counter()
        record = reader.load(int(rng.integers(len(reader))))
        masks = torch.from_numpy(record.masks).float().to(device)
        points = torch.stack([torch.nonzero(m)[torch.randint(int(m.sum()), ())].flip(0) for m in masks.bool()]).float()
        with torch.autocast(device.split(":")[0], dtype=autocast_dtype, enabled=autocast_dtype is not None):
            with torch.no_grad():  # predictor.set_image
                embeddings = model.get_image_embeddings(preprocess_image(record.image, image_size)[None].to(device))
            out = model(image_embeddings=embeddings,
                        input_points=points_to_model(points, record.size, image_size)[None, :, None],
                        input_labels=torch.ones(1, len(points), 1, dtype=torch.long, device=device),
                        multimask_output=True)
            prd = torch.sigmoid(masks_to_original(out.pred_masks[0].float(), record.size)[:, 0])
            seg_loss = (-masks * torch.log(prd + 1e-5) - (1 - masks) * torch.log(1 - prd + 1e-5)).mean()
            inter = (masks * (prd > 0.5)).sum((1, 2))
            iou = inter / (masks.sum((1, 2)) + (prd > 0.5).sum((1, 2)) - inter)
            loss = seg_loss + 0.05 * torch.abs(out.iou_scores[0, :, 0] - iou).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
        objects.append(len(masks))
    result: dict[str, list[float] | float] = {"times": times, "objects": objects}
    if cuda:
        result["gpu_mem"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result
