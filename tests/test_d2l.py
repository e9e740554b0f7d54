"""The rest of Dive into Deep Learning's chapter 8 (modern CNNs, PyTorch edition) as the book builds
them: one-channel Fashion-MNIST at the book's input sizes, 10 classes.

Each built-in is checked three ways: the per-block output shapes the book prints (its
`layer_summary`, cited per section), parameter totals from hand formulas, and functional identity
with the book's own code, copied below (d2l.Classifier keeps only its forward here; the training
scaffolding, `save_hyperparameters` and `apply(d2l.init_cnn)`, is left out; `@d2l.add_to_class`
methods are written inside their class).
"""

from __future__ import annotations

import pytest

import archcalc


def conv(cin: int, cout: int, k: int) -> int:
    """A convolution's parameters with its bias (d2l's nn.LazyConv2d keeps it)."""
    return cout * (cin * k * k + 1)


def linear(fin: int, fout: int) -> int:
    return fout * (fin + 1)


def bn(c: int) -> int:
    return 2 * c


def block_shapes(name: str) -> list[tuple[int, ...]]:
    """The output shape of each top-level layer or block, what the book's layer_summary prints."""
    return [row.output_shape for row in archcalc.analyze(name).fold(1)]


# ---- the book's printed shapes --------------------------------------------------------------

# Each list is the book's layer_summary output, torch.Size([1, ...]) per top-level module of `net`.
BOOK_SHAPES = {
    # d2l.ai/chapter_convolutional-modern/vgg.html, 8.2.2: VGG(arch=((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)))
    "vgg11-d2l": [(1, 64, 112, 112), (1, 128, 56, 56), (1, 256, 28, 28), (1, 512, 14, 14), (1, 512, 7, 7),
                  (1, 25088), (1, 4096), (1, 4096), (1, 4096), (1, 4096), (1, 4096), (1, 4096), (1, 10)],
    # d2l.ai/chapter_convolutional-modern/nin.html, 8.3.2: NiN().layer_summary((1, 1, 224, 224))
    "nin": [(1, 96, 54, 54), (1, 96, 26, 26), (1, 256, 26, 26), (1, 256, 12, 12), (1, 384, 12, 12),
            (1, 384, 5, 5), (1, 384, 5, 5), (1, 10, 5, 5), (1, 10, 1, 1), (1, 10)],
    # d2l.ai/chapter_convolutional-modern/googlenet.html, 8.4.2: GoogleNet().layer_summary((1, 1, 96, 96))
    "googlenet-d2l": [(1, 64, 24, 24), (1, 192, 12, 12), (1, 480, 6, 6), (1, 832, 3, 3), (1, 1024), (1, 10)],
    # d2l.ai/chapter_convolutional-modern/resnet.html, 8.6.3: ResNet18().layer_summary((1, 1, 96, 96))
    "resnet18-d2l": [(1, 64, 24, 24), (1, 64, 24, 24), (1, 128, 12, 12), (1, 256, 6, 6), (1, 512, 3, 3), (1, 10)],
}


@pytest.mark.parametrize("name", sorted(BOOK_SHAPES))
def test_block_shapes_are_the_books(name: str) -> None:
    assert block_shapes(name) == BOOK_SHAPES[name]


def test_densenet_channels_follow_the_books_bookkeeping() -> None:
    # d2l.ai/chapter_convolutional-modern/densenet.html, 8.7: "num_channels += num_convs * growth_rate",
    # then "num_channels //= 2" in each transition; 96x96 -> 24 after b1, halved by each transition
    # (the section prints DenseBlock(2, 10) on 3 channels as 23 and transition_block(10) as 10 x 4 x 4)
    expected, channels, side = [(1, 64, 24, 24)], 64, 24
    for i in range(4):
        channels += 4 * 32
        expected.append((1, channels, side, side))
        if i != 3:
            channels, side = channels // 2, side // 2
            expected.append((1, channels, side, side))
    expected.append((1, 10))
    assert block_shapes("densenet-d2l") == expected
    assert channels == 248


def test_lenet_bn_shapes_without_padding() -> None:
    # d2l.ai/chapter_convolutional-modern/batch-norm.html, 8.5.4: BNLeNet's first convolution has no
    # padding (LeNet's in 7.6 has 2): 28 - 5 + 1 = 24, pooled 12, 12 - 5 + 1 = 8, pooled 4
    rows = {row.name: row.output_shape for row in archcalc.analyze("lenet-bn").rows}
    assert rows["bn1"] == (1, 6, 24, 24)
    assert rows["pool2"] == (1, 16, 4, 4)
    assert rows["bn3"] == (1, 120)
    assert rows["bn4"] == (1, 84)
    assert [name for name in rows if name.startswith("bn")] == ["bn1", "bn2", "bn3", "bn4"]


