"""SynthFACS throughput on one core (the data issue's goal: >= 1,000 48 x 48 images/s).

    .venv/bin/python benchmarks/synthetic_throughput.py [--size 48] [--images 2000]

Prints the best of three runs of ``fernb.data.synthetic.generate`` in images per second,
with OpenCV and the BLAS limited to one thread. Rendering cost grows with the pixel count,
so 224 x 224 is several times slower than 48 x 48.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time

import cv2

from fernb.data.synthetic import SynthConfig, generate


def images_per_second(config: SynthConfig, repeats: int = 3) -> float:
    """Best throughput of ``repeats`` runs of :func:`generate` on ``config``."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        data = generate(config)
        best = max(best, len(data) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--difficulty", type=float, default=0.5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    config = SynthConfig(
        size=args.size, n_subjects=args.images // 40, samples_per_subject=40,
        difficulty=args.difficulty,
    )  # fmt: skip
    rate = images_per_second(config)
    print(f"SynthFACS {args.size}x{args.size}, difficulty {args.difficulty}: {rate:,.0f} images/s")


if __name__ == "__main__":
    main()
