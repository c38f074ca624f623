"""Parameter groups (weight-decay rule, frozen parameters, per-group lr) and the lr schedules at known steps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from segfit.engine.optim import apply_schedule, build_optimizer, build_scheduler, lr_factor
from segfit.engine.recipe import ParamGroup
from segfit.spec.schema import OptimSpec


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.positional_encoding = nn.Parameter(torch.zeros(8, 4))
        self.scale = nn.Parameter(torch.ones(()))
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(4, 2)


def _groups(net: Net) -> list[ParamGroup]:
    params = dict(net.named_parameters())
    return [
        ParamGroup(name="backbone", params=[(n, p) for n, p in params.items() if not n.startswith("head.")], lr=1e-4),
        ParamGroup(name="head", params=[(n, p) for n, p in params.items() if n.startswith("head.")], lr=1e-3),
    ]


def _names(net: Net, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in net.named_parameters() if id(p) in ids}


def test_decay_only_on_matrices_and_kernels_and_frozen_parameters_left_out():
    net = Net()
    optimizer = build_optimizer(_groups(net), OptimSpec(weight_decay=0.05, betas=[0.8, 0.95]))
    groups = {(g["name"], g["weight_decay"]): _names(net, g) for g in optimizer.param_groups}
    assert groups == {
        ("backbone", 0.05): {"conv.weight"},
        ("backbone", 0.0): {"conv.bias", "bn.weight", "bn.bias", "pos_embed", "positional_encoding", "scale"},
        ("head", 0.05): {"head.weight"},
        ("head", 0.0): {"head.bias"},
    }
    assert {g["name"]: g["lr"] for g in optimizer.param_groups} == {"backbone": 1e-4, "head": 1e-3}
    assert all(g["betas"] == (0.8, 0.95) for g in optimizer.param_groups)


def test_no_trainable_parameters_and_shared_parameters_are_errors():
    net = Net()
    net.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(_groups(net), OptimSpec())
    net = Net()
    twice = [ParamGroup(name="a", params=[("head.weight", net.head.weight)], lr=1.0),
             ParamGroup(name="b", params=[("head.weight", net.head.weight)], lr=1.0)]
    with pytest.raises(ValueError, match="head.weight is in two parameter groups: 'a' and 'b'"):
        build_optimizer(twice, OptimSpec())


def _lrs(spec: OptimSpec, max_steps: int) -> list[float]:
    """The lr each optimizer step 1..max_steps uses, stepping a real scheduler, plus the lr after the last step."""
    net = Net()
    optimizer = build_optimizer([ParamGroup(name="all", params=[("head.weight", net.head.weight)], lr=2.0)], spec)
    scheduler = build_scheduler(optimizer, spec, max_steps)
    lrs = []
    for _ in range(max_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs + [optimizer.param_groups[0]["lr"]]


def test_constant_with_linear_warmup():
    lrs = _lrs(OptimSpec(scheduler="constant", warmup_steps=4), 6)
    assert lrs == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0, 2.0])


def test_cosine_decays_to_min_ratio_at_max_steps():
    lrs = _lrs(OptimSpec(scheduler="cosine", warmup_steps=2, min_lr_ratio=0.1), 10)
    assert lrs[:3] == pytest.approx([1.0, 2.0, 2.0])
    # halfway through the 8 post-warm-up steps the cosine is at the midpoint of 2.0 and 0.2
    assert lrs[6] == pytest.approx(0.2 + (2.0 - 0.2) * 0.5)
    assert lrs[10] == pytest.approx(0.2)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))


def test_multistep_multiplies_by_gamma_at_milestones():
    lrs = _lrs(OptimSpec(scheduler="multistep", milestones=[3, 5], gamma=0.5), 6)
    assert lrs == pytest.approx([2.0, 2.0, 2.0, 1.0, 1.0, 0.5, 0.5])
    sgd = torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=2.0)
    reference = torch.optim.lr_scheduler.MultiStepLR(sgd, milestones=[3, 5], gamma=0.5)
    expected = []
    for _ in range(7):
        expected.append(reference.get_last_lr()[0])
        reference.optimizer.step()
        reference.step()
    assert lrs == pytest.approx(expected)


def test_apply_schedule_switches_a_restored_optimizer_to_the_current_schedule():
    short, long = OptimSpec(scheduler="cosine"), OptimSpec(scheduler="cosine")
    net = Net()
    optimizer = build_optimizer([ParamGroup(name="all", params=[("head.weight", net.head.weight)], lr=1.0)], short)
    scheduler = build_scheduler(optimizer, short, max_steps=4)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    resumed = build_scheduler(optimizer, long, max_steps=8)
    resumed.load_state_dict(scheduler.state_dict())
    apply_schedule(resumed)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr_factor(4, long, 8)) == pytest.approx(0.1 + 0.9 * 0.5)


def test_schedule_formula_edges():
    assert lr_factor(0, OptimSpec(scheduler="cosine", warmup_steps=0), 10) == 1.0
    assert lr_factor(50, OptimSpec(scheduler="cosine", min_lr_ratio=0.25), 10) == 0.25  # held after the end
    assert lr_factor(3, OptimSpec(scheduler="cosine", warmup_steps=20, min_lr_ratio=0.0), 10) == pytest.approx(0.2)
    assert math.isclose(lr_factor(5, OptimSpec(scheduler="cosine", min_lr_ratio=0.0), 10), 0.5)


def test_poly_decays_to_zero_at_max_steps():
    spec = OptimSpec(scheduler="poly", power=0.9, warmup_steps=2)
    assert lr_factor(0, spec, 12) == pytest.approx(0.5)  # warm-up
    assert lr_factor(7, spec, 12) == pytest.approx((1 - 5 / 10) ** 0.9)
    assert lr_factor(12, spec, 12) == 0.0


def test_sgd_with_momentum():
    net = Net()
    optimizer = build_optimizer(_groups(net), OptimSpec(optimizer="sgd", momentum=0.8, weight_decay=0.01))
    assert isinstance(optimizer, torch.optim.SGD)
    assert {g["momentum"] for g in optimizer.param_groups} == {0.8}
    assert sorted({g["weight_decay"] for g in optimizer.param_groups}) == [0.0, 0.01]


def test_log_schedule_with_log_warmup_per_epoch_matches_the_reference_values():
    """SiamBAN: 20 epochs of 3 steps, a 5-epoch geometric warm-up 0.001 → 0.005, then log 0.005 → 0.00005; every
    step of an epoch keeps its lr (values computed from pysot's lr_scheduler.py)."""
    spec = OptimSpec(base_lr=0.005, scheduler="log", warmup="log", warmup_steps=15, warmup_start_ratio=0.2,
                     min_lr_ratio=0.01, lr_step_every=3)
    per_epoch = [0.005 * lr_factor(3 * epoch + 2, spec, 60) for epoch in range(20)]
    expected = [0.001, 0.00138, 0.00190, 0.00263, 0.00362, 0.005, 0.00360, 0.00259, 0.00186, 0.00134, 0.000965,
                0.000695, 0.0005, 0.00036, 0.000259, 0.000186, 0.000134, 0.000097, 0.000069, 0.00005]
    for got, want in zip(per_epoch, expected):
        assert got == pytest.approx(want, rel=1e-2)  # the reference list is rounded to 2–3 significant digits
    assert lr_factor(3 * 7, spec, 60) == lr_factor(3 * 7 + 2, spec, 60)


def test_sgd_keeps_frozen_parameters_of_groups_unfrozen_later():
    net = Net()
    groups = _groups(net)
    groups[0]["unfrozen_later"] = True
    optimizer = build_optimizer(groups, OptimSpec(optimizer="sgd", momentum=0.9, weight_decay=1e-4))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    assert "frozen.weight" in set().union(*(_names(net, g) for g in optimizer.param_groups))
