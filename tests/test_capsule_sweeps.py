"""Capsule sweeps, activation maximisation and the magnitude-intensity correlation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fernb.analysis.capsule_sweeps import (
    MAGNITUDES,
    Ascent,
    activation_maximisation,
    capsule_objective,
    change_consistency,
    confident_pairs,
    conv_objective,
    direction_sweep,
    expression_intensity,
    grid_position,
    magnitude_intensity_correlation,
    magnitude_sweep,
    most_active,
    plot_correlations,
    primary_cosine,
    set_dimension,
    with_length,
)
from fernb.models.au_capsules import build_model

TINY = {
    "input_size": 32, "width": 0.125, "primary_kernel": 5, "class_dim": 4, "decoder_hidden": (8,),
    "decoder_base": 8,
}  # fmt: skip


class _EchoDecoder(nn.Module):
    """decode() returns the capsules it is given, so sweeps can be checked exactly."""

    def decode(self, capsules: torch.Tensor) -> torch.Tensor:
        return capsules.clone()


def test_with_length_and_set_dimension() -> None:
    v = torch.tensor([3.0, 4.0])
    torch.testing.assert_close(with_length(v, 0.5), torch.tensor([0.3, 0.4]))
    changed = set_dimension(torch.tensor([0.6, 0.0, 0.8]), 1, 0.5)
    # (0.6, 0.5, 0.8) has length sqrt(1.25); rescaled to the original length 1
    torch.testing.assert_close(changed, torch.tensor([0.6, 0.5, 0.8]) / math.sqrt(1.25))


def test_magnitude_sweep_rescales_only_the_kept_capsules() -> None:
    torch.manual_seed(0)
    capsules = torch.randn(2, 3, 4)
    keep = torch.tensor([[1, 0, 1], [0, 1, 0]])
    out = magnitude_sweep(_EchoDecoder(), capsules, keep)
    assert out.shape == (2, len(MAGNITUDES), 3, 4)
    lengths = out.norm(dim=-1)
    for m, magnitude in enumerate(MAGNITUDES):
        expected = keep.float() * magnitude
        torch.testing.assert_close(lengths[:, m], expected)
    # directions are kept
    torch.testing.assert_close(out[0, 4, 0] / 0.5, capsules[0, 0] / capsules[0, 0].norm())
    by_index = magnitude_sweep(_EchoDecoder(), capsules, torch.tensor([2, 0]), [0.3])
    assert (by_index.norm(dim=-1)[:, 0] > 0).tolist() == [
        [False, False, True],
        [True, False, False],
    ]
    with pytest.raises(ValueError, match="keep must be"):
        magnitude_sweep(_EchoDecoder(), capsules, torch.ones(2, 5))


def test_direction_sweep_keeps_the_length() -> None:
    capsules = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.4]])
    out = direction_sweep(_EchoDecoder(), capsules, target=1, values=(-0.5, 0.5))
    assert out.shape == (3, 2, 2, 3)
    torch.testing.assert_close(out[..., 1, :].norm(dim=-1), torch.full((3, 2), 0.5))
    assert (out[..., 0, :] == 0).all()
    # dimension 2 set to -0.5: (0.3, 0, -0.5) rescaled to length 0.5
    expected = torch.tensor([0.3, 0.0, -0.5]) * 0.5 / math.sqrt(0.34)
    torch.testing.assert_close(out[2, 0, 1], expected)
    with pytest.raises(ValueError, match="one image"):
        direction_sweep(_EchoDecoder(), capsules[None], target=0)


def _capsnet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("capsules", 3, "ours", **TINY).eval()


def test_one_ascent_step_increases_the_capsule_magnitude() -> None:
    model = _capsnet()
    ramp = torch.linspace(0.2, 0.8, 32)
    rows, columns = ramp.view(32, 1).expand(32, 32), ramp.view(1, 32).expand(32, 32)
    images = torch.stack([rows, columns, 1 - rows]).unsqueeze(1)  # smooth: blur keeps them
    objective = capsule_objective(model, capsule_type=5, y=1, x=0)
    plain = Ascent(steps=1, step_size=0.002, blur_sigma=0.0, jitter=0)
    changed, trace = activation_maximisation(objective, images, plain)
    assert trace.shape == (2, 3)
    assert (trace[1] > trace[0]).all()
    assert changed.shape == images.shape and (changed >= 0).all() and (changed <= 1).all()
    regularised = Ascent(steps=15, step_size=0.01, blur_sigma=0.5, jitter=1)
    _, trace = activation_maximisation(
        objective, images, regularised, torch.Generator().manual_seed(0)
    )
    assert (trace[-1] > trace[0]).all()


def test_ascent_on_a_conv_unit_and_jitter_is_undone() -> None:
    torch.manual_seed(0)
    cnn = build_model("cnn", 3, "ours", **TINY).eval()
    images = torch.full((1, 1, 32, 32), 0.5)
    units = cnn.conv_units(images)[:, :, 1, 1]
    channel = most_active(units)
    assert units[0, channel] == units.max()
    _, trace = activation_maximisation(
        conv_objective(cnn, channel, 1, 1), images, Ascent(steps=5, blur_sigma=0.0, jitter=0)
    )
    assert trace[-1, 0] > trace[0, 0]
    # an objective on one pixel: without jitter only that pixel changes; with jitter the
    # objective sees shifted images, so the changes stay within the jitter of that pixel
    pixel = lambda x: x[:, 0, 3, 4]  # noqa: E731
    start = torch.full((1, 1, 8, 8), 0.5)
    still, _ = activation_maximisation(pixel, start, Ascent(steps=3, blur_sigma=0.0, jitter=0))
    assert (still != start)[0, 0].nonzero().tolist() == [[3, 4]]
    moved, _ = activation_maximisation(
        pixel, start, Ascent(steps=6, blur_sigma=0.0, jitter=2), torch.Generator().manual_seed(0)
    )
    changed = (moved != start)[0, 0].nonzero()
    assert len(changed) > 1 and ((changed - torch.tensor([3, 4])).abs() <= 2).all()


def test_primary_cosine_is_one_for_identical_images() -> None:
    model = _capsnet()
    images = torch.rand(2, 1, 32, 32)
    np.testing.assert_allclose(primary_cosine(model, images, images, 3, 0, 1), 1.0, atol=1e-6)
    other = torch.rand(2, 1, 32, 32)
    assert (np.abs(primary_cosine(model, images, other, 3, 0, 1)) <= 1 + 1e-6).all()


def test_ascent_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="step_size > 0"):
        Ascent(step_size=0)


def test_confident_pairs() -> None:
    subjects = np.array(["a", "a", "a", "b", "b", "c"])
    labels = np.array([0, 1, 1, 0, 1, 0])
    correct = np.array([True, True, True, True, False, True])
    confidence = np.array([0.9, 0.6, 0.8, 0.7, 0.9, 0.9])
    # a: class 0 -> 0, class 1 -> the more confident of 1 and 2 (2); b's class 1 is wrong
    assert confident_pairs(subjects, labels, correct, confidence, (0, 1)) == [(0, 2)]


def test_magnitude_intensity_correlation() -> None:
    lengths = np.array([[0.1, 0.9, 0.5], [0.2, 0.8, 0.5], [0.3, 0.7, 0.5], [0.4, 0.6, 0.5]])
    intensity = np.array([[0, 0, 1], [1, 1, 2], [2, 2, math.nan], [3, 3, 4]], dtype=float)
    table = magnitude_intensity_correlation(lengths, intensity, ["AU1", "AU2", "AU4"])
    assert table.loc["AU1", "rho"] == pytest.approx(1.0)
    assert table.loc["AU2", "rho"] == pytest.approx(-1.0)
    assert math.isnan(table.loc["AU4", "rho"]) and table.loc["AU4", "n"] == 3  # constant
    present = magnitude_intensity_correlation(lengths, intensity, ["a", "b", "c"], True)
    assert present["n"].tolist() == [3, 3, 3]
    assert plot_correlations(table).axes[0].get_ylabel() == "Spearman rho"
    with pytest.raises(ValueError, match="must agree"):
        magnitude_intensity_correlation(lengths, intensity, ["AU1"])


def test_grid_position_and_change_consistency() -> None:
    assert grid_position((6, 6), 0.8, 0.5) == (4, 3)
    assert grid_position((3, 3), 1.0, 0.0) == (2, 0)
    with pytest.raises(ValueError, match="fractions"):
        grid_position((3, 3), 1.2, 0.5)
    before = torch.zeros(3, 1, 2, 2)
    same = before + torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert change_consistency(before, same) == pytest.approx(1.0)
    after = before.clone()
    after[0, 0, 0, 0], after[1, 0, 0, 1], after[2, 0, 1, 0] = 1.0, 1.0, 1.0
    assert change_consistency(before, after) == pytest.approx(0.0)  # orthogonal changes
    with pytest.raises(ValueError, match="two images"):
        change_consistency(before[:1], same[:1])


def test_expression_intensity_uses_the_prototype_aus() -> None:
    names = ["AU1", "AU6", "AU9", "AU10", "AU12"]
    aus = np.array([[4.0, 2.0, 0, 0, 3.0], [0, 0, 0, 2.5, 0], [1.0, 0, 0, 0, 0]])
    classes = ["happiness", "disgust", "neutral"]
    intensity = expression_intensity(aus, np.array([0, 1, 2]), classes, names)
    # happiness: max(AU6, AU12) = 3 (AU1 is not in its prototype); disgust: AU10 (its
    # SynthFACS alternative to AU9); neutral has no prototype AU
    assert intensity[:2].tolist() == [3.0, 2.5] and math.isnan(intensity[2])
