"""What capsules encode: reconstruction sweeps, activation maximisation, magnitude vs intensity.

Rashid & Lee, Sec. 4.3-4.4, analyse a trained capsule network in three ways, all here:

- :func:`magnitude_sweep`: rescale the ground-truth class capsules (every present AU, or
  the expression's capsule) to lengths 0.1 ... 0.9 and decode them (their Fig. 1, Fig. 2).
- :func:`direction_sweep`: set one dimension of the capsule to values in [-0.5, 0.5],
  restore the capsule's length and decode (Fig. 3).
- :func:`activation_maximisation`: gradient ascent on the input image for the magnitude
  of one primary capsule at one position (or one convolution unit, the CNN comparison),
  with Gaussian blur and random jitter between the steps (Fig. 4-6), and
  :func:`primary_cosine`, the cosine similarity of the capsule vectors of two images.

Beyond the paper, :func:`magnitude_intensity_correlation` measures the claim that
"capsule magnitude is correlated with action unit or emotion intensity" where the
intensity is known (SynthFACS): Spearman's rank correlation per AU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy import stats
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from fernb.face.facs import PROTOTYPES

__all__ = [
    "Ascent",
    "activation_maximisation",
    "capsule_objective",
    "change_consistency",
    "confident_pairs",
    "conv_objective",
    "direction_sweep",
    "expression_intensity",
    "grid_position",
    "magnitude_intensity_correlation",
    "magnitude_sweep",
    "most_active",
    "plot_correlations",
    "primary_cosine",
    "set_dimension",
    "with_length",
]

#: Magnitudes of the paper's sweep (Fig. 1): 0.1 to 0.9 in steps of 0.1.
MAGNITUDES = tuple(np.round(np.arange(1, 10) / 10, 1))


def _selection(capsules: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(N, C) 0/1 mask of the capsules to keep, from class indices (N,) or a mask (N, C)."""
    keep = torch.as_tensor(keep, device=capsules.device)
    if keep.dim() == 1:
        keep = torch.nn.functional.one_hot(keep.long(), capsules.shape[1])
    if keep.shape != capsules.shape[:2]:
        raise ValueError(
            f"keep must be class indices (N,) or a mask {tuple(capsules.shape[:2])}, "
            f"got {tuple(keep.shape)}"
        )
    return keep.to(capsules.dtype)


def with_length(capsules: torch.Tensor, length: float) -> torch.Tensor:
    """Capsules (..., D) rescaled to ``length``, direction kept (v |v|^-1 length)."""
    norms = capsules.norm(dim=-1, keepdim=True)
    return capsules / norms.clamp_min(torch.finfo(capsules.dtype).tiny) * length


def set_dimension(capsule: torch.Tensor, dim: int, value: float) -> torch.Tensor:
    """``capsule`` (..., D) with coordinate ``dim`` set to ``value``, then rescaled to the
    capsule's original length (Rashid & Lee, Sec. 4.3, "Direction")."""
    changed = capsule.clone()
    changed[..., dim] = value
    return with_length(changed, 1.0) * capsule.norm(dim=-1, keepdim=True)


@torch.no_grad()
def magnitude_sweep(
    model: nn.Module,
    capsules: torch.Tensor,
    keep: torch.Tensor,
    magnitudes: Sequence[float] = MAGNITUDES,
) -> torch.Tensor:
    """Decode class capsules whose kept capsules are rescaled to each magnitude.

    Args:
        model: a capsule network with ``decode(capsules)`` (:class:`AUCapsNet`).
        capsules: class capsules (N, C, D) of N images.
        keep: the ground-truth classes, indices (N,) or a 0/1 mask (N, C) (every present
            AU); the other capsules are zeroed, as in training.
        magnitudes: the lengths to give the kept capsules.

    Returns:
        Reconstructions (N, len(magnitudes), channels, H, W).
    """
    mask = _selection(capsules, keep).unsqueeze(-1)
    images = [model.decode(with_length(capsules, m) * mask) for m in magnitudes]
    return torch.stack(images, dim=1)


@torch.no_grad()
def direction_sweep(
    model: nn.Module,
    capsules: torch.Tensor,
    target: int,
    values: Sequence[float] = (-0.5, -0.25, 0.0, 0.25, 0.5),
    dims: Sequence[int] | None = None,
) -> torch.Tensor:
    """Decode one image's capsule ``target`` with each dimension set to each value.

    Args:
        model: a capsule network with ``decode``.
        capsules: the class capsules of one image (C, D).
        target: the class whose capsule is changed (the others are zeroed: right for an
            expression network, whose decoder saw one capsule at a time; an AU network's
            decoder was trained with every present AU's capsule, so a lone capsule is off
            its training distribution).
        values: the values each dimension takes (the paper: -0.5 to 0.5).
        dims: the dimensions to sweep (default all D).

    Returns:
        Reconstructions (len(dims), len(values), channels, H, W).
    """
    if capsules.dim() != 2:
        raise ValueError(f"capsules must be one image's (C, D), got {tuple(capsules.shape)}")
    dims = range(capsules.shape[1]) if dims is None else dims
    rows = []
    for dim in dims:
        changed = torch.stack([set_dimension(capsules[target], dim, v) for v in values])
        batch = torch.zeros(len(values), *capsules.shape, dtype=capsules.dtype)
        batch[:, target] = changed
        rows.append(model.decode(batch.to(capsules.device)))
    return torch.stack(rows)


