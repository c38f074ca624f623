"""A tiny recipe for the engine tests: an MLP regressing a fixed linear target from noisy inputs.

It exercises what the engine must get right: per-sample seeds (input noise), the global RNG inside the step
(dropout), parameter groups with norms, biases, a position embedding and a frozen layer, and validation metrics.

Run as a script under ``torchrun`` it trains and writes what each rank saw to ``results_dir/rank<N>.json``::

    torchrun --standalone --nproc_per_node 2 tests/engine/toy_recipe.py OUT --grad-accum-steps 2
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from segfit.engine.checkpoint import seed_everything
from segfit.engine.optim import build_optimizer
from segfit.engine.recipe import ParamGroup
from segfit.engine.sampler import MixedBatchSampler, MixedDataset, Source
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
                 nan_at_call: int | None = None, mix: list[tuple[str, int, int, float]] | None = None,
                 unfreeze_at: int | None = None):
        """``mix``: train on several datasets, (name, samples, batch size, repeat factor) each; ``unfreeze_at``: the
        step from which the frozen layer trains (``before_step``)."""
        self.spec, self.dropout, self.mix, self.unfreeze_at = spec, dropout, mix, unfreeze_at
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
        return [ParamGroup(name="body", params=body, lr=lr, unfrozen_later=self.unfreeze_at is not None),
                ParamGroup(name="head", params=head, lr=2 * lr)]

    def before_step(self, model: nn.Module, step: int) -> bool:
        trains = self.unfreeze_at is not None and step >= self.unfreeze_at
        if model.frozen.weight.requires_grad == trains:
            return False
        model.frozen.requires_grad_(trains)
        return True

    def train_dataset(self) -> ToyDataset | MixedDataset:
        if self.mix is None:
            return ToyDataset()
        return MixedDataset([Source(name, ToyDataset(size), batch, repeat) for name, size, batch, repeat in self.mix])

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return {"x": torch.stack([s["x"] for s in samples]), "y": torch.stack([s["y"] for s in samples]),
                "keys": [(s["index"], s["seed"]) for s in samples],
                "source": [f"sample_{s['index']}.txt" for s in samples]}

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


def replay_data_parallel(steps: int, world_size: int,
                         skipped: frozenset[tuple[int, int]] = frozenset()) -> tuple[list[list], list[float]]:
    """The reference for data parallelism: one process that averages the ranks' losses of each step (the mean of
    the ranks' gradients is the gradient of the mean loss), a ``(rank, step)`` in ``skipped`` adding nothing.
    Returns each rank's sample keys, in order, and the final weights."""
    spec = toy_spec(Path("unused"))
    recipe = ToyRecipe(spec, dropout=0.0)
    seed_everything(spec.train.seed)  # rank 0's initialisation, which DDP broadcasts
    model = recipe.build_model()
    optimizer = build_optimizer(recipe.param_groups(model), spec.train.optim)
    dataset = MixedDataset([Source("train", recipe.train_dataset(), spec.data.batch_size)])
    orders = [iter(MixedBatchSampler(dataset, spec.train.seed, rank, world_size)) for rank in range(world_size)]
    keys: list[list] = [[] for _ in range(world_size)]
    for step in range(1, steps + 1):
        loss = torch.zeros(())
        for rank, order in enumerate(orders):
            batch = next(order)
            keys[rank] += [[index, seed] for _, index, seed in batch]
            if (rank, step) not in skipped:
                loss = loss + recipe.training_step(model, recipe.collate([dataset[k] for k in batch]))["loss"]
        (loss / world_size).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec.train.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad()
    return keys, torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()


class FlakyToyRecipe(ToyRecipe):
    """Under ``torchrun``, on the first attempt only (no checkpoint yet: a restarted process resumes from one):
    ``no_grad_call`` (rank, call) returns a loss without gradient, and rank ``exit_rank`` dies at its training call
    ``exit_call``, as a killed process would. (Not ``TORCHELASTIC_RESTART_COUNT``: each machine's agent counts its
    own restarts, and the machines' ranks may change places at a restart.)"""

    def __init__(self, spec: Spec, no_grad_call: tuple[int, int] | None, exit_rank: int, exit_call: int | None,
                 unfreeze_at: int | None = None):
        super().__init__(spec, dropout=0.0, unfreeze_at=unfreeze_at)
        self.no_grad_call, self.exit_rank, self.exit_call = no_grad_call, exit_rank, exit_call
        self.rank = int(os.environ["RANK"])
        self.first_attempt = not (Path(spec.results_dir) / "checkpoints" / "last").is_dir()

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        call = len(self.losses) + 1
        if self.first_attempt and self.rank == self.exit_rank and call == self.exit_call:
            os._exit(1)
        terms = super().training_step(model, batch)
        if self.first_attempt and (self.rank, call) == self.no_grad_call:
            terms = {key: value.detach() for key, value in terms.items()}
        return terms


def main() -> None:
    """Train under ``torchrun`` and write what this rank saw and its final weights to ``results_dir/rank<N>.json``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--grad-accum-steps", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=3)
    parser.add_argument("--no-grad-call", type=int, nargs=2, metavar=("RANK", "CALL"))
    parser.add_argument("--exit-rank", type=int, default=1)
    parser.add_argument("--exit-call", type=int)
    parser.add_argument("--unfreeze-at", type=int)
    parser.add_argument("--distributed", choices=["ddp", "fsdp"], default="ddp")
    parser.add_argument("--max-steps", type=int, default=6)
    args = parser.parse_args()
    from segfit.engine.trainer import train

    spec = toy_spec(args.results_dir, args.batch_size, max_steps=args.max_steps, log_every=2, checkpoint_every=args.checkpoint_every,
                    eval_every=3, grad_accum_steps=args.grad_accum_steps, distributed=args.distributed)
    recipe = FlakyToyRecipe(spec, tuple(args.no_grad_call) if args.no_grad_call else None, args.exit_rank,
                            args.exit_call, args.unfreeze_at)
    summary = train(recipe, spec)
    weights = torch.cat([p.detach().flatten() for p in recipe.model.parameters()]).tolist()
    (args.results_dir / f"rank{recipe.rank}.json").write_text(json.dumps({
        "seen": recipe.seen, "step": summary["step"], "weights": weights,
        "resumed": not recipe.first_attempt,
    }))


if __name__ == "__main__":
    main()