# ---- parameters by hand ------------------------------------------------------------------------


def nin_block(cin: int, out: int, k: int) -> int:
    return conv(cin, out, k) + 2 * conv(out, out, 1)


def inception(cin: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int) -> tuple[int, int]:
    """d2l's Inception(c1, c2, c3, c4) on `cin` channels: its parameters and output channels."""
    params = (conv(cin, c1, 1) + conv(cin, c2[0], 1) + conv(c2[0], c2[1], 3) + conv(cin, c3[0], 1)
              + conv(c3[0], c3[1], 5) + conv(cin, c4, 1))
    return params, c1 + c2[1] + c3[1] + c4


def googlenet_params() -> int:
    total = conv(1, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3)
    channels = 192
    rows = [(64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64),  # b3
            (192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64), (128, (128, 256), (24, 64), 64),
            (112, (144, 288), (32, 64), 64), (256, (160, 320), (32, 128), 128),  # b4
            (256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128)]  # b5
    for row in rows:
        params, channels = inception(channels, *row)
        total += params
    return total + linear(channels, 10)


def resnet18_params() -> int:
    total, cin = conv(1, 64, 7) + bn(64), 64
    for i, c in enumerate((64, 128, 256, 512)):
        for j in range(2):
            projection = i > 0 and j == 0  # use_1x1conv=True, strides=2
            total += conv(cin, c, 3) + bn(c) + conv(c, c, 3) + bn(c) + (conv(cin, c, 1) if projection else 0)
            cin = c
    return total + linear(512, 10)


