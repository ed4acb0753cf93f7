"""Vector capsules with dynamic routing, their losses and their reconstruction decoders.

A capsule is a vector whose length is the probability that an entity is present and whose
direction describes it (Sabour et al., 2017). The pieces here build the capsule heads of
three papers of the book: E2-Capsnet (Cao et al.), AU capsules (Rashid & Lee) and
Capsule-LSTM (Liu et al.):

- :func:`squash`, :func:`dynamic_routing` (routing by agreement, Procedure 1),
- :class:`PrimaryCapsules` (a convolution cut into capsules), :class:`RoutingCapsules`
  (fully connected capsules, u_hat_{j|i} = W_ij u_i, then routing),
- :func:`margin_loss` (optionally class-weighted, :func:`inverse_frequency_weights`),
- :func:`mask_capsules`, the decoders :class:`FCDecoder`, :class:`FCUpsampleDecoder`,
  :class:`DeconvDecoder` and :func:`reconstruction_loss`.

Public capsule codes differ from the paper in three places, each exposed as an argument
(REFERENCES.md A1, A2, A6): the routing softmax axis (``softmax_axis``), whether gradients
flow through the routing iterations (``detach_routing``) and how the reconstruction error
is reduced (``reduction`` and ``weight`` of :func:`reconstruction_loss`). The defaults
follow Sabour et al.

References
----------
.. [1] S. Sabour, N. Frosst, G. E. Hinton, "Dynamic routing between capsules", NeurIPS
       2017, arXiv:1710.09829.
.. [2] M. Rashid, Y. J. Lee, "Facial action unit detection with capsules" (AU capsules).
.. [3] S. Cao, Y. Yao, G. An, "E2-Capsule neural networks for facial expression
       recognition using AU-aware attention" (E2-Capsnet).
.. [4] S. Liu et al., "An optimized Capsule-LSTM model for facial expression recognition
       with video sequences", arXiv:2106.07564.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import nn

__all__ = [
    "DeconvDecoder",
    "FCDecoder",
    "FCUpsampleDecoder",
    "PrimaryCapsules",
    "RoutingCapsules",
    "dynamic_routing",
    "inverse_frequency_weights",
    "margin_loss",
    "mask_capsules",
    "reconstruction_loss",
    "squash",
]

SoftmaxAxis = Literal["paper", "input"]
MaskMode = Literal["target", "predicted", "present"]
Reduction = Literal["sum", "mean"]

_SOFTMAX_DIM: dict[str, int] = {"paper": 2, "input": 1}  # axes of the (batch, n_in, n_out) logits


def squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shrink vectors to a length in [0, 1) and keep their direction.

    v = |s|^2 / (1 + |s|^2) * s / |s|  (Sabour et al. [1]_, Eq. 1), computed as
    s |s| / (1 + |s|^2) with |s| = sqrt(max(|s|^2, tiny)): 0 at s = 0, with a finite
    gradient there (no NaN).

    Args:
        s: vectors along ``dim``.
        dim: the axis that holds the capsule dimensions.
    """
    squared = s.pow(2).sum(dim=dim, keepdim=True)
    norm = squared.clamp_min(torch.finfo(s.dtype).tiny).sqrt()
    return s * (norm / (1 + squared))


def _route(couplings: torch.Tensor, u_hat: torch.Tensor) -> torch.Tensor:
    """v_j = squash(sum_i c_ij u_hat_{j|i}) for couplings (b, i, j) and predictions (b, i, j, d)."""
    return squash(torch.einsum("bij,bijd->bjd", couplings, u_hat))


