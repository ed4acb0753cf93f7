"""Capsules: squash, dynamic routing, capsule layers, margin loss, masks, decoders, recon loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fernb.nn.capsules import (
    DeconvDecoder,
    FCDecoder,
    FCUpsampleDecoder,
    PrimaryCapsules,
    RoutingCapsules,
    dynamic_routing,
    inverse_frequency_weights,
    margin_loss,
    mask_capsules,
    reconstruction_loss,
    squash,
)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _slow_routing(u_hat: torch.Tensor, iterations: int, softmax_axis: str) -> tuple:
    """Procedure 1 of Sabour et al. with explicit loops over samples and capsules."""
    batch, n_in, n_out, dim = u_hat.shape
    v = torch.zeros(batch, n_out, dim, dtype=u_hat.dtype)
    c = torch.zeros(batch, n_in, n_out, dtype=u_hat.dtype)
    for n in range(batch):
        b = [[0.0] * n_out for _ in range(n_in)]
        for _ in range(iterations):
            for i in range(n_in):
                for j in range(n_out):
                    if softmax_axis == "paper":
                        total = sum(math.exp(b[i][k]) for k in range(n_out))
                    else:
                        total = sum(math.exp(b[k][j]) for k in range(n_in))
                    c[n, i, j] = math.exp(b[i][j]) / total
            for j in range(n_out):
                s = sum(c[n, i, j] * u_hat[n, i, j] for i in range(n_in))
                length_sq = float(s @ s)
                v[n, j] = length_sq / (1 + length_sq) * s / math.sqrt(length_sq)
            for i in range(n_in):
                for j in range(n_out):
                    b[i][j] += float(u_hat[n, i, j] @ v[n, j])
    return v, c


# --- squash ---------------------------------------------------------------------------


def test_squash_hand_computed() -> None:
    v = squash(torch.tensor([3.0, 4.0], dtype=torch.float64))
    # |s| = 5: |v| = 25 / 26, direction (3, 4) / 5
    torch.testing.assert_close(v, torch.tensor([15 / 26, 20 / 26], dtype=torch.float64))
    small = squash(torch.tensor([[0.1, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(small, torch.tensor([[0.01 / 1.01, 0.0]], dtype=torch.float64))


def test_squash_keeps_direction_and_bounds_norm() -> None:
    s = torch.randn(50, 7, generator=_generator()) * torch.logspace(-3, 2, 50)[:, None]
    v = squash(s)
    norms = v.norm(dim=-1)
    assert (norms >= 0).all() and (norms < 1).all()
    cosine = torch.nn.functional.cosine_similarity(v, s, dim=-1)
    torch.testing.assert_close(cosine, torch.ones(50))
    expected = s.norm(dim=-1) ** 2 / (1 + s.norm(dim=-1) ** 2)
    torch.testing.assert_close(norms, expected)


def test_squash_along_another_dim() -> None:
    s = torch.randn(3, 4, 5, generator=_generator(1))
    torch.testing.assert_close(squash(s, dim=1), squash(s.transpose(1, 2)).transpose(1, 2))


def test_squash_at_zero_is_zero_with_finite_gradient() -> None:
    s = torch.zeros(2, 8, requires_grad=True)
    v = squash(s)
    assert torch.equal(v, torch.zeros(2, 8))
    v.sum().backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    assert s.grad.abs().max() < 1e-6  # the true Jacobian at 0 is 0 (v ~ s |s|)


# --- dynamic routing --------------------------------------------------------------------


@pytest.mark.parametrize("softmax_axis", ["paper", "input"])
@pytest.mark.parametrize("iterations", [1, 2, 3, 5])
def test_dynamic_routing_matches_the_paper_procedure(softmax_axis: str, iterations: int) -> None:
    u_hat = torch.randn(2, 5, 3, 4, generator=_generator(iterations), dtype=torch.float64)
    v, c = dynamic_routing(u_hat, iterations, softmax_axis, return_couplings=True)
    v_slow, c_slow = _slow_routing(u_hat, iterations, softmax_axis)
    assert v.shape == (2, 3, 4) and c.shape == (2, 5, 3)
    torch.testing.assert_close(v, v_slow)
    torch.testing.assert_close(c, c_slow)


@pytest.mark.parametrize(("softmax_axis", "axis"), [("paper", 2), ("input", 1)])
def test_couplings_sum_to_one_over_the_chosen_axis(softmax_axis: str, axis: int) -> None:
    u_hat = torch.randn(4, 6, 3, 8, generator=_generator(2))
    _, c = dynamic_routing(u_hat, 3, softmax_axis, return_couplings=True)
    torch.testing.assert_close(c.sum(dim=axis), torch.ones(4, 3 if axis == 1 else 6))
    assert not torch.allclose(c.sum(dim=3 - axis), torch.ones(1))  # the other axis does not


def test_one_iteration_is_uniform_coupling() -> None:
    u_hat = torch.randn(2, 6, 3, 4, generator=_generator(3))
    torch.testing.assert_close(dynamic_routing(u_hat, 1, "paper"), squash(u_hat.sum(1) / 3))
    torch.testing.assert_close(dynamic_routing(u_hat, 1, "input"), squash(u_hat.mean(1)))


def test_detach_routing_treats_couplings_as_constants() -> None:
    u_hat = torch.randn(2, 5, 3, 4, generator=_generator(4), requires_grad=True)
    v_detached = dynamic_routing(u_hat, 3, detach_routing=True)
    (grad_detached,) = torch.autograd.grad(v_detached.pow(2).sum(), u_hat)
    _, c = dynamic_routing(u_hat.detach(), 3, return_couplings=True)
    v_constant_c = squash(torch.einsum("bij,bijd->bjd", c, u_hat))
    (grad_constant_c,) = torch.autograd.grad(v_constant_c.pow(2).sum(), u_hat)
    torch.testing.assert_close(v_detached, v_constant_c)
    torch.testing.assert_close(grad_detached, grad_constant_c)
    v = dynamic_routing(u_hat, 3)  # the paper's default: gradients through the logits too
    torch.testing.assert_close(v, v_detached)
    (grad,) = torch.autograd.grad(v.pow(2).sum(), u_hat)
    assert not torch.allclose(grad, grad_detached)


def test_dynamic_routing_rejects_bad_arguments() -> None:
    u_hat = torch.zeros(1, 2, 3, 4)
    with pytest.raises(ValueError, match="iterations"):
        dynamic_routing(u_hat, 0)
    with pytest.raises(ValueError, match="softmax_axis"):
        dynamic_routing(u_hat, 3, "output")
    with pytest.raises(ValueError, match="u_hat"):
        dynamic_routing(u_hat[0], 3)


# --- layers -----------------------------------------------------------------------------


def test_primary_capsules_layout() -> None:
    layer = PrimaryCapsules(in_channels=5, capsule_types=3, capsule_dim=4, kernel_size=3, stride=2)
    x = torch.randn(2, 5, 9, 11, generator=_generator(5))
    capsules = layer(x)
    maps = layer.conv(x)  # (2, 3 * 4, 4, 5)
    assert maps.shape == (2, 12, 4, 5)
    assert capsules.shape == (2, 3 * 4 * 5, 4) == (2, layer.num_capsules(9, 11), 4)
    for t, y, x_pos in [(0, 0, 0), (1, 2, 3), (2, 3, 4)]:
        expected = squash(maps[:, 4 * t : 4 * t + 4, y, x_pos])
        torch.testing.assert_close(capsules[:, (t * 4 + y) * 5 + x_pos], expected)


def test_routing_capsules_predictions_are_w_times_u() -> None:
    layer = RoutingCapsules(in_capsules=6, in_dim=4, out_capsules=3, out_dim=5, init_std=1.0)
    assert layer.weight.shape == (6, 3, 5, 4)
    u = torch.randn(2, 6, 4, generator=_generator(6))
    u_hat = layer.predictions(u)
    i, j = 4, 2
    torch.testing.assert_close(u_hat[:, i, j], u[:, i] @ layer.weight[i, j].T)
    v, c = layer(u, return_couplings=True)
    torch.testing.assert_close(v, dynamic_routing(u_hat, 3))
    assert c.shape == (2, 6, 3)


def test_shared_weights_equal_repeated_weights() -> None:
    shared = RoutingCapsules(12, 4, 3, 5, softmax_axis="input", shared_positions=4)
    assert shared.weight.shape == (3, 3, 5, 4)
    full = RoutingCapsules(12, 4, 3, 5, softmax_axis="input")
    with torch.no_grad():
        full.weight.copy_(shared.weight.repeat_interleave(4, dim=0))
    u = torch.randn(2, 12, 4, generator=_generator(7))
    torch.testing.assert_close(shared(u), full(u))
    with pytest.raises(ValueError, match="divide"):
        RoutingCapsules(10, 4, 3, 5, shared_positions=4)


@pytest.mark.parametrize("softmax_axis", ["paper", "input"])
@pytest.mark.parametrize("detach_routing", [False, True])
def test_gradients_reach_the_conv_and_the_routing_weights(
    softmax_axis: str, detach_routing: bool
) -> None:
    torch.manual_seed(0)
    primary = PrimaryCapsules(in_channels=4, capsule_types=2, capsule_dim=8, kernel_size=3)
    n_in = primary.num_capsules(7, 7)
    routing = RoutingCapsules(
        n_in, 8, 3, 6, softmax_axis=softmax_axis, detach_routing=detach_routing, init_std=0.1
    )
    lengths = routing(primary(torch.randn(2, 4, 7, 7))).norm(dim=-1)
    margin_loss(lengths, torch.tensor([0, 2])).backward()
    for parameter in (routing.weight, primary.conv.weight, primary.conv.bias):
        assert parameter.grad is not None
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0


# --- margin loss ------------------------------------------------------------------------

LENGTHS = torch.tensor([[0.95, 0.3, 0.05], [0.5, 0.2, 0.1]], dtype=torch.float64)
# sample 0, class 0 present: 0 + 0.5 * 0.2^2 + 0 = 0.02
# sample 1, class 2 present: 0.5 * 0.4^2 + 0.5 * 0.1^2 + 0.8^2 = 0.08 + 0.005 + 0.64 = 0.725


def test_margin_loss_with_class_indices() -> None:
    loss = margin_loss(LENGTHS, torch.tensor([0, 2]))
    assert loss.item() == pytest.approx((0.02 + 0.725) / 2)


def test_margin_loss_with_multi_hot_targets() -> None:
    one_hot = torch.tensor([[1, 0, 0], [0, 0, 1]])
    assert margin_loss(LENGTHS, one_hot).item() == pytest.approx((0.02 + 0.725) / 2)
    lengths = torch.tensor([[0.5, 0.95, 0.6]], dtype=torch.float64)
    two_present = torch.tensor([[1.0, 1.0, 0.0]])
    # 0.4^2 + 0 + 0.5 * 0.5^2 = 0.16 + 0.125
    assert margin_loss(lengths, two_present).item() == pytest.approx(0.285)
    # other margins and lambda: (0.8 - 0.5)^2 + 0 + 0.25 * (0.6 - 0.2)^2 = 0.09 + 0.04
    loss = margin_loss(lengths, two_present, m_pos=0.8, m_neg=0.2, lam=0.25)
    assert loss.item() == pytest.approx(0.13)


def test_margin_loss_with_class_weights() -> None:
    lengths = torch.tensor([[0.5, 0.95, 0.6]], dtype=torch.float64)
    weights = np.array([0.5, 0.3, 0.2])
    loss = margin_loss(lengths, torch.tensor([[1, 1, 0]]), class_weights=weights)
    assert loss.item() == pytest.approx(0.5 * 0.16 + 0.3 * 0.0 + 0.2 * 0.125)
    # the weight also scales the absent-class term (Rashid & Lee, Sec. 3)
    loss = margin_loss(LENGTHS, torch.tensor([0, 2]), class_weights=torch.tensor([1.0, 2.0, 4.0]))
    assert loss.item() == pytest.approx((2 * 0.02 + (0.08 + 2 * 0.005 + 4 * 0.64)) / 2)


def test_margin_loss_rejects_mismatched_targets() -> None:
    with pytest.raises(ValueError, match="multi-hot"):
        margin_loss(LENGTHS, torch.ones(2, 4))


def test_inverse_frequency_weights_hand_checked() -> None:
    targets = np.array([[1, 0, 1], [1, 0, 0], [1, 1, 0], [1, 0, 0]])
    # counts 4, 1, 1: inverse 1/4, 1, 1 with sum 9/4
    weights = inverse_frequency_weights(targets)
    np.testing.assert_allclose(weights, [1 / 9, 4 / 9, 4 / 9])
    assert weights.sum() == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    random_targets = torch.from_numpy(rng.random((40, 6)) < 0.3)
    random_targets[0] = True
    assert inverse_frequency_weights(random_targets).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[1\]"):
        inverse_frequency_weights(np.array([[1, 0], [1, 0]]))


# --- masks ------------------------------------------------------------------------------


def _capsules() -> torch.Tensor:
    """Two samples, three class capsules of lengths (0.2, 0.9, 0.6) and (0.7, 0.1, 0.3)."""
    directions = torch.nn.functional.normalize(
        torch.randn(2, 3, 4, generator=_generator(8)), dim=-1
    )
    return directions * torch.tensor([[0.2, 0.9, 0.6], [0.7, 0.1, 0.3]])[..., None]


@pytest.mark.parametrize(
    ("mode", "targets", "kept"),
    [
        ("target", torch.tensor([2, 0]), [[0, 0, 1], [1, 0, 0]]),
        ("target", torch.tensor([[1, 0, 1], [0, 0, 0]]), [[1, 0, 1], [0, 0, 0]]),
        ("predicted", None, [[0, 1, 0], [1, 0, 0]]),
        ("present", None, [[0, 1, 1], [1, 0, 0]]),
    ],
)
def test_mask_keeps_only_the_selected_capsules(
    mode: str, targets: torch.Tensor | None, kept: list[list[int]]
) -> None:
    v = _capsules()
    masked = mask_capsules(v, targets, mode)
    keep = torch.tensor(kept, dtype=torch.bool)
    torch.testing.assert_close(masked[keep], v[keep])
    assert torch.equal(masked[~keep], torch.zeros_like(v[~keep]))


def test_mask_needs_targets_and_a_known_mode() -> None:
    with pytest.raises(ValueError, match="targets"):
        mask_capsules(_capsules())
    with pytest.raises(ValueError, match="mode"):
        mask_capsules(_capsules(), mode="all")


# --- decoders ---------------------------------------------------------------------------


def test_fc_decoder_is_sabours() -> None:
    decoder = FCDecoder(in_features=10 * 16, image_shape=(1, 28, 28))
    sizes = [
        (m.in_features, m.out_features) for m in decoder.modules() if hasattr(m, "in_features")
    ]
    assert sizes == [(160, 512), (512, 1024), (1024, 784)]
    images = decoder(torch.randn(3, 10, 16, generator=_generator(9)) * 10)
    assert images.shape == (3, 1, 28, 28)
    assert (images > 0).all() and (images < 1).all()


@pytest.mark.parametrize(
    ("kwargs", "shape", "last_layer"),
    [
        ({}, (2, 1, 96, 96), 1024),  # Rashid & Lee, 96x96 model
        ({"channels": 3, "base_size": 56, "out_size": 224}, (2, 3, 224, 224), 9408),  # VGG model
    ],
)
def test_fc_upsample_decoder_sizes(kwargs: dict, shape: tuple, last_layer: int) -> None:
    decoder = FCUpsampleDecoder(in_features=12 * 32, **kwargs)
    sizes = [m.out_features for m in decoder.modules() if hasattr(m, "out_features")]
    assert sizes == [512, 1024, last_layer]
    images = decoder(torch.randn(2, 12, 32, generator=_generator(10)))
    assert images.shape == shape
    assert (images >= 0).all() and (images <= 1).all()
    linear = FCUpsampleDecoder(in_features=12 * 32, sigmoid=False, **kwargs)
    assert (linear(torch.randn(2, 12, 32, generator=_generator(10)) * 100) < 0).any()


def test_deconv_decoder_shape_and_range() -> None:
    decoder = DeconvDecoder(in_features=6 * 30)  # Capsule-LSTM: 6 classes x 30D, 48x48 grey
    images = decoder(torch.randn(4, 6, 30, generator=_generator(11)))
    assert images.shape == (4, 1, 48, 48)
    assert (images > 0).all() and (images < 1).all()
    rgb = DeconvDecoder(30, out_size=56, out_channels=3, base_size=7, hidden=(128,))
    assert rgb(torch.randn(2, 30)).shape == (2, 3, 56, 56)
    with pytest.raises(ValueError, match="out_size"):
        DeconvDecoder(30, out_size=50)


# --- reconstruction loss ----------------------------------------------------------------


def test_reconstruction_loss_hand_computed() -> None:
    images = torch.ones(2, 1, 2, 2)
    recon = torch.zeros(2, 1, 2, 2)
    recon[1] = 0.5  # per-image squared errors: 4 x 1 = 4 and 4 x 0.25 = 1
    assert reconstruction_loss(recon, images, "sum", weight=1.0).item() == pytest.approx(2.5)
    assert reconstruction_loss(recon, images, "mean", weight=1.0).item() == pytest.approx(2.5 / 4)
    assert reconstruction_loss(recon, images).item() == pytest.approx(0.0005 * 2.5)


def test_reconstruction_loss_sum_is_mean_times_pixels() -> None:
    images = torch.rand(5, 3, 8, 6, generator=_generator(12))
    recon = torch.rand(5, 3, 8, 6, generator=_generator(13))
    total = reconstruction_loss(recon, images, "sum", weight=0.3)
    mean = reconstruction_loss(recon, images, "mean", weight=0.3)
    torch.testing.assert_close(total, mean * 3 * 8 * 6)
    torch.testing.assert_close(mean, 0.3 * torch.nn.functional.mse_loss(recon, images))


def test_reconstruction_loss_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shapes"):
        reconstruction_loss(torch.zeros(2, 4), torch.zeros(2, 1, 2, 2))
    with pytest.raises(ValueError, match="reduction"):
        reconstruction_loss(torch.zeros(2, 4), torch.zeros(2, 4), "max")
