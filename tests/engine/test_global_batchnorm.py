"""``GlobalBatchNorm`` (``train.sync_batchnorm``): 2 gloo processes with half a batch each normalise, backpropagate
and update running statistics as one BatchNorm with the whole batch; replacing a model's layers keeps its tensors."""

from pathlib import Path

import pytest
import torch
from global_batchnorm_worker import batch_and_grads
from torchrun_train import run_under_torchrun

from segfit.engine.batchnorm import GlobalBatchNorm, globalize_batchnorm
from segfit.models.siamban.model import SiamBAN

HERE = Path(__file__).parent


@pytest.mark.slow
def test_two_processes_normalise_as_one_batchnorm_with_the_whole_batch(tmp_path):
    run_under_torchrun(str(HERE / "global_batchnorm_worker.py"), str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    reference = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        reference.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    for step, (x, grad) in enumerate(zip(*batch_and_grads())):
        x = x.clone().requires_grad_()
        reference.zero_grad()
        out = reference(x)
        (out * grad).sum().backward()
        # other summation orders (per process, then joined): ≤ 7.2e-7 of the largest value seen (weight gradients)
        close = {"rtol": 1e-5, "atol": 1e-5}
        torch.testing.assert_close(torch.cat([r["out"][step] for r in ranks]), out.detach(), **close)
        torch.testing.assert_close(torch.cat([r["input_grad"][step] for r in ranks]), x.grad, **close)
        for rank in ranks:
            torch.testing.assert_close(rank["weight_grad"][step], reference.weight.grad, **close)
            torch.testing.assert_close(rank["bias_grad"][step], reference.bias.grad, **close)
    for rank in ranks:
        torch.testing.assert_close(rank["running_mean"], reference.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rank["running_var"], reference.running_var, rtol=1e-5, atol=1e-6)
        assert rank["num_batches_tracked"] == reference.num_batches_tracked == 2


def test_replaced_layers_keep_the_model_tensors_and_modes():
    model = SiamBAN("tiny", 8)
    model.set_training_layers([])  # the backbone frozen: its BatchNorm layers in eval mode
    tensors = dict(model.state_dict(keep_vars=True))
    batchnorms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert globalize_batchnorm(model) == batchnorms > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(tensor is tensors[name] for name, tensor in model.state_dict(keep_vars=True).items())
    assert not model.backbone.bn1.training and model.neck[0][1].training
    assert isinstance(model.backbone.bn1, GlobalBatchNorm)
    x = torch.randn(2, 8, 4, 4)
    layer = model.neck[0][1]  # one process: plain BatchNorm
    plain = torch.nn.BatchNorm2d(8)
    assert torch.equal(layer(x), plain(x)) and torch.equal(layer.running_var, plain.running_var)