def dynamic_routing(
    u_hat: torch.Tensor,
    iterations: int = 3,
    softmax_axis: SoftmaxAxis = "paper",
    detach_routing: bool = False,
    return_couplings: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Routing by agreement (Sabour et al. [1]_, Procedure 1), vectorised over capsules.

    With logits b_ij = 0 at the start, each iteration computes c = softmax(b),
    s_j = sum_i c_ij u_hat_{j|i}, v_j = squash(s_j), then b_ij += u_hat_{j|i} . v_j.

    ``softmax_axis="paper"`` normalises c over the parent capsules j (each input capsule
    shares itself among the parents). ``"input"`` normalises over the input capsules i
    (each parent takes a weighted mean of its predictions): the axis of the Gram-AI code
    that E2-Capsnet's and Rashid & Lee's releases inherit (REFERENCES.md A1, A2, A6).

    Gradients: Procedure 1, the authors' TensorFlow release (Sarasra/models,
    research/capsules) and the Gram-AI lineage backpropagate through every iteration, the
    routing logits included (``detach_routing=False``). ``detach_routing=True`` does as
    XifengGuo/CapsNet-Pytorch: the iterations before the last use u_hat detached, so the
    couplings are constants for backpropagation and only the last weighted sum carries
    gradient to u_hat.

    Args:
        u_hat: prediction vectors u_hat_{j|i}, shape (batch, n_in, n_out, d_out).
        iterations: routing iterations r >= 1 (1: uniform couplings, no routing).
        softmax_axis: ``"paper"`` (over n_out) or ``"input"`` (over n_in).
        detach_routing: stop gradients through the routing logits (see above).
        return_couplings: also return the couplings c of the last iteration.

    Returns:
        v of shape (batch, n_out, d_out); with ``return_couplings``, (v, c) with c of shape
        (batch, n_in, n_out).
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if softmax_axis not in _SOFTMAX_DIM:
        raise ValueError(f"softmax_axis must be 'paper' or 'input', got {softmax_axis!r}")
    if u_hat.dim() != 4:
        raise ValueError(f"u_hat must be (batch, n_in, n_out, d_out), got {tuple(u_hat.shape)}")
    softmax_dim = _SOFTMAX_DIM[softmax_axis]
    routed = u_hat.detach() if detach_routing else u_hat
    logits = u_hat.new_zeros(u_hat.shape[:3])
    for _ in range(iterations - 1):
        v = _route(logits.softmax(dim=softmax_dim), routed)
        logits = logits + torch.einsum("bijd,bjd->bij", routed, v)
    couplings = logits.softmax(dim=softmax_dim)
    v = _route(couplings, u_hat)
    return (v, couplings) if return_couplings else v


