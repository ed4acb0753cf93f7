"""SynthFACS throughput on one core (the data issue's goal: >= 1,000 48 x 48 images/s).

    .venv/bin/python benchmarks/synthetic_throughput.py [--size 48] [--images 2000]
        [--out book/results/benchmarks/synthetic_throughput-cpu.json]

Prints the best of ``--repeats`` runs of ``fernb.data.synthetic.generate`` in images per
second, with OpenCV and the BLAS limited to one thread. Rendering cost grows with the pixel
count, so 224 x 224 is several times slower than 48 x 48. With ``--out`` it also writes the
measurement as JSON (every run's rate, the machine, the commit, and the one-minute load
average when it ended: 1 is the benchmark itself, more is other work that slowed it), which
the SynthFACS page quotes.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2

from fernb.data.synthetic import SynthConfig, generate
from fernb.utils import environment_summary, write_json_atomic


def images_per_second(config: SynthConfig, repeats: int = 3) -> list[float]:
    """The throughput of each of ``repeats`` runs of :func:`generate` on ``config``."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        data = generate(config)
        rates.append(len(data) / (time.perf_counter() - start))
    return rates


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure, print, and write the measurement to ``--out`` if given; return it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--images", type=int, default=2000, help="a multiple of 40")
    parser.add_argument("--difficulty", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the measurement here (JSON)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    config = SynthConfig(
        size=args.size, n_subjects=args.images // 40, samples_per_subject=40,
        difficulty=args.difficulty,
    )  # fmt: skip
    rates = images_per_second(config, args.repeats)
    record = {
        "benchmark": "synthetic_throughput",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment_summary("cpu"),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "images": config.n_subjects * config.samples_per_subject,
        "load_average_1min": os.getloadavg()[0],
        "images_per_s_runs": rates,
        "images_per_s": max(rates),
    }
    print(
        f"SynthFACS {args.size}x{args.size}, difficulty {args.difficulty}: "
        f"{record['images_per_s']:,.0f} images/s (best of {args.repeats})"
    )
    if args.out:
        print(f"written: {write_json_atomic(args.out, record)}")
    return record


if __name__ == "__main__":
    main()