def densenet_params() -> int:
    total, channels = conv(1, 64, 7) + bn(64), 64
    for i in range(4):
        for _ in range(4):
            total += bn(channels) + conv(channels, 32, 3)
            channels += 32
        if i != 3:
            total += bn(channels) + conv(channels, channels // 2, 1)
            channels //= 2
    return total + bn(channels) + linear(channels, 10)


HAND_PARAMS = {
    "nin": nin_block(1, 96, 11) + nin_block(96, 256, 5) + nin_block(256, 384, 3) + nin_block(384, 10, 3),
    "vgg11-d2l": (conv(1, 64, 3) + conv(64, 128, 3) + conv(128, 256, 3) + conv(256, 256, 3) + conv(256, 512, 3)
                  + 3 * conv(512, 512, 3) + linear(512 * 7 * 7, 4096) + linear(4096, 4096) + linear(4096, 10)),
    "googlenet-d2l": googlenet_params(),
    "lenet-bn": (conv(1, 6, 5) + bn(6) + conv(6, 16, 5) + bn(16) + linear(16 * 4 * 4, 120) + bn(120)
                 + linear(120, 84) + bn(84) + linear(84, 10)),
    "resnet18-d2l": resnet18_params(),
    "densenet-d2l": densenet_params(),
}


@pytest.mark.parametrize("name", sorted(HAND_PARAMS))
def test_parameters_by_hand(name: str) -> None:
    assert archcalc.analyze(name).total.params == HAND_PARAMS[name]


def test_lenet_bn_macs_by_hand() -> None:
    # convolutions: out channels x output positions x in channels x k x k; linears: in x out
    macs = 6 * 24 * 24 * 25 + 16 * 8 * 8 * 6 * 25 + 256 * 120 + 120 * 84 + 84 * 10
    assert archcalc.analyze("lenet-bn").total.macs == macs == 281_640


def test_d2l_models_are_listed_with_the_books_input() -> None:
    inputs = {"nin": 224, "vgg11-d2l": 224, "googlenet-d2l": 96, "lenet-bn": 28, "resnet18-d2l": 96, "densenet-d2l": 96}
    for name, side in inputs.items():
        assert name in archcalc.list_models()
        assert archcalc.load(name).input == (1, side, side)


# ---- the book's code, and the same function --------------------------------------------------

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402


class Classifier(nn.Module):
    """d2l.Classifier as far as a forward pass goes (d2l.Module.forward: `return self.net(X)`)."""

    def forward(self, X):
        return self.net(X)


def vgg_block(num_convs, out_channels):  # 8.2.1
    layers = []
    for _ in range(num_convs):
        layers.append(nn.LazyConv2d(out_channels, kernel_size=3, padding=1))
        layers.append(nn.ReLU())
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class VGG(Classifier):  # 8.2.2
    def __init__(self, arch, lr=0.1, num_classes=10):
        super().__init__()
        conv_blks = []
        for (num_convs, out_channels) in arch:
            conv_blks.append(vgg_block(num_convs, out_channels))
        self.net = nn.Sequential(
            *conv_blks, nn.Flatten(),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
            nn.LazyLinear(num_classes))


def nin_block_module(out_channels, kernel_size, strides, padding):  # 8.3.1, the book's nin_block
    return nn.Sequential(
        nn.LazyConv2d(out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU(),
        nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU())


class NiN(Classifier):  # 8.3.2
    def __init__(self, lr=0.1, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nin_block_module(96, kernel_size=11, strides=4, padding=0),
            nn.MaxPool2d(3, stride=2),
            nin_block_module(256, kernel_size=5, strides=1, padding=2),
            nn.MaxPool2d(3, stride=2),
            nin_block_module(384, kernel_size=3, strides=1, padding=1),
            nn.MaxPool2d(3, stride=2),
            nn.Dropout(0.5),
            nin_block_module(num_classes, kernel_size=3, strides=1, padding=1),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten())


class Inception(nn.Module):  # 8.4.1
    # c1--c4 are the number of output channels for each branch
    def __init__(self, c1, c2, c3, c4, **kwargs):
        super(Inception, self).__init__(**kwargs)
        # Branch 1
        self.b1_1 = nn.LazyConv2d(c1, kernel_size=1)
        # Branch 2
        self.b2_1 = nn.LazyConv2d(c2[0], kernel_size=1)
        self.b2_2 = nn.LazyConv2d(c2[1], kernel_size=3, padding=1)
        # Branch 3
        self.b3_1 = nn.LazyConv2d(c3[0], kernel_size=1)
        self.b3_2 = nn.LazyConv2d(c3[1], kernel_size=5, padding=2)
        # Branch 4
        self.b4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.b4_2 = nn.LazyConv2d(c4, kernel_size=1)

    def forward(self, x):
        b1 = F.relu(self.b1_1(x))
        b2 = F.relu(self.b2_2(F.relu(self.b2_1(x))))
        b3 = F.relu(self.b3_2(F.relu(self.b3_1(x))))
        b4 = F.relu(self.b4_2(self.b4_1(x)))
        return torch.cat((b1, b2, b3, b4), dim=1)


class GoogleNet(Classifier):  # 8.4.2
    def b1(self):
        return nn.Sequential(
            nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3),
            nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def b2(self):
        return nn.Sequential(
            nn.LazyConv2d(64, kernel_size=1), nn.ReLU(),
            nn.LazyConv2d(192, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def b3(self):
        return nn.Sequential(Inception(64, (96, 128), (16, 32), 32),
                             Inception(128, (128, 192), (32, 96), 64),
                             nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def b4(self):
        return nn.Sequential(Inception(192, (96, 208), (16, 48), 64),
                             Inception(160, (112, 224), (24, 64), 64),
                             Inception(128, (128, 256), (24, 64), 64),
                             Inception(112, (144, 288), (32, 64), 64),
                             Inception(256, (160, 320), (32, 128), 128),
                             nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def b5(self):
        return nn.Sequential(Inception(256, (160, 320), (32, 128), 128),
                             Inception(384, (192, 384), (48, 128), 128),
                             nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())

    def __init__(self, lr=0.1, num_classes=10):
        super(GoogleNet, self).__init__()
        self.net = nn.Sequential(self.b1(), self.b2(), self.b3(), self.b4(),
                                 self.b5(), nn.LazyLinear(num_classes))


class BNLeNet(Classifier):  # 8.5.4
    def __init__(self, lr=0.1, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(
            nn.LazyConv2d(6, kernel_size=5), nn.LazyBatchNorm2d(),
            nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.LazyConv2d(16, kernel_size=5), nn.LazyBatchNorm2d(),
            nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(), nn.LazyLinear(120), nn.LazyBatchNorm1d(),
            nn.Sigmoid(), nn.LazyLinear(84), nn.LazyBatchNorm1d(),
            nn.Sigmoid(), nn.LazyLinear(num_classes))


class Residual(nn.Module):  # 8.6.2
    """The Residual block of ResNet models."""
    def __init__(self, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1,
                                   stride=strides)
        self.conv2 = nn.LazyConv2d(num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.LazyConv2d(num_channels, kernel_size=1,
                                       stride=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.LazyBatchNorm2d()
        self.bn2 = nn.LazyBatchNorm2d()

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        Y += X
        return F.relu(Y)


class ResNet(Classifier):  # 8.6.3
    def b1(self):
        return nn.Sequential(
            nn.LazyConv2d(64, kernel_size=7, stride=2, padding=3),
            nn.LazyBatchNorm2d(), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def block(self, num_residuals, num_channels, first_block=False):
        blk = []
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append(Residual(num_channels, use_1x1conv=True, strides=2))
            else:
                blk.append(Residual(num_channels))
        return nn.Sequential(*blk)

    def __init__(self, arch, lr=0.1, num_classes=10):
        super(ResNet, self).__init__()
        self.net = nn.Sequential(self.b1())
        for i, b in enumerate(arch):
            self.net.add_module(f'b{i+2}', self.block(*b, first_block=(i == 0)))
        self.net.add_module('last', nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.LazyLinear(num_classes)))


class ResNet18(ResNet):
    def __init__(self, lr=0.1, num_classes=10):
        super().__init__(((2, 64), (2, 128), (2, 256), (2, 512)),
                         lr, num_classes)


def conv_block(num_channels):  # 8.7.2
    return nn.Sequential(
        nn.LazyBatchNorm2d(), nn.ReLU(),
        nn.LazyConv2d(num_channels, kernel_size=3, padding=1))


class DenseBlock(nn.Module):
    def __init__(self, num_convs, num_channels):
        super(DenseBlock, self).__init__()
        layer = []
        for i in range(num_convs):
            layer.append(conv_block(num_channels))
        self.net = nn.Sequential(*layer)

    def forward(self, X):
        for blk in self.net:
            Y = blk(X)
            # Concatenate input and output of each block along the channels
            X = torch.cat((X, Y), dim=1)
        return X


def transition_block(num_channels):  # 8.7.3
    return nn.Sequential(
        nn.LazyBatchNorm2d(), nn.ReLU(),
        nn.LazyConv2d(num_channels, kernel_size=1),
        nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(Classifier):  # 8.7.4
    b1 = ResNet.b1  # the book writes DenseNet.b1 out again, word for word ResNet's

    def __init__(self, num_channels=64, growth_rate=32, arch=(4, 4, 4, 4),
                 lr=0.1, num_classes=10):
        super(DenseNet, self).__init__()
        self.net = nn.Sequential(self.b1())
        for i, num_convs in enumerate(arch):
            self.net.add_module(f'dense_blk{i+1}', DenseBlock(num_convs,
                                                              growth_rate))
            # The number of output channels in the previous dense block
            num_channels += num_convs * growth_rate
            # A transition layer that halves the number of channels is added
            # between the dense blocks
            if i != len(arch) - 1:
                num_channels //= 2
                self.net.add_module(f'tran_blk{i+1}', transition_block(
                    num_channels))
        self.net.add_module('last', nn.Sequential(
            nn.LazyBatchNorm2d(), nn.ReLU(),
            nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
            nn.LazyLinear(num_classes)))


BOOK = {
    "vgg11-d2l": lambda: VGG(arch=((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))),
    "nin": NiN,
    "googlenet-d2l": GoogleNet,
    "lenet-bn": BNLeNet,
    "resnet18-d2l": ResNet18,
    "densenet-d2l": DenseNet,
}


def tensors_in_call_order(module: nn.Module, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Every floating-point parameter and buffer of the layers `module` runs on `x`, in the order they run.

    The book registers some layers in another order than it calls them (Residual's conv3 before its
    batch norms, bn1 after conv2), so state_dict order or shape order would pair them wrongly."""
    order: list[nn.Module] = []
    leaves = [m for m in module.modules() if not list(m.children())]
    hooks = [m.register_forward_pre_hook(lambda m, args: order.append(m)) for m in leaves]
    try:
        with torch.no_grad():
            module(x)  # also what gives the book's Lazy layers their shapes
    finally:
        for hook in hooks:
            hook.remove()
    return [(key, t) for m in dict.fromkeys(order) for key, t in m.state_dict(keep_vars=True).items()
            if t.is_floating_point()]


@pytest.mark.parametrize("name", sorted(BOOK))
def test_builtin_is_the_books_network(name: str) -> None:
    torch.manual_seed(0)
    shape = archcalc.load(name).input
    x = torch.randn(2, *shape)
    book = BOOK[name]().eval()
    theirs = tensors_in_call_order(book, x)
    ours = archcalc.build_module(name, init=False).eval()
    mine = tensors_in_call_order(ours, x)
    assert [(key, tuple(t.shape)) for key, t in mine] == [(key, tuple(t.shape)) for key, t in theirs]
    with torch.no_grad():
        for (key, target), (_, source) in zip(mine, theirs):
            # running statistics that eval mode does not reduce to the identity; the rest off its initial value
            if key == "running_var":
                source.uniform_(0.5, 1.5)
            elif key == "running_mean":
                source.uniform_(-0.5, 0.5)
            else:
                source.add_(torch.randn_like(source), alpha=0.02)
            target.copy_(source)
        expected, got = book(x), ours(x)
    assert got.shape == expected.shape == (2, 10)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max())), \
        f"max |difference| {float((got - expected).abs().max()):.3g}"
