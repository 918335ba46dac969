"""The STGCN backbone with virtual nodes: zero input, cut before the loss, receptive field."""
import numpy as np
import pytest
import torch

from graphcore.tasks.traffic.adjacency import DenseSupports
from graphcore.tasks.traffic.model import DiffusionConv, SeasonalBase, TemporalGLU, VirtualNodeSTGCN
from graphcore.tasks.traffic.sensitivity import hop_distances, layerwise_sensitivity, sensitivity_by_hop

N = 8


def chain(n: int = N) -> torch.Tensor:
    """Undirected path graph 0 - 1 - ... - n-1 with self loops."""
    d = torch.eye(n)
    for i in range(n - 1):
        d[i, i + 1] = d[i + 1, i] = 1.0
    return d


def small_net(mode="semi", n_virtual=2, **kw) -> VirtualNodeSTGCN:
    args = dict(in_channels=2, input_len=6, horizon=4, n_virtual=n_virtual, adjacency_mode=mode, hidden_channels=8,
                graph_channels=4, n_blocks=1, kernel_size=2, diffusion_steps=1, embedding_dim=4,
                prune_threshold=0.0, dropout=0.0)
    args.update(kw)
    return VirtualNodeSTGCN(chain(), **args)


def test_output_shape_and_virtual_nodes_get_zero_input():
    net = small_net()
    seen = {}
    net.blocks[0].temporal1.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    out = net(torch.randn(3, 6, N, 2))
    assert out.shape == (3, 4, N)
    assert seen["x"].shape == (N + 2, 3, 6, 2)     # node-major
    assert (seen["x"][N:] == 0).all() and (seen["x"][:N] != 0).any()


def test_virtual_node_outputs_never_reach_the_loss():
    net = small_net()
    head_out = {}

    def keep(module, args, output):
        output.retain_grad()
        head_out["y"] = output

    net.head.register_forward_hook(keep)
    y = torch.randn(3, 4, N)
    (net(torch.randn(3, 6, N, 2)) - y).abs().mean().backward()
    grad = head_out["y"].grad                     # [N + n_v, B, H], before the cut
    assert grad.shape == (N + 2, 3, 4)
    assert (grad[N:] == 0).all() and (grad[:N] != 0).any()


def test_input_shape_is_checked():
    with pytest.raises(ValueError, match=r"expected input \[B, T, 8, 2\]"):
        small_net()(torch.randn(1, 6, N + 1, 2))
    with pytest.raises(ValueError, match="consume"):
        small_net(n_blocks=3, kernel_size=2)


def test_semi_without_virtual_nodes_is_the_distance_model():
    torch.manual_seed(1)
    semi = small_net("semi", n_virtual=0)
    dist = small_net("distance", n_virtual=0)
    dist.load_state_dict(semi.state_dict())
    x = torch.randn(2, 6, N, 2)
    torch.testing.assert_close(semi(x), dist(x))


def test_virtual_nodes_widen_the_receptive_field_of_one_block():
    """A block with K = 2 diffusion steps sees 2 hops of the chain; virtual nodes joined to every
    sensor put all sensors within 2 steps (sensor -> virtual -> sensor)."""
    torch.manual_seed(0)
    x = torch.randn(6, N, 2)
    hops = hop_distances(chain().numpy())
    targets = [0, 7]
    far = torch.from_numpy(hops[targets] > 2)
    plain = layerwise_sensitivity(small_net("distance", n_virtual=0, diffusion_steps=2), x, targets)
    assert (plain[0][far] == 0).all() and (plain[0][~far] > 0).all()
    with_virtual = layerwise_sensitivity(small_net("distance", n_virtual=2, diffusion_steps=2), x, targets)
    assert (with_virtual[0] > 0).all()
    distances, means = sensitivity_by_hop(plain, hops, targets)
    np.testing.assert_array_equal(distances, np.arange(N))
    assert means.shape == (1, N) and means[0, 0] > means[0, 1] > means[0, 2] > 0 and (means[0, 3:] == 0).all()


def test_sensitivity_matches_autograd_jacobian():
    torch.manual_seed(0)
    net = small_net(n_virtual=2)
    x = torch.randn(6, N, 2)
    sens = layerwise_sensitivity(net, x, [3])

    def h3(inp):
        return net(inp[None], return_hidden=True)[1][0][3, 0, -1]

    jac = torch.autograd.functional.jacobian(h3, x)     # [C, T, N, C_in]
    torch.testing.assert_close(sens[0, 0], jac.square().sum(dim=(0, 1, 3)).sqrt())


def test_temporal_glu_is_a_gated_causal_convolution():
    glu = TemporalGLU(1, 1, 2)
    with torch.no_grad():
        glu.conv.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, 0.0]]))  # p = x_t + 2 x_{t+1}, q = 0
        glu.conv.bias.zero_()
    x = torch.arange(4.0).reshape(1, 1, 4, 1)
    out = glu(x)[0, 0, :, 0]
    expected = (torch.tensor([0 + 2, 1 + 4, 2 + 6.0]) + torch.tensor([1, 2, 3.0])) * 0.5
    torch.testing.assert_close(out, expected)


