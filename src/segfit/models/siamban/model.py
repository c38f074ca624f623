"""SiamBAN: a dilated ResNet trunk shared by template and search, a 1×1 neck per level, and per level one
box-adaptive head (depthwise cross-correlation for classification and for box regression), fused by learned
weights.

Geometry: torchvision's ResNet padding gives 16×16 template and 32×32 search maps for 127 / 255 crops (the
reference's own ResNet gives 15 / 31). The template map is centre-cropped to 8×8 (reference 7×7), so after the
heads' 3×3 convolutions the correlation is 25×25 as in the reference, and score cell k lies at search pixel
31 + 8k: the reference's point grid, centred on the crop. Inputs are RGB crops with values 0–255; the model
normalises them (ImageNet mean and std, as torchvision weights expect).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

STRIDE = 8
TEMPLATE_CELLS = 8
"""Side of the centre crop of the template maps."""
LEVELS = ("layer2", "layer3", "layer4")
TRUNK = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """The ResNet trunk (torchvision parameter names, so torchvision weight files load as they are) with layer3 and
    layer4 dilated (overall stride 8); returns the layer2, layer3 and layer4 maps."""

    def __init__(self, variant: Literal["resnet50", "tiny"] = "resnet50"):
        super().__init__()
        if variant == "resnet50":
            net = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
            for name in TRUNK:
                setattr(self, name, getattr(net, name))
            self.channels = (512, 1024, 2048)
        else:  # same strides, paddings and dilations with one plain conv per layer: for fast tests
            self.conv1, self.bn1 = nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16)
            self.layer1 = _conv_bn(16, 16, stride=1, dilation=1)
            self.layer2 = _conv_bn(16, 32, stride=2, dilation=1)
            self.layer3 = _conv_bn(32, 32, stride=1, dilation=2)
            self.layer4 = _conv_bn(32, 32, stride=1, dilation=4)
            self.channels = (32, 32, 32)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x2 = self.layer2(self.layer1(x))
        x3 = self.layer3(x2)
        return [x2, x3, self.layer4(x3)]


def _conv_bn(cin: int, cout: int, stride: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _conv(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def xcorr_depthwise(search: Tensor, kernel: Tensor) -> Tensor:
    """Each channel of each search map correlated with the same channel of its own kernel (one grouped conv)."""
    b, c, h, w = search.shape
    out = F.conv2d(search.reshape(1, b * c, h, w), kernel.reshape(b * c, 1, *kernel.shape[2:]), groups=b * c)
    return out.reshape(b, c, *out.shape[2:])


class DepthwiseXCorr(nn.Module):
    """3×3 conv + BN + ReLU on each side, depthwise correlation, then 1×1 conv + BN + ReLU and a 1×1 output conv."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.conv_kernel, self.conv_search = _conv(channels, channels, 3), _conv(channels, channels, 3)
        self.head = nn.Sequential(_conv(channels, channels, 1), nn.Conv2d(channels, out_channels, 1))

    def forward(self, kernel: Tensor, search: Tensor) -> Tensor:
        """``kernel``: the template side after ``conv_kernel`` (computed once per tracked target)."""
        return self.head(xcorr_depthwise(self.conv_search(search), kernel))


class BoxAdaptiveHead(nn.Module):
    """One level: foreground/background scores (2 channels) and distances to the box sides (l, t, r, b)."""

    def __init__(self, channels: int):
        super().__init__()
        self.cls, self.loc = DepthwiseXCorr(channels, 2), DepthwiseXCorr(channels, 4)
        self.loc_scale = nn.Parameter(torch.ones(1))

    def kernels(self, template: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls.conv_kernel(template), self.loc.conv_kernel(template)

    def forward(self, kernels: tuple[Tensor, Tensor], search: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls(kernels[0], search), torch.exp(self.loc(kernels[1], search) * self.loc_scale)


class SiamBAN(nn.Module):
    """``template(z)`` once per target, then ``track(kernels, x)`` per frame; ``forward(z, x)`` does both."""

    def __init__(self, backbone: Literal["resnet50", "tiny"] = "resnet50", channels: int = 256):
        super().__init__()
        self.backbone = Backbone(backbone)
        self.neck = nn.ModuleList(nn.Sequential(nn.Conv2d(c, channels, 1, bias=False), nn.BatchNorm2d(channels))
                                  for c in self.backbone.channels)
        self.heads = nn.ModuleList(BoxAdaptiveHead(channels) for _ in LEVELS)
        self.cls_weight, self.loc_weight = nn.Parameter(torch.ones(len(LEVELS))), nn.Parameter(torch.ones(len(LEVELS)))
        self.register_buffer("mean", 255 * torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", 255 * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.training_layers: frozenset[str] = frozenset(TRUNK)
        for module in [*self.neck.modules(), *self.heads.modules()]:
            # convs followed by BatchNorm; the output convs keep PyTorch's smaller default, or exp(loc) would start
            # at wildly large distances whose IoU gradient vanishes
            if isinstance(module, nn.Conv2d) and module.bias is None:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def features(self, image: Tensor) -> list[Tensor]:
        return [neck(x) for neck, x in zip(self.neck, self.backbone((image - self.mean) / self.std))]

    def template(self, z: Tensor) -> list[Tensor]:
        """The correlation kernels of a template crop: (cls, loc) per level, flattened in that order."""
        kernels = []
        for head, feature in zip(self.heads, self.features(z)):
            start = (feature.shape[-1] - TEMPLATE_CELLS) // 2
            kernels += head.kernels(feature[..., start:start + TEMPLATE_CELLS, start:start + TEMPLATE_CELLS])
        return kernels

    def track(self, kernels: Sequence[Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
        """(B×2×n×n scores, B×4×n×n l, t, r, b distances in search pixels) for search crops ``x``."""
        levels = [head((kernels[2 * i], kernels[2 * i + 1]), feature)
                  for i, (head, feature) in enumerate(zip(self.heads, self.features(x)))]
        cls_w, loc_w = F.softmax(self.cls_weight, 0), F.softmax(self.loc_weight, 0)
        cls = sum(w * c for w, (c, _) in zip(cls_w, levels))
        loc = sum(w * l for w, (_, l) in zip(loc_w, levels))
        return cls, loc

    def forward(self, z: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.track(self.template(z), x)

    def set_training_layers(self, layers: Sequence[str]) -> None:
        """Backbone layers that train: the others are frozen, their BatchNorm statistics kept (eval mode)."""
        self.training_layers = frozenset(layers)
        for name in TRUNK:
            getattr(self.backbone, name).requires_grad_(name in self.training_layers)
        self.train(self.training)

    def train(self, mode: bool = True) -> SiamBAN:
        super().train(mode)
        for name in TRUNK:
            if name not in self.training_layers:
                getattr(self.backbone, name).eval()
        return self


def score_size(search_size: int) -> int:
    """Side of the score map for ``search_size`` crops (25 for 255)."""
    search_cells = (search_size + 1) // STRIDE  # torchvision's padding: ceil(size / 8) cells
    return search_cells - 2 - (TEMPLATE_CELLS - 2) + 1
