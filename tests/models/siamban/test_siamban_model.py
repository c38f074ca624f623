"""SiamBAN network: output shapes (ResNet-50 default and the tiny test backbone), freezing, gradients, and
backbone weight loading (prefix stripping, missing / unused report, shape mismatches)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from segfit.models.siamban.model import SiamBAN, score_size, xcorr_depthwise
from segfit.models.siamban.weights import load_backbone


def test_resnet50_default_gives_the_reference_25x25_maps():
    model = SiamBAN().eval()
    with torch.no_grad():
        kernels = model.template(torch.rand(1, 3, 127, 127) * 255)
        cls, loc = model.track(kernels, torch.rand(1, 3, 255, 255) * 255)
    assert [tuple(k.shape) for k in kernels] == [(1, 256, 6, 6)] * 6
    assert cls.shape == (1, 2, 25, 25) and loc.shape == (1, 4, 25, 25)  # values: random ResNet-50 in eval mode
    assert model.backbone.channels == (512, 1024, 2048) and score_size(255) == 25


@pytest.mark.parametrize("template, search", [(63, 127), (95, 191)])
def test_tiny_backbone_sizes(template, search):
    cls, loc = SiamBAN("tiny", 16)(torch.rand(2, 3, template, template), torch.rand(2, 3, search, search))
    assert cls.shape == (2, 2, score_size(search), score_size(search)) and loc.shape[1] == 4


def test_depthwise_xcorr_correlates_each_channel_with_its_own_kernel():
    search, kernel = torch.randn(2, 3, 7, 7), torch.randn(2, 3, 3, 3)
    out = xcorr_depthwise(search, kernel)
    expected = (search[1, 2, 2:5, 1:4] * kernel[1, 2]).sum()
    torch.testing.assert_close(out[1, 2, 2, 1], expected)


def test_frozen_layers_get_no_gradient_and_keep_batchnorm_statistics():
    model = SiamBAN("tiny", 16)
    model.set_training_layers(["layer3", "layer4"])
    model.train()
    assert not model.backbone.bn1.training and not model.backbone.layer2[1].training
    assert model.backbone.layer4[1].training and model.neck[0][1].training
    cls, loc = model(torch.rand(2, 3, 63, 63) * 255, torch.rand(2, 3, 127, 127) * 255)
    (cls.sum() + loc.sum()).backward()
    for name, param in model.named_parameters():
        trains = not name.startswith("backbone.") or name.split(".")[1] in ("layer3", "layer4")
        assert param.requires_grad == trains, name
        assert (param.grad is not None) == trains, name


def test_backbone_loads_torchvision_weights_with_wrapper_prefixes(tmp_path):
    source = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = SiamBAN()
    report = load_backbone(model.backbone, path)
    assert report.missing == [] and sorted(report.unused) == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(model.backbone.layer3[0].conv2.weight, source.layer3[0].conv2.weight, rtol=0, atol=0)
    assert "2 unused" in report.summary()


def test_backbone_weights_of_the_wrong_shape_fail(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3), "layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)}, path)
    with pytest.raises(ValueError, match="conv1.weight: file \\(64, 3, 3, 3\\)"):
        load_backbone(SiamBAN().backbone, path)
    torch.save({"head.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="no tensor fits"):
        load_backbone(SiamBAN("tiny").backbone, path)


def test_unreadable_backbone_files_are_errors_naming_them(tmp_path):
    for name, content in (("cut.pth", b"PK\x03\x04 cut short"), ("cut.safetensors", b"\x08\x00")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}: not a weights file"):
            load_backbone(SiamBAN("tiny").backbone, tmp_path / name)
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(ValueError, match="tensor.pth: holds no state dict"):
        load_backbone(SiamBAN("tiny").backbone, tmp_path / "tensor.pth")