def test_diffusion_conv_matches_explicit_powers():
    torch.manual_seed(0)
    conv = DiffusionConv(3, 2, steps=2)
    x = torch.randn(5, 2, 4, 3)                  # [M, B, T, C]
    p_f, p_b = torch.rand(5, 5), torch.rand(5, 5)
    w0, wf1, wf2, wb1, wb2 = conv.proj.weight.chunk(5, dim=0)
    b0, bf1, bf2, bb1, bb2 = conv.proj.bias.chunk(5)

    def lin(h, w, b):
        return h @ w.t() + b

    def prop(p, h):
        return torch.einsum("nm,mbtc->nbtc", p, h)

    expected = (lin(x, w0, b0) + prop(p_f, lin(x, wf1, bf1)) + prop(p_f, prop(p_f, lin(x, wf2, bf2)))
                + prop(p_b, lin(x, wb1, bb1)) + prop(p_b, prop(p_b, lin(x, wb2, bb2))))
    torch.testing.assert_close(conv(x, DenseSupports(p_f, p_b)), expected)


def test_seasonal_base_is_profile_plus_decaying_anomaly():
    per_day = 8
    profile = torch.arange(per_day * 2, dtype=torch.float32).reshape(1, per_day, 2)
    decay = torch.tensor([[1.0, 1.0], [0.5, 0.25], [0.0, 0.0]])         # per step and sensor
    base = SeasonalBase(profile, decay)
    x = torch.zeros(1, 4, 2, 2)
    x[0, -1, :, 0] = torch.tensor([10.0, 20.0])     # last readings
    x[0, :, :, 1] = 7 / per_day                      # the last input is in slot 7: targets wrap to 0, 1, 2
    anomaly = torch.tensor([10.0, 20.0]) - profile[0, 7]
    expected = torch.stack([profile[0, 0] + anomaly, profile[0, 1] + decay[1] * anomaly, profile[0, 2]])
    torch.testing.assert_close(base(x)[0], expected)


def test_seasonal_base_ignores_a_missing_last_reading():
    profile = torch.arange(8 * 2, dtype=torch.float32).reshape(1, 8, 2) + 1
    base = SeasonalBase(profile, torch.tensor([[1.0, 1.0], [0.5, 0.5]]))
    x = torch.zeros(1, 4, 2, 2)
    x[0, -1, 1, 0] = 30.0                            # sensor 0's last reading is missing (0 after scaling)
    out = base(x)[0]                                 # slot 0: targets are slots 1, 2
    torch.testing.assert_close(out[:, 0], profile[0, 1:3, 0])
    torch.testing.assert_close(out[:, 1], profile[0, 1:3, 1] + torch.tensor([1.0, 0.5]) * (30.0 - profile[0, 0, 1]))


@pytest.mark.parametrize("day, crossed", [(4, 5), (6, 0), (0, 1)])   # Fri -> Sat, Sun -> Mon, Mon -> Tue
def test_seasonal_base_switches_day_type_at_midnight(day, crossed):
    """Weekday profile 1, weekend profile 2 (one sensor): targets after midnight take the next
    day's type, the anomaly is measured against today's."""
    per_day = 4
    profile = torch.stack([torch.full((per_day, 1), 1.0), torch.full((per_day, 1), 2.0)])
    base = SeasonalBase(profile, torch.zeros(3, 1), time_channel=1, day_channel=2)
    x = torch.zeros(1, 2, 1, 3)
    x[0, :, 0, 1] = 2 / per_day                       # slot 2: targets are slots 3, 0 (tomorrow), 1 (tomorrow)
    x[0, :, 0, 2] = day / 7
    today, tomorrow = float(day >= 5) + 1, float(crossed >= 5) + 1
    torch.testing.assert_close(base(x)[0, :, 0], torch.tensor([today, tomorrow, tomorrow]))


def test_seasonal_base_rejects_a_weekend_profile_without_a_day_channel():
    with pytest.raises(ValueError, match="needs the day-of-week input channel"):
        SeasonalBase(torch.zeros(2, 4, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"decay must be \[H, 3\]"):
        SeasonalBase(torch.zeros(1, 4, 3), torch.zeros(2))


def test_with_seasonal_base_the_network_learns_a_correction():
    torch.manual_seed(0)
    profile = torch.randn(1, 6, N)
    net = small_net(seasonal=profile, decay=torch.zeros(4, N))
    torch.nn.init.zeros_(net.head[3].weight)
    torch.nn.init.zeros_(net.head[3].bias)
    x = torch.randn(2, 6, N, 2)
    x[..., 1] = 0.0                                   # slot 0: targets are slots 1..4
    torch.testing.assert_close(net(x), profile[0, 1:5].expand(2, -1, -1))


def test_with_a_weekly_profile_the_day_of_week_reaches_only_the_prior():
    """Tuesday and Wednesday share the weekday profile, and the network never sees which day it
    is: the forecasts are equal. Saturday takes the weekend profile."""
    torch.manual_seed(0)
    profile = torch.stack([torch.zeros(6, N), torch.ones(6, N)])
    net = small_net(in_channels=3, seasonal=profile, decay=torch.zeros(4, N)).eval()
    assert net.blocks[0].temporal1.conv.in_features == 2 * 2          # kernel 2 x (speed, time of day)
    x = torch.randn(1, 6, N, 3)
    x[..., 1] = 0.0
    days = {}
    for day in (1, 2, 5):
        x[..., 2] = day / 7
        days[day] = net(x)
    torch.testing.assert_close(days[1], days[2])
    torch.testing.assert_close(days[5] - days[1], torch.ones(1, 4, N))
