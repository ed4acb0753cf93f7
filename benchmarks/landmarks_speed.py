"""Landmark throughput per backend on SynthFACS 48 x 48 faces, one image at a time.

    .venv/bin/python benchmarks/landmarks_speed.py [--images 200] [--upsample-to 192]

Prints images per second (best of three runs, models loaded beforehand) and the normalised
mean error against SynthFACS' exact landmarks. ``face_alignment`` runs only when its
2DFAN-4 weights are already in the torch hub cache (nothing is downloaded); otherwise the
script says so. ``given`` only reads ``FaceData.landmarks`` and is not timed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time

import cv2
import numpy as np

from fernb.data.synthetic import SynthConfig, generate
from fernb.face.landmarks import detect_landmarks, fan_weights_path, normalised_mean_error


def benchmark(images: np.ndarray, truth: np.ndarray, backend: str, **options) -> str:
    """One report line: best images/s of three runs, detection rate and NME."""
    detect_landmarks(images[:1], backend, **options)  # loads the models
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        found = detect_landmarks(images, backend, **options)
        best = max(best, len(images) / (time.perf_counter() - start))
    error = normalised_mean_error(found.points, truth)
    return (
        f"{backend:>14} {options}: {best:7.1f} images/s, face detected in "
        f"{found.detected.mean():.0%}, NME mean {error.mean():.3f} (median {np.median(error):.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--upsample-to", type=int, default=192)
    parser.add_argument("--difficulty", type=float, default=0.5)
    parser.add_argument("--device", default="cpu", help="torch device of FAN")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    config = SynthConfig(n_subjects=max(1, args.images // 8), samples_per_subject=8,
                         difficulty=args.difficulty)  # fmt: skip
    data = generate(config)
    print(f"SynthFACS 48x48, difficulty {args.difficulty}, {len(data)} images")
    print(benchmark(data.images, data.landmarks, "dlib", upsample_to=args.upsample_to))
    if fan_weights_path().is_file():
        options = {"upsample_to": args.upsample_to, "device": args.device}
        print(benchmark(data.images, data.landmarks, "face_alignment", **options))
    else:
        print(f"face_alignment: skipped, its weights are not at {fan_weights_path()}")


if __name__ == "__main__":
    main()