Objective = Callable[[torch.Tensor], torch.Tensor]


def capsule_objective(model: nn.Module, capsule_type: int, y: int, x: int) -> Objective:
    """Images -> the length of primary capsule ``capsule_type`` at grid position (y, x)."""
    return lambda images: model.primary_capsules(images)[:, capsule_type, y, x].norm(dim=-1)


def conv_objective(model: nn.Module, channel: int, y: int, x: int) -> Objective:
    """Images -> the post-ReLU activation of conv unit ``channel`` at (y, x) (the CNN twin)."""
    return lambda images: model.conv_units(images)[:, channel, y, x]


@torch.no_grad()
def most_active(units: torch.Tensor) -> int:
    """The unit with the largest mean activation over images: ``units`` is (N, U), e.g.
    primary-capsule lengths or conv activations at one position."""
    return int(units.mean(dim=0).argmax())


@dataclass(frozen=True)
class Ascent:
    """Settings of :func:`activation_maximisation`.

    Attributes:
        steps: gradient-ascent steps.
        step_size: each step adds ``step_size * g / mean|g|`` to the image (the gradient
            normalised per image, as in DeepDream-style visualisation, Olah et al. 2017).
        blur_sigma: Gaussian blur (pixels) applied after each step; 0 switches it off.
        jitter: the image is shifted by a random offset in [-jitter, jitter] pixels (per
            axis, wrapping around) before each gradient is computed, and back after.
    """

    steps: int = 40
    step_size: float = 0.004
    blur_sigma: float = 0.5
    jitter: int = 2

    def __post_init__(self) -> None:
        if self.steps < 1 or self.step_size <= 0 or self.blur_sigma < 0 or self.jitter < 0:
            raise ValueError(
                "Ascent needs steps >= 1, step_size > 0, blur_sigma >= 0 and jitter >= 0, "
                f"got {self}"
            )


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma == 0:
        return images
    kernel = 2 * int(np.ceil(3 * sigma)) + 1
    return gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def activation_maximisation(
    objective: Objective,
    images: torch.Tensor,
    ascent: Ascent | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """Change ``images`` by gradient ascent on ``objective`` (one value per image).

    Each step: shift the images by a random jitter, take the gradient of the objective
    with respect to the pixels, shift it back, add ``step_size * g / mean|g|``, blur, and
    clip to [0, 1] (Rashid & Lee, Sec. 4.4: "gaussian blurring and random jittering
    between gradient ascent iterations as regularization").

    Returns:
        The changed images (N, C, H, W) and the objective before each step and after the
        last, (steps + 1, N).
    """
    ascent = ascent or Ascent()
    current = images.detach().clone().float()
    trace = []
    for _ in range(ascent.steps):
        shift = torch.randint(-ascent.jitter, ascent.jitter + 1, (2,), generator=generator)
        dy, dx = int(shift[0]), int(shift[1])
        shifted = torch.roll(current, (dy, dx), dims=(2, 3)).requires_grad_(True)
        values = objective(shifted)
        (gradient,) = torch.autograd.grad(values.sum(), shifted)
        gradient = torch.roll(gradient, (-dy, -dx), dims=(2, 3))
        scale = gradient.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        trace.append(values.detach().cpu().numpy())
        current = _blur(current + ascent.step_size * gradient / scale, ascent.blur_sigma)
        current = current.clamp(0.0, 1.0).detach()
    with torch.no_grad():
        trace.append(objective(current).cpu().numpy())
    return current, np.stack(trace)


@torch.no_grad()
def primary_cosine(
    model: nn.Module, first: torch.Tensor, second: torch.Tensor, capsule_type: int, y: int, x: int
) -> np.ndarray:
    """Cosine similarity of primary capsule ``capsule_type`` at (y, x) between image pairs.

    ``first`` and ``second`` are (N, C, H, W) images paired by position; returns (N,).
    Rashid & Lee compare it before and after activation maximisation (Fig. 4, Fig. 6).
    """
    u = model.primary_capsules(first)[:, capsule_type, y, x]
    w = model.primary_capsules(second)[:, capsule_type, y, x]
    return torch.nn.functional.cosine_similarity(u, w, dim=-1).cpu().numpy()


def confident_pairs(
    subjects: np.ndarray,
    labels: np.ndarray,
    correct: np.ndarray,
    confidence: np.ndarray,
    classes: tuple[int, int],
) -> list[tuple[int, int]]:
    """Per subject, the most confident correctly recognised image of each of two classes.

    The paper's selection (Sec. 4.4): images whose labels are all recognised correctly,
    with the highest confidence, per test subject; pairs of one person with two different
    expressions factor identity out of the comparison. Returns (i, j) positions, one pair
    per subject that has both, in subject order.
    """
    pairs = []
    for subject in np.unique(subjects):
        best = []
        for label in classes:
            candidates = np.flatnonzero((subjects == subject) & (labels == label) & correct)
            if len(candidates) == 0:
                break
            best.append(int(candidates[np.argmax(confidence[candidates])]))
        if len(best) == 2:
            pairs.append((best[0], best[1]))
    return pairs


def grid_position(grid: tuple[int, int], fy: float, fx: float) -> tuple[int, int]:
    """The (y, x) cell of a ``grid`` (rows, columns) at fractions (fy, fx) of its height and
    width, e.g. (0.8, 0.5) for the mouth and (0.25, 0.5) for the brows of an aligned face."""
    if not (0 <= fy <= 1 and 0 <= fx <= 1):
        raise ValueError(f"fractions must be in [0, 1], got ({fy}, {fx})")
    return min(int(fy * grid[0]), grid[0] - 1), min(int(fx * grid[1]), grid[1] - 1)


def change_consistency(before: torch.Tensor, after: torch.Tensor) -> float:
    """Mean cosine similarity, over pairs of different images, of their changes after - before.

    Near 1: the ascent paints one and the same pattern into every image (what Rashid & Lee
    see for a convolution unit, Fig. 5); lower: it brings out different deformations in
    different images (what they see for a capsule). Needs at least two images.
    """
    changes = (after - before).flatten(1).double()
    if len(changes) < 2:
        raise ValueError("change_consistency needs at least two images")
    unit = changes / changes.norm(dim=1, keepdim=True).clamp_min(1e-12)
    similarity = unit @ unit.T
    n = len(unit)
    return float((similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1)))


