"""Training-speed arithmetic: FLOPs per image, peak rates, the FER2013 schedule estimate.

``benchmarks/train_speed.py`` measures images per second; this module turns them into what
the book reports (the performance page reads the JSON files it writes with
:func:`measurement_table`):

- FLOPs are those of matrix multiplications and convolutions as
  :class:`torch.utils.flop_counter.FlopCounterMode` counts them (a multiply-add is 2 FLOPs;
  element-wise work, normalisation and pooling are not counted). A training step is taken
  as :data:`TRAIN_PASSES` = 3 forward passes (forward, and a backward pass of about twice
  the forward's work), the usual convention.
- Peaks are the dense (no sparsity) bf16 tensor-core rates of the vendor's data sheets
  (:data:`PEAK_BF16_TFLOPS`).
- A :class:`Schedule` counts the training images and ten-crop evaluations of a full run;
  :meth:`Schedule.estimate` turns measured rates into seconds, beside the book's goal
  (:data:`GOAL_SECONDS`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "FER2013_SCHEDULES",
    "GOAL_SECONDS",
    "PEAK_BF16_TFLOPS",
    "TRAIN_PASSES",
    "Schedule",
    "achieved_tflops",
    "format_rate",
    "forward_flops",
    "measurement_table",
    "peak_bf16_tflops",
    "peak_fraction",
    "read_measurements",
]

#: Forward-pass equivalents of one training step (forward + backward ~ 2 x forward).
TRAIN_PASSES = 3

#: Dense bf16 tensor-core peak, TFLOP/s, by a part of ``torch.cuda.get_device_name()``.
#: The first part found in the name wins, so the more specific names come first; the SXM
#: H100 is called ``"NVIDIA H100 80GB HBM3"``. NVL and PCIe values: the data sheets' rates
#: with sparsity, halved.
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "H200 NVL": 835.0,
    "H200": 989.0,
    "A100": 312.0,
}

#: The book's goal: a full 250-epoch FER2013 VGG19 schedule, ten-crop evaluation included,
#: in under 5 minutes on one H100.
GOAL_SECONDS = 300.0


def peak_bf16_tflops(device_name: str) -> float | None:
    """The dense bf16 peak (TFLOP/s) of a GPU named ``device_name``; None if unknown."""
    name = device_name.lower()
    for part, tflops in PEAK_BF16_TFLOPS.items():
        if part.lower() in name:
            return tflops
    return None


def forward_flops(model: nn.Module, *inputs: torch.Tensor, **kwargs: Any) -> float:
    """FLOPs of one forward pass per image: ``model(*inputs, **kwargs)`` counted by
    :class:`~torch.utils.flop_counter.FlopCounterMode` in eval mode without gradients,
    divided by the batch (the length of the first input). The model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs, **kwargs)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / len(inputs[0])


def achieved_tflops(
    flops_per_forward: float, images_per_second: float, passes: float = TRAIN_PASSES
) -> float:
    """TFLOP/s achieved at ``images_per_second`` when each image costs ``passes`` forwards
    (:data:`TRAIN_PASSES` for training, 1 for inference)."""
    return passes * flops_per_forward * images_per_second / 1e12


def peak_fraction(tflops: float, peak: float | None) -> float | None:
    """``tflops / peak``, or None when the peak is unknown."""
    return None if peak is None else tflops / peak


@dataclass(frozen=True)
class Schedule:
    """The images of a full training run.

    Attributes:
        key: a short name (the JSON key and table column of its estimate).
        name: what the run is, in words.
        epochs: passes over the training images.
        train_images: training images per epoch (one training step each).
        test_images: images evaluated once at the end (ten crops each).
        val_images: images evaluated after every epoch (ten crops each; selection).
    """

    key: str
    name: str
    epochs: int
    train_images: int
    test_images: int
    val_images: int = 0

    def estimate(self, train_rate: float, eval_rate: float) -> dict[str, Any]:
        """Seconds of the run at ``train_rate`` training images/s and ``eval_rate``
        evaluated images/s (each image with its ten crops), beside :data:`GOAL_SECONDS`."""
        train_s = self.epochs * self.train_images / train_rate
        eval_s = (self.epochs * self.val_images + self.test_images) / eval_rate
        total_s = train_s + eval_s
        return {
            "name": self.name,
            "train_s": train_s,
            "eval_s": eval_s,
            "total_s": total_s,
            "goal_s": GOAL_SECONDS,
            "meets_goal": total_s < GOAL_SECONDS,
        }


#: FER2013 (28,709 Training, 3,589 PublicTest, 3,589 PrivateTest images) under the VGG19
#: recipe's 250 epochs: as the goal states it (one ten-crop evaluation of both test sets at
#: the end), and as the feature-attention chapter runs it (ten-crop PublicTest selection
#: after every epoch, PrivateTest at the end).
FER2013_SCHEDULES: tuple[Schedule, ...] = (
    Schedule("goal", "250 epochs, then ten-crop PublicTest + PrivateTest", 250, 28_709, 7_178),
    Schedule(
        "chapter",
        "250 epochs, ten-crop PublicTest after each (selection), then PrivateTest",
        250, 28_709, 3_589, val_images=3_589,
    ),
)  # fmt: skip


def format_rate(images_per_second: float) -> str:
    """A rate for tables and charts: whole numbers from 100 up (``12,345``), else three
    significant digits (``8.39``, ``0.263``)."""
    if images_per_second >= 100:
        return f"{images_per_second:,.0f}"
    return f"{images_per_second:.3g}"


def read_measurements(folder: Path | str) -> list[dict[str, Any]]:
    """The measurements (``train_speed*.json``) in ``folder``, by file name, each with its
    ``file`` name added."""
    return [
        {**json.loads(path.read_text()), "file": path.name}
        for path in sorted(Path(folder).glob("train_speed*.json"))
    ]


def measurement_table(measurements: list[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per measurement, model and pipeline: the device, images/s and their ratio to
    the DataLoader pipeline's, FLOPs, achieved TFLOP/s, the fraction of the bf16 peak and,
    where estimated, the seconds of each FER2013 schedule (``schedule_<key>_s``)."""
    rows = []
    for measurement in measurements:
        for model, result in measurement["models"].items():
            baseline = result["pipelines"]["dataloader"]["images_per_s"]
            for pipeline, run in result["pipelines"].items():
                schedules = run.get("schedules", {})
                rows.append(
                    {
                        "file": measurement.get("file"),
                        "device": measurement["device_name"],
                        "model": model,
                        "pipeline": pipeline,
                        "batch_size": result["batch_size"],
                        "precision": run["precision"],
                        "images_per_s": run["images_per_s"],
                        "ratio": run["images_per_s"] / baseline,
                        "forward_gflops": result["forward_flops_per_image"] / 1e9,
                        "achieved_tflops": run["achieved_tflops"],
                        "fraction_of_peak": run["fraction_of_peak"],
                    }
                    | {f"schedule_{key}_s": value["total_s"] for key, value in schedules.items()}
                )
    table = pd.DataFrame(rows)
    return table.astype({"fraction_of_peak": float}) if rows else table  # None: NaN
