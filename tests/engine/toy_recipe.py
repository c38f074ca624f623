"""A tiny recipe for the engine tests: an MLP regressing a fixed linear target from noisy inputs.

It exercises what the engine must get right: per-sample seeds (input noise), the global RNG inside the step
(dropout), parameter groups with norms, biases, a position embedding and a frozen layer, and validation metrics.

Run as a script under ``torchrun`` it trains and writes what each rank saw to ``results_dir/rank<N>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from segfit.engine.recipe import ParamGroup
from segfit.engine.sampler import MixedDataset, Source
from segfit.spec.schema import DataSpec, OptimSpec, Spec, SplitSpec, TrainSpec

DIM = 4


def toy_spec(results_dir: Path, batch_size: int = 2, val: bool = True, **train: Any) -> Spec:
    """A CPU fp32 spec with short intervals; ``train`` overrides TrainSpec fields (``optim=OptimSpec(...)`` too)."""
    train = {"max_steps": 6, "device": "cpu", "log_every": 1, "checkpoint_every": 100, "eval_every": 100,
             "optim": OptimSpec(base_lr=0.05, scheduler="constant", grad_clip=1.0), **train}
    return Spec(results_dir=str(results_dir), data=DataSpec(batch_size=batch_size, val=SplitSpec() if val else None),
                train=TrainSpec(**train))


class ToyDataset(Dataset):
    def __init__(self, num_samples: int = 24):
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(num_samples, DIM, generator=g)
        self.y = self.x @ torch.linspace(-1.0, 1.0, DIM)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        noise = 0.1 * torch.randn(DIM, generator=torch.Generator().manual_seed(seed))
        return {"x": self.x[index] + noise, "y": self.y[index], "index": index, "seed": seed}


class ToyModel(nn.Module):
    def __init__(self, dropout: float):
        super().__init__()
        self.fc = nn.Linear(DIM, 16)
        self.frozen = nn.Linear(DIM, 16)
        self.frozen.requires_grad_(False)
        self.pos_embed = nn.Parameter(torch.zeros(1, 16))
        self.norm = nn.LayerNorm(16)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(F.relu(self.fc(x) + 0.1 * self.frozen(x) + self.pos_embed))
        return self.head(self.dropout(h)).squeeze(-1)


class ToyRecipe:
    default_best_metric = "score"

    def __init__(self, spec: Spec, dropout: float = 0.2, eval_values: list[float] | None = None,
                 nan_at_call: int | None = None, mix: list[tuple[str, int, int, float]] | None = None):
        """``mix``: train on several datasets, (name, samples, batch size, repeat factor) each."""
        self.spec, self.dropout, self.mix = spec, dropout, mix
        self.eval_values = list(eval_values or [])
        self.nan_at_call = nan_at_call
        self.seen: list[tuple[int, int]] = []  # (index, seed) of every training sample, in order
        self.losses: list[float] = []  # loss of every training micro-batch
        self.output_dtypes: list[torch.dtype] = []
        self.eval_modes: list[bool] = []  # model.training during evaluate
        self.compiled = False

    def build_model(self) -> ToyModel:
        self.model = ToyModel(self.dropout)  # kept so tests can read the trained weights
        return self.model

    def compile(self, model: nn.Module) -> None:
        self.compiled = True
        model.compile(backend="eager")  # the engine's call, not the compiler's speed, is under test

    def param_groups(self, model: nn.Module) -> list[ParamGroup]:
        lr = self.spec.train.optim.base_lr
        head = [(n, p) for n, p in model.named_parameters() if n.startswith("head.")]
        body = [(n, p) for n, p in model.named_parameters() if not n.startswith("head.")]
        return [ParamGroup(name="body", params=body, lr=lr), ParamGroup(name="head", params=head, lr=2 * lr)]

    def train_dataset(self) -> ToyDataset | MixedDataset:
        if self.mix is None:
            return ToyDataset()
        return MixedDataset([Source(name, ToyDataset(size), batch, repeat) for name, size, batch, repeat in self.mix])

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return {"x": torch.stack([s["x"] for s in samples]), "y": torch.stack([s["y"] for s in samples]),
                "keys": [(s["index"], s["seed"]) for s in samples]}

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        pred = model(batch["x"])
        self.output_dtypes.append(pred.dtype)
        loss = F.mse_loss(pred.float(), batch["y"])
        self.seen.extend(batch["keys"])
        self.losses.append(loss.item())
        if len(self.losses) == self.nan_at_call:
            loss = loss * float("nan")
        return {"loss": loss, "iou": torch.exp(-loss.detach())}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, samples_dir: Path | None = None) -> dict[str, float]:
        self.eval_modes.append(model.training)
        data = ToyDataset(8)
        jitter = 0.01 * torch.randn(data.x.shape)  # draws from the global RNG, as prompt simulation does
        mse = F.mse_loss(model(data.x + jitter), data.y).item()
        if samples_dir is not None:
            samples_dir.mkdir(parents=True, exist_ok=True)
            (samples_dir / "overlay.txt").write_text(f"{mse}\n")
        score = self.eval_values.pop(0) if self.eval_values else -mse
        return {"score": score, "mse": mse}


if __name__ == "__main__":
    from segfit.engine.trainer import train

    out = Path(sys.argv[1])
    spec = toy_spec(out, max_steps=6, log_every=2, checkpoint_every=3, eval_every=3)
    recipe = ToyRecipe(spec, dropout=0.0)
    summary = train(recipe, spec)
    weights = torch.cat([p.detach().flatten() for p in recipe.model.parameters()]).tolist()
    (out / f"rank{os.environ['RANK']}.json").write_text(
        json.dumps({"seen": recipe.seen, "step": summary["step"], "weights": weights})
    )