class PrimaryCapsules(nn.Module):
    """A convolution whose output channels are cut into squashed capsules.

    The conv2d output (batch, types * dim, H, W) is read as ``capsule_types`` groups of
    ``capsule_dim`` channels; every group at every position is one capsule. Output:
    (batch, capsule_types * H * W, capsule_dim), type-major (capsule index = (t * H + y) * W
    + x). Sabour et al. [1]_: 32 types x 8D, kernel 9, stride 2; E2-Capsnet [3]_: 32 x 8D,
    kernel 2, stride 1 on VGG's 7x7 map; Rashid & Lee [2]_: 32 x 8D, kernel 7, stride 3
    (96x96 model) or kernel 3, stride 2 (VGG model).
    """

    def __init__(
        self,
        in_channels: int,
        capsule_types: int = 32,
        capsule_dim: int = 8,
        kernel_size: int = 9,
        stride: int = 2,
        padding: int = 0,
    ) -> None:
        super().__init__()
        self.capsule_types = capsule_types
        self.capsule_dim = capsule_dim
        self.conv = nn.Conv2d(
            in_channels, capsule_types * capsule_dim, kernel_size, stride=stride, padding=padding
        )

    def num_capsules(self, height: int, width: int) -> int:
        """Number of capsules produced from a (height, width) input map (n_in of the next layer)."""
        (kh, kw), (sh, sw), (ph, pw) = self.conv.kernel_size, self.conv.stride, self.conv.padding
        out_h = (height + 2 * ph - kh) // sh + 1
        out_w = (width + 2 * pw - kw) // sw + 1
        return self.capsule_types * out_h * out_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Capsules (batch, n_capsules, capsule_dim) of feature maps (batch, C, H, W)."""
        maps = self.conv(x)
        batch, _, height, width = maps.shape
        capsules = maps.view(batch, self.capsule_types, self.capsule_dim, height, width)
        return squash(capsules.permute(0, 1, 3, 4, 2).reshape(batch, -1, self.capsule_dim))


class RoutingCapsules(nn.Module):
    """Fully connected capsules: u_hat_{j|i} = W_ij u_i, then :func:`dynamic_routing`.

    ``weight`` holds W of shape (n_in, n_out, d_out, d_in), drawn from N(0, init_std^2)
    (0.01 as in XifengGuo/CapsNet-Pytorch; REFERENCES.md A6: the paper's softmax axis
    trains only with such small weights). With ``shared_positions = P > 1``, each run of P
    consecutive input capsules (the H*W positions of one :class:`PrimaryCapsules` type)
    shares one transform: ``weight`` is (n_in / P, n_out, d_out, d_in) and capsule i uses
    W[i // P], which makes the layer P times smaller. Sabour et al. [1]_ and the papers use
    one W_ij per input capsule (P = 1).
    """

    def __init__(
        self,
        in_capsules: int,
        in_dim: int,
        out_capsules: int,
        out_dim: int,
        iterations: int = 3,
        softmax_axis: SoftmaxAxis = "paper",
        detach_routing: bool = False,
        shared_positions: int = 1,
        init_std: float = 0.01,
    ) -> None:
        super().__init__()
        if shared_positions < 1 or in_capsules % shared_positions:
            raise ValueError(
                f"shared_positions={shared_positions} must divide in_capsules={in_capsules}"
            )
        self.iterations = iterations
        self.softmax_axis = softmax_axis
        self.detach_routing = detach_routing
        self.shared_positions = shared_positions
        shape = (in_capsules // shared_positions, out_capsules, out_dim, in_dim)
        self.weight = nn.Parameter(init_std * torch.randn(shape))

    def predictions(self, u: torch.Tensor) -> torch.Tensor:
        """u_hat_{j|i} = W_ij u_i: (batch, n_in, n_out, d_out) from capsules (batch, n_in, d_in)."""
        batch, n_in, in_dim = u.shape
        grouped = u.reshape(batch, -1, self.shared_positions, in_dim)
        u_hat = torch.einsum("gjdk,bgpk->bgpjd", self.weight, grouped)
        return u_hat.reshape(batch, n_in, *u_hat.shape[-2:])

    def forward(
        self, u: torch.Tensor, return_couplings: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Parent capsules v (batch, n_out, d_out) [and couplings (batch, n_in, n_out)]."""
        return dynamic_routing(
            self.predictions(u),
            self.iterations,
            self.softmax_axis,
            self.detach_routing,
            return_couplings,
        )


def _multi_hot(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(batch, n_classes) indicators T_c of class indices (batch,) or a multi-hot matrix."""
    if targets.dim() == 1:
        return F.one_hot(targets.long(), n_classes)
    if targets.dim() == 2 and targets.shape[1] == n_classes:
        return targets
    raise ValueError(
        f"targets must be class indices (batch,) or multi-hot (batch, {n_classes}), "
        f"got {tuple(targets.shape)}"
    )


def margin_loss(
    lengths: torch.Tensor,
    targets: torch.Tensor,
    m_pos: float = 0.9,
    m_neg: float = 0.1,
    lam: float = 0.5,
    class_weights: ArrayLike | torch.Tensor | None = None,
) -> torch.Tensor:
    """Margin loss on capsule lengths, summed over classes, averaged over the batch.

    L_c = w_c (T_c max(0, m+ - |v_c|)^2 + lam (1 - T_c) max(0, |v_c| - m-)^2)
    (Sabour et al. [1]_, Eq. 4; the class weight w_c multiplies both terms as in Rashid &
    Lee [2]_, Sec. 3; w_c = 1 without ``class_weights``). The released codes of [1]_, [2]_
    and [3]_ also sum over classes and divide by the batch size.

    Args:
        lengths: capsule lengths |v_c|, shape (batch, n_classes) (or whatever class scores
            a model feeds the loss, e.g. E2-Capsnet's softmax of the lengths).
        targets: class indices (batch,) or a multi-hot matrix (batch, n_classes) for
            multi-label action units.
        m_pos, m_neg: the margins m+ and m-.
        lam: down-weighting lambda of absent classes.
        class_weights: w_c, shape (n_classes,), e.g. :func:`inverse_frequency_weights`.
    """
    present = _multi_hot(targets, lengths.shape[-1]).to(lengths.dtype)
    per_class = present * F.relu(m_pos - lengths).pow(2) + lam * (1 - present) * F.relu(
        lengths - m_neg
    ).pow(2)
    if class_weights is not None:
        per_class = per_class * torch.as_tensor(
            class_weights, dtype=lengths.dtype, device=lengths.device
        )
    return per_class.sum(dim=-1).mean()


def inverse_frequency_weights(targets_multi_hot: ArrayLike | torch.Tensor) -> np.ndarray:
    """Class weights w_c proportional to 1 / (frequency of class c), summing to 1.

    w_c = (1 / n_c) / sum_k (1 / n_k), n_c the number of samples where class c is present
    (Rashid & Lee [2]_, Sec. 3: "the inverse of an action unit's frequency in the training
    data, normalized across all classes to sum to one"). Compute it on the training split.

    Args:
        targets_multi_hot: (n_samples, n_classes) presence indicators.

    Raises:
        ValueError: a class never occurs (its weight would be infinite).
    """
    present = np.asarray(targets_multi_hot, dtype=np.float64)
    if present.ndim != 2:
        raise ValueError(f"expected a (n_samples, n_classes) matrix, got shape {present.shape}")
    counts = present.sum(axis=0)
    if (counts == 0).any():
        raise ValueError(f"classes {np.flatnonzero(counts == 0).tolist()} never occur")
    inverse = 1 / counts
    return inverse / inverse.sum()


def mask_capsules(
    v: torch.Tensor,
    targets: torch.Tensor | None = None,
    mode: MaskMode = "target",
    threshold: float = 0.5,
) -> torch.Tensor:
    """Zero every class capsule but the selected ones, the decoder's input.

    Modes: ``"target"`` keeps the ground-truth capsules (class indices, or every present
    class of a multi-hot matrix: Sabour et al. [1]_ and Rashid & Lee [2]_ in training);
    ``"predicted"`` keeps the longest capsule (E2-Capsnet's release, also in training [3]_;
    Capsule-LSTM [4]_); ``"present"`` keeps every capsule longer than ``threshold``
    (multi-label prediction, Rashid & Lee's release at test time).

    Args:
        v: class capsules (batch, n_classes, dim).
        targets: class indices (batch,) or multi-hot (batch, n_classes); mode "target" only.
        mode: which capsules to keep.
        threshold: length above which a capsule counts as present (mode "present").

    Returns:
        v with the other capsules zeroed, same shape.
    """
    if mode == "target":
        if targets is None:
            raise ValueError("mode 'target' needs targets")
        keep = _multi_hot(targets, v.shape[1])
    elif mode == "predicted":
        keep = F.one_hot(v.norm(dim=-1).argmax(dim=1), v.shape[1])
    elif mode == "present":
        keep = v.norm(dim=-1) > threshold
    else:
        raise ValueError(f"mode must be 'target', 'predicted' or 'present', got {mode!r}")
    return v * keep.to(v.dtype).unsqueeze(-1)


def _mlp(in_features: int, hidden: Sequence[int], out_features: int) -> nn.Sequential:
    """Linear-ReLU layers of sizes ``hidden``, then a last linear layer (no activation)."""
    sizes = [in_features, *hidden]
    layers: list[nn.Module] = []
    for size_in, size_out in pairwise(sizes):
        layers += [nn.Linear(size_in, size_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-1], out_features))
    return nn.Sequential(*layers)


class FCDecoder(nn.Module):
    """Fully connected reconstruction: in -> 512 -> 1024 -> C*H*W, ReLU, sigmoid output.

    Sabour et al. [1]_, Fig. 2 (E2-Capsnet [3]_ uses the same decoder for 3x224x224 images).
    The input is the masked class capsules (batch, n_classes, dim), flattened; the output
    is an image (batch, C, H, W) in (0, 1).
    """

    def __init__(
        self,
        in_features: int,
        image_shape: tuple[int, int, int],
        hidden: Sequence[int] = (512, 1024),
        sigmoid: bool = True,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.layers = _mlp(in_features, hidden, int(np.prod(image_shape)))
        self.sigmoid = sigmoid

    def forward(self, capsules: torch.Tensor) -> torch.Tensor:
        """Images (batch, C, H, W) from masked capsules (batch, ...)."""
        pixels = self.layers(capsules.flatten(1))
        pixels = pixels.sigmoid() if self.sigmoid else pixels
        return pixels.view(-1, *self.image_shape)


class FCUpsampleDecoder(nn.Module):
    """Fully connected layers to a small image, then bilinear upsampling (Rashid & Lee [2]_).

    Sec. 3.1 of [2]_: the 96x96 model uses layers of 512, 1024 and 1024 = 1x32x32, upsampled
    to 96x96 (the defaults); the VGG model uses 512, 1024 and 9408 = 3x56x56, upsampled to
    224x224 (``channels=3, base_size=56, out_size=224``). ``sigmoid=False`` gives the
    linear output of the authors' release, which reconstructs mean-normalised images.
    """

    def __init__(
        self,
        in_features: int,
        out_size: int = 96,
        channels: int = 1,
        base_size: int = 32,
        hidden: Sequence[int] = (512, 1024),
        sigmoid: bool = True,
    ) -> None:
        super().__init__()
        self.out_size = out_size
        self.base_shape = (channels, base_size, base_size)
        self.layers = _mlp(in_features, hidden, channels * base_size**2)
        self.sigmoid = sigmoid

    def forward(self, capsules: torch.Tensor) -> torch.Tensor:
        """Images (batch, channels, out_size, out_size) from masked capsules (batch, ...)."""
        small = self.layers(capsules.flatten(1)).view(-1, *self.base_shape)
        small = small.sigmoid() if self.sigmoid else small
        return F.interpolate(small, size=self.out_size, mode="bilinear", align_corners=False)


class DeconvDecoder(nn.Module):
    """A linear map to a small feature map, then stride-2 3x3 transposed convolutions.

    Capsule-LSTM [4]_ (Sec. 3.1) reconstructs its 48x48 grey frames with "the
    deconvolutional layer network" of FERCaps (its ref. [20]) built from small kernels in
    series, and gives no layer sizes. The defaults are therefore fernb's choice: capsules ->
    64x6x6 -> 32x12x12 -> 16x24x24 -> 1x48x48, ReLU between layers, sigmoid output. Each
    transposed convolution (kernel 3, stride 2, padding 1, output padding 1) doubles the
    side, so ``base_size * 2**len(channels)`` must equal ``out_size``.
    """

    def __init__(
        self,
        in_features: int,
        out_size: int = 48,
        out_channels: int = 1,
        base_size: int = 6,
        channels: Sequence[int] = (64, 32, 16),
        hidden: Sequence[int] = (),
        sigmoid: bool = True,
    ) -> None:
        super().__init__()
        if base_size * 2 ** len(channels) != out_size:
            raise ValueError(
                f"base_size {base_size} doubled {len(channels)} times is not out_size {out_size}"
            )
        self.base_shape = (channels[0], base_size, base_size)
        self.project = _mlp(in_features, hidden, channels[0] * base_size**2)
        widths = [*channels, out_channels]
        layers: list[nn.Module] = []
        for width_in, width_out in pairwise(widths):
            layers += [
                nn.ReLU(inplace=True),
                nn.ConvTranspose2d(width_in, width_out, 3, stride=2, padding=1, output_padding=1),
            ]
        self.deconv = nn.Sequential(*layers)
        self.sigmoid = sigmoid

    def forward(self, capsules: torch.Tensor) -> torch.Tensor:
        """Images (batch, out_channels, out_size, out_size) from masked capsules (batch, ...)."""
        images = self.deconv(self.project(capsules.flatten(1)).view(-1, *self.base_shape))
        return images.sigmoid() if self.sigmoid else images


def reconstruction_loss(
    recon: torch.Tensor,
    images: torch.Tensor,
    reduction: Reduction = "sum",
    weight: float = 0.0005,
) -> torch.Tensor:
    """Weighted squared reconstruction error, averaged over the batch.

    ``"sum"``: weight * mean_n sum_pixels (recon - image)^2, Sabour et al. [1]_ (weight
    0.0005; XifengGuo's 0.392 x pixel mean on 784 pixels is the same) and Rashid & Lee's
    release (weight 1e-5). ``"mean"``: weight * mean over batch and pixels, i.e. the "sum"
    value divided by the pixels per image C*H*W: Capsule-LSTM [4]_ Eq. 3.3 (weight 0.0005)
    and E2-Capsnet's release (0.0005 x mean, then divided once more by the batch size:
    weight = 0.0005 / batch_size), ~150 000 times weaker than "sum" on 3x224x224 images
    (REFERENCES.md A6).

    Args:
        recon: reconstructions, same shape as ``images`` (batch, ...).
        images: target images.
        reduction: ``"sum"`` or ``"mean"`` over the pixels of one image.
        weight: factor of the loss.
    """
    if recon.shape != images.shape:
        raise ValueError(f"shapes differ: {tuple(recon.shape)} vs {tuple(images.shape)}")
    squared = (recon - images).pow(2).flatten(1)
    if reduction == "sum":
        per_image = squared.sum(dim=1)
    elif reduction == "mean":
        per_image = squared.mean(dim=1)
    else:
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    return weight * per_image.mean()
