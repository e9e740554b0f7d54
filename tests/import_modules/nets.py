"""Hand-written torch modules for tests/test_importer.py: functional calls, in-place ops, a gate,
a shared submodule, an op archcalc lacks. Each builder takes keyword arguments, like torchvision's."""

import torch
import torch.nn.functional as F
from torch import nn


class Functional(nn.Module):
    """Layers as modules, activations and pooling as functions, a residual written `out += x`."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(16 + 8, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.max_pool2d(x, 2)
        out = self.conv2(x)
        out += x  # in place
        out = torch.relu_(out)
        out = torch.cat([out, torch.sigmoid(self.conv3(out))], dim=1)
        out = out.mean((2, 3))
        return self.fc(F.dropout(out, 0.2, self.training))


class Gate(nn.Module):
    """Squeeze-and-excitation written by hand: x * sigmoid(fc2(relu(fc1(pool(x)))))."""

    def __init__(self, channels: int = 16, squeeze: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = torch.sigmoid(self.fc2(F.relu(self.fc1(scale))))
        return x * scale


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.se = Gate(channels, channels // 4)

    def forward(self, x):
        return F.relu(x + self.se(self.bn(self.conv(x))))


class Gated(nn.Module):
    """A stem, three identical gated residual blocks (one block, repeated), a head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[Block(16) for _ in range(3)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class Shared(nn.Module):
    """One block called twice: its parameters exist once, its MACs twice."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.block = Block(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.block(self.block(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Spectral(nn.Module):
    """A Fourier filter archcalc has no op for, inside a submodule."""

    def forward(self, x):
        return torch.fft.irfft2(torch.fft.rfft2(x, norm="ortho"), s=(32, 32), norm="ortho")


class WithSpectral(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.filter = Spectral()
        self.up = nn.Upsample(scale_factor=2)
        self.fc = nn.Linear(8 * 64 * 64, 10)

    def forward(self, x):
        x = self.up(self.filter(self.conv(x)))
        return self.fc(torch.flatten(x, 1))


def functional(**kwargs):
    return Functional(**kwargs)


def gated(**kwargs):
    return Gated(**kwargs)


def batch_normed(num_classes: int = 10):
    """d2l's BNLeNet with its sizes written out for 3 x 32 x 32: BatchNorm2d after convs, BatchNorm1d after linears."""
    return nn.Sequential(
        nn.Conv2d(3, 6, kernel_size=5), nn.BatchNorm2d(6), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.BatchNorm1d(84, eps=1e-3), nn.Sigmoid(), nn.Linear(84, num_classes))


def shared():
    return Shared()


def spectral():
    return WithSpectral()


class DataDependent(nn.Module):
    """Python control flow on a tensor's values: fx cannot trace it."""

    def forward(self, x):
        return x.relu() if x.sum() > 0 else x.sigmoid()


class TwoOutputs(nn.Module):
    def forward(self, x):
        return x.relu(), x.sigmoid()
