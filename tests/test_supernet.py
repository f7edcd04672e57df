"""The supernet: weight sharing, exact extraction, counting from the walk."""
import dataclasses
import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nas import Supernet, build_subnet
from nas.errors import ArchError
from tests.conftest import SHIPPED_SPACES, load_space

PLAIN_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.ReLU, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                nn.Flatten, nn.Identity)


def _in_channels(space):
    return 1 if space.name == "demo" else 3


def _archs(space, n=50, seed=0):
    rng = random.Random(seed)
    return [space.min_arch(), space.max_arch()] + [space.sample(rng) for _ in range(n)]


def _randomise_bn(net):
    """Non-trivial BN statistics and affine weights, so that equivalence tests can fail."""
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.fixture(scope="module", params=SHIPPED_SPACES)
def space_and_net(request):
    torch.manual_seed(0)
    space = load_space(request.param)
    net = Supernet(space, num_classes=10, in_channels=_in_channels(space))
    _randomise_bn(net)
    return space, net.eval()


def test_extracted_subnet_equals_supernet(space_and_net):
    space, net = space_and_net
    for arch in _archs(space):
        sub = net.extract(arch).eval()
        x = torch.randn(2, net.in_channels, arch.resolution, arch.resolution)
        with torch.no_grad():
            torch.testing.assert_close(sub(x), net(x, arch), atol=1e-5, rtol=1e-5)


def test_extracted_subnet_is_plain_and_standalone(space_and_net):
    space, net = space_and_net
    arch = space.max_arch()
    sub = net.extract(arch)
    leaves = [m for m in sub.modules() if not list(m.children())]
    assert leaves and all(isinstance(m, PLAIN_LAYERS) for m in leaves)
    supernet_ptrs = {p.data_ptr() for p in net.parameters()}
    assert not any(p.data_ptr() in supernet_ptrs for p in sub.parameters())
    with torch.no_grad():  # changing the supernet afterwards must not change the subnet
        before = [p.clone() for p in sub.parameters()]
        for p in net.parameters():
            p.add_(1.0)
        after = list(sub.parameters())
        for p in net.parameters():
            p.sub_(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_params_from_the_walk_equal_the_extracted_count(space_and_net):
    space, net = space_and_net
    for arch in _archs(space, n=20, seed=1):
        counted = space.params(arch, in_channels=net.in_channels, num_classes=10)
        assert counted == sum(p.numel() for p in net.extract(arch).parameters())


def test_flops_from_the_walk_match_flop_counter(space_and_net):
    space, net = space_and_net
    for arch in _archs(space, n=10, seed=2):
        sub = net.extract(arch).eval()
        x = torch.randn(1, net.in_channels, arch.resolution, arch.resolution)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            sub(x)
        predicted = space.flops(arch, in_channels=net.in_channels, num_classes=10)
        assert abs(predicted - counter.get_total_flops()) <= 0.01 * counter.get_total_flops()


def test_one_weight_per_edge_and_op_at_the_largest_size():
    space = load_space("nb201_elastic")
    net = Supernet(space, num_classes=10, in_channels=3)
    conv_names = [n for n in net.layers if n.endswith("nor_conv_3x3")]
    assert len(conv_names) == sum(s.cells for s in space.stages) * len(space.edges)
    w = net.layers["stage2_cell4_edge5_nor_conv_3x3"].conv.weight
    assert tuple(w.shape) == (96, 96, 5, 5)
    assert not any(n.endswith("_none") for n in net.layers)


def test_width_and_kernel_are_slices_of_the_shared_weight():
    space = load_space("nb201_elastic")
    net = Supernet(space, num_classes=10, in_channels=3)
    arch = dataclasses.replace(space.max_arch(), width=(12, 32, 48), kernel=(3, 3, 3))
    sub = net.extract(arch)
    conv = sub[1].edges[0][1]  # first cell of stage 0, edge (1, 0): ReLU, Conv, BN
    shared = net.layers["stage0_cell0_edge0_nor_conv_3x3"].conv.weight
    assert torch.equal(conv.weight, shared[:12, :12, 1:4, 1:4])


def test_depth_runs_the_first_cells_only(demo):
    torch.manual_seed(0)
    net = Supernet(demo, num_classes=10, in_channels=1).eval()
    arch = dataclasses.replace(demo.max_arch(), depth=(1, 1, 1))
    x = torch.randn(2, 1, 28, 28)
    before = net(x, arch)
    with torch.no_grad():  # weights of the second cells do not matter at depth 1
        for name, layer in net.layers.items():
            if "_cell1_" in name:
                for p in layer.parameters():
                    p.mul_(3.0)
    torch.testing.assert_close(net(x, arch), before)
    assert not torch.allclose(net(x, demo.max_arch()), before)


def test_gradients_reach_only_the_active_subnet(demo):
    net = Supernet(demo, num_classes=10, in_channels=1)
    arch = demo.parse("|nor_conv_1x1~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|"
                      "skip_connect~1|skip_connect~2|"
                      ";depth=1,1,1;width=4,8,16;kernel=3,3,3")
    net(torch.randn(4, 1, 28, 28), arch).sum().backward()
    assert net.layers["stage0_cell0_edge0_nor_conv_1x1"].conv.weight.grad is not None
    assert net.layers["stage0_cell0_edge0_nor_conv_3x3"].conv.weight.grad is None
    assert net.layers["stage0_cell1_edge0_nor_conv_1x1"].conv.weight.grad is None
    grad = net.layers["stage0_cell0_edge0_nor_conv_1x1"].conv.weight.grad
    assert grad[4:].abs().sum() == 0 and grad[:4, :4].abs().sum() > 0


def test_all_zero_cell_outputs_zeros_and_extracts(nb201):
    net = Supernet(nb201, num_classes=10, in_channels=3).eval()
    arch = nb201.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net.extract(arch).eval()(x), net(x, arch))


def test_build_subnet_without_supernet_loads_extracted_weights(demo):
    net = Supernet(demo, num_classes=10, in_channels=1).eval()
    arch = demo.sample(random.Random(5))
    sub = net.extract(arch).eval()
    fresh = build_subnet(demo, arch, in_channels=1, num_classes=10)
    fresh.load_state_dict(sub.state_dict())
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(fresh.eval()(x), sub(x))


def test_extract_rejects_an_arch_of_another_space(nb201, demo):
    net = Supernet(demo, num_classes=10, in_channels=1)
    with pytest.raises(ArchError):
        net.extract(nb201.max_arch())


def test_constructor_rejects_bad_sizes(demo):
    with pytest.raises(ValueError, match="num_classes"):
        Supernet(demo, num_classes=0, in_channels=1)


def test_reduction_with_shortcut_bn_is_invariant_to_its_input_scale():
    """resblock_bn's output (train mode) does not depend on the input's scale, which differs by
    orders of magnitude between subnets; NAS-Bench-201's resblock passes it on through the
    shortcut conv."""
    from nas.dynamic import DynamicResBlock
    torch.manual_seed(0)
    x = torch.randn(8, 6, 8, 8)
    with_bn, plain = DynamicResBlock(6, 8, shortcut_bn=True), DynamicResBlock(6, 8)
    torch.testing.assert_close(with_bn(100 * x, 8), with_bn(x, 8), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(plain(100 * x, 8), plain(x, 8), atol=1e-2)
    assert load_space("demo").reduction == "resblock_bn" and load_space("nb201").reduction == "resblock"