def expression_intensity(
    aus: np.ndarray, labels: np.ndarray, classes: Sequence[str], au_names: Sequence[str]
) -> np.ndarray:
    """The intensity of each image's expression: the largest intensity among the AUs of its
    emotion's EMFACS prototype (:data:`fernb.face.facs.PROTOTYPES`; disgust also AU10, its
    SynthFACS alternative). NaN for neutral images and unlabelled ones."""
    columns = {name: k for k, name in enumerate(au_names)}
    intensity = np.full(len(labels), np.nan)
    for k, label in enumerate(labels):
        if label < 0:
            continue
        emotion = classes[label]
        prototype = [*PROTOTYPES[emotion], *(["AU10"] if emotion == "disgust" else [])]
        present = [columns[au] for au in prototype if au in columns]
        if present:
            intensity[k] = float(np.max(aus[k, present]))
    return intensity


def magnitude_intensity_correlation(
    lengths: np.ndarray, intensities: np.ndarray, names: Sequence[str], present_only: bool = False
) -> pd.DataFrame:
    """Spearman's rho between class-capsule length and true intensity, per class.

    Args:
        lengths: capsule lengths (N, K).
        intensities: the true intensities (N, K), NaN where unknown (left out).
        names: the K class names (e.g. AUs).
        present_only: use only the images where the class is present (intensity > 0),
            i.e. ask whether the length grades the intensity, not only its presence.

    Returns:
        One row per class: ``rho``, ``p`` (two-sided) and ``n``, the images used; rho is
        NaN where either column is constant.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    intensities = np.asarray(intensities, dtype=np.float64)
    if lengths.shape != intensities.shape or lengths.shape[1] != len(names):
        raise ValueError(
            f"lengths {lengths.shape}, intensities {intensities.shape} and {len(names)} "
            "names must agree"
        )
    rows = []
    for k, name in enumerate(names):
        use = ~np.isnan(intensities[:, k])
        if present_only:
            use &= intensities[:, k] > 0
        a, b = lengths[use, k], intensities[use, k]
        if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
            rho, p = np.nan, np.nan
        else:
            rho, p = stats.spearmanr(a, b)
        rows.append({"class": name, "rho": float(rho), "p": float(p), "n": int(use.sum())})
    return pd.DataFrame(rows).set_index("class")


def plot_correlations(table: pd.DataFrame, title: str = "") -> Figure:
    """Bar chart of :func:`magnitude_intensity_correlation`'s rho per class (p < 0.05 dark)."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(table)), 2.8))
    significant = table["p"] < 0.05
    ax.bar(table.index, table["rho"], color=np.where(significant, "tab:blue", "lightsteelblue"))
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(ylabel="Spearman rho", ylim=(-1, 1), title=title)
    ax.tick_params(axis="x", rotation=90)
    return fig
