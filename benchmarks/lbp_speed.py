"""Batched torch LBP against scikit-image looping over the images.

    .venv/bin/python benchmarks/lbp_speed.py [--images 1000] [--size 48] [--device cpu]

Prints the best of three runs in images per second for each variant, on camera-man crops
(``skimage.data.camera()``). scikit-image runs one image at a time on one core; torch
runs the whole batch with its default thread count on ``--device`` (cuda, when present,
synchronised before the clock stops). Both give identical codes (tests/test_lbp.py).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from skimage import data
from skimage.feature import local_binary_pattern

from fernb.face.lbp import Method, lbp

#: fernb method, P, R, and the scikit-image method that matches it (None: no match).
VARIANTS: list[tuple[Method, int, float, str | None]] = [
    ("original", 8, 1.0, None),
    ("circular", 8, 1.0, "default"),
    ("uniform", 8, 1.0, "uniform"),
    ("circular", 16, 2.0, "default"),
    ("uniform", 24, 3.0, "uniform"),
]


def camera_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """n random size x size uint8 crops of the camera-man image."""
    camera = data.camera()
    rng = np.random.default_rng(seed)
    tops = rng.integers(0, camera.shape[0] - size, n)
    lefts = rng.integers(0, camera.shape[1] - size, n)
    return np.stack([camera[t : t + size, x : x + size] for t, x in zip(tops, lefts, strict=True)])


def images_per_second(run: Callable[[], object], n: int, repeats: int = 3) -> float:
    """Best throughput of ``repeats`` calls of ``run`` on n images."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = max(best, n / (time.perf_counter() - start))
    return best


def torch_lbp(batch: torch.Tensor, method: Method, P: int, R: float) -> None:
    """The batch's codes, waiting for the GPU to finish."""
    lbp(batch, method, P, R)
    if batch.is_cuda:
        torch.cuda.synchronize()


def skimage_lbp(images: np.ndarray, P: int, R: float, method: str) -> None:
    """The codes of the images, one at a time."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for image in images:
            local_binary_pattern(image, P, R, method)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    images = camera_crops(args.images, args.size)
    batch = torch.from_numpy(images).to(args.device)
    print(f"{args.images} images {args.size}x{args.size}; torch on {args.device} "
          f"({torch.get_num_threads()} CPU threads), scikit-image on one core")  # fmt: skip
    for method, P, R, skimage_method in VARIANTS:
        torch_lbp(batch, method, P, R)  # warm-up
        fast = images_per_second(partial(torch_lbp, batch, method, P, R), args.images)
        line = f"{method:>8} P={P:2d} R={R:g}: torch {fast:9,.0f} images/s"
        if skimage_method is not None:
            run = partial(skimage_lbp, images, P, R, skimage_method)
            slow = images_per_second(run, args.images)
            line += f", scikit-image {slow:9,.0f} images/s ({fast / slow:.1f}x)"
        print(line)


if __name__ == "__main__":
    main()
