"""Weight-slicing layers of the supernet, and their extraction into plain ``torch.nn`` layers.

Every dynamic layer owns ONE weight tensor at the largest size. A smaller width uses the first
``c`` output (and input) channels; a smaller kernel uses the centre of the largest kernel. The
input width is read from the input tensor, the output width and kernel are forward arguments:
no layer keeps "active subnet" state.

``extract(...)`` on each layer copies the active slices into a standard layer (``nn.Conv2d``,
``nn.BatchNorm2d``, ``nn.Linear``...) that computes the same function without any slicing.

This module knows nothing of cells, stages or search spaces.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DynamicConv2d(nn.Module):
    """A bias-free convolution whose output channels and kernel are sliced per call."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd, got {kernel}")
        self.kernel = kernel
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def active_weight(self, c_in: int, c_out: int, kernel: int) -> torch.Tensor:
        w = self.weight
        if c_out != w.shape[0] or c_in != w.shape[1]:
            w = w[:c_out, :c_in]
        if kernel != self.kernel:
            start = (self.kernel - kernel) // 2
            w = w[:, :, start:start + kernel, start:start + kernel]
        return w

    def forward(self, x: torch.Tensor, c_out: int, kernel: int) -> torch.Tensor:
        w = self.active_weight(x.shape[1], c_out, kernel)
        return F.conv2d(x, w, None, self.stride, kernel // 2)

    def extract(self, c_in: int, c_out: int, kernel: int) -> nn.Conv2d:
        conv = nn.Conv2d(c_in, c_out, kernel, self.stride, kernel // 2, bias=False)
        conv.weight.data.copy_(self.active_weight(c_in, c_out, kernel))
        return conv


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first ``c`` channels of the largest one.

    Running statistics are slices of the full buffers, so a training-mode update of a smaller
    width writes into the first channels (the statistics are recalibrated before any
    evaluation anyway; see :func:`nas.evaluate.calibrate_bn`).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c, H, W) with c <= num_features
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        use_batch_stats = self.training or self.running_mean is None
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.momentum is None:
            # Cumulative average: the same rule as nn.BatchNorm2d, on the shared counter.
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked)
        elif self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(
            x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
            use_batch_stats, momentum, self.eps,
        )

    def extract(self, c: int) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(c, eps=self.eps, momentum=self.momentum)
        bn.weight.data.copy_(self.weight[:c])
        bn.bias.data.copy_(self.bias[:c])
        bn.running_mean.copy_(self.running_mean[:c])
        bn.running_var.copy_(self.running_var[:c])
        bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn


class DynamicLinear(nn.Module):
    """A linear layer whose input features are the first ``c`` of the largest."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        w = self.linear.weight if c == self.linear.in_features else self.linear.weight[:, :c]
        return F.linear(x, w, self.linear.bias)

    def extract(self, c_in: int) -> nn.Linear:
        out = nn.Linear(c_in, self.linear.out_features)
        out.weight.data.copy_(self.linear.weight[:, :c_in])
        out.bias.data.copy_(self.linear.bias)
        return out


class Identity(nn.Module):
    """``skip_connect``."""

    def forward(self, x: torch.Tensor, c_out: int = 0, kernel: int = 0) -> torch.Tensor:
        return x

    def extract(self, c_in: int, c_out: int, kernel: int) -> nn.Module:
        return nn.Identity()


class AvgPool3x3(nn.Module):
    """``avg_pool_3x3`` (stride 1, padding excluded from the average, as NAS-Bench-201)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor, c_out: int = 0, kernel: int = 0) -> torch.Tensor:
        return self.pool(x)

    def extract(self, c_in: int, c_out: int, kernel: int) -> nn.Module:
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class DynamicReLUConvBN(nn.Module):
    """ReLU -> Conv -> BN, the conv edge of NAS-Bench-201, elastic in width and kernel."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__()
        self.conv = DynamicConv2d(c_in, c_out, kernel, stride)
        self.bn = DynamicBatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, c_out: int, kernel: int) -> torch.Tensor:
        return self.bn(self.conv(F.relu(x), c_out, kernel))

    def extract(self, c_in: int, c_out: int, kernel: int) -> nn.Sequential:
        return nn.Sequential(nn.ReLU(), self.conv.extract(c_in, c_out, kernel), self.bn.extract(c_out))


class DynamicConvBN(nn.Module):
    """Conv -> BN, the stem."""

    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.conv = DynamicConv2d(c_in, c_out, kernel)
        self.bn = DynamicBatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, c_out: int, kernel: int) -> torch.Tensor:
        return self.bn(self.conv(x, c_out, kernel))

    def extract(self, c_in: int, c_out: int, kernel: int) -> nn.Sequential:
        return nn.Sequential(self.conv.extract(c_in, c_out, kernel), self.bn.extract(c_out))


class ResBlock(nn.Module):
    """The reduction block of NAS-Bench-201 built from plain layers: a strided basic block whose
    shortcut is average pooling then a 1x1 convolution (then BatchNorm, in ``resblock_bn``)."""

    def __init__(self, conv_a: nn.Module, conv_b: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.conv_a = conv_a
        self.conv_b = conv_b
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class DynamicResBlock(nn.Module):
    """The reduction block, elastic in input and output width.

    With ``shortcut_bn`` the shortcut's 1x1 convolution is followed by BatchNorm, so that the
    block's output scale does not depend on its input's. NAS-Bench-201 has no such BN; but in a
    weight-sharing supernet the input scale differs by orders of magnitude between subnets (a
    cell of skip connections adds its input to itself), and one shared shortcut weight cannot
    serve them all.
    """

    def __init__(self, c_in: int, c_out: int, shortcut_bn: bool = False):
        super().__init__()
        self.conv_a = DynamicReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = DynamicReLUConvBN(c_out, c_out, 3)
        self.pool = nn.AvgPool2d(2, stride=2)
        self.shortcut = DynamicConv2d(c_in, c_out, 1)
        self.shortcut_bn = DynamicBatchNorm2d(c_out) if shortcut_bn else None

    def forward(self, x: torch.Tensor, c_out: int, kernel: int = 3) -> torch.Tensor:
        shortcut = self.shortcut(self.pool(x), c_out, 1)
        if self.shortcut_bn is not None:
            shortcut = self.shortcut_bn(shortcut)
        return shortcut + self.conv_b(self.conv_a(x, c_out, 3), c_out, 3)

    def extract(self, c_in: int, c_out: int, kernel: int = 3) -> ResBlock:
        shortcut = [nn.AvgPool2d(2, stride=2), self.shortcut.extract(c_in, c_out, 1)]
        if self.shortcut_bn is not None:
            shortcut.append(self.shortcut_bn.extract(c_out))
        return ResBlock(
            self.conv_a.extract(c_in, c_out, 3),
            self.conv_b.extract(c_out, c_out, 3),
            nn.Sequential(*shortcut),
        )


class DynamicHead(nn.Module):
    """BN -> ReLU -> global average pool -> Linear."""

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        self.bn = DynamicBatchNorm2d(c_in)
        self.classifier = DynamicLinear(c_in, num_classes)

    def forward(self, x: torch.Tensor, c_out: int = 0, kernel: int = 0) -> torch.Tensor:
        x = F.relu(self.bn(x)).mean((2, 3))  # (B, c)
        return self.classifier(x)

    def extract(self, c_in: int, c_out: int = 0, kernel: int = 0) -> nn.Sequential:
        return nn.Sequential(
            self.bn.extract(c_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            self.classifier.extract(c_in),
        )
