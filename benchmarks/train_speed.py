"""Training speed: the public FER codes' DataLoader pipeline against fernb's, one run.

    .venv/bin/python benchmarks/train_speed.py [--model both] [--device cuda] [--compile]
        [--data-root data/fer2013] [--out book/results/benchmarks/train_speed-h100.json]

Two pipelines train the same network (the FER2013 VGG19 on 44 x 44 crops; E2-Capsnet at
224 x 224), from the same initial weights, with the same optimiser and batch, on the same
device, for ``--steps`` timed steps after ``--warmup-steps``:

``dataloader``, the common practice of the public FER code (as in WuJie1010's
Facial-Expression-Recognition.Pytorch, the public code closest to the VGG19 recipe): a
``Dataset`` makes a PIL image of each uint8 face and passes it through
``torchvision.transforms`` (VGG19: RandomCrop(44), RandomHorizontalFlip, ToTensor;
E2-Capsnet: the 48 x 48 face resized to 224 by PIL with Resize(224), RandomHorizontalFlip,
ToTensor); a ``DataLoader`` (``--workers`` processes, shuffled, pinned memory on CUDA)
batches them; the model runs in fp32 without channels_last, and the loop reads the loss
every step (``loss.item()``, as those loops do to log it). The faces sit in memory, as in
WuJie1010's HDF5-backed dataset: no JPEG decoding is timed.

``fernb``: :func:`fernb.train.fit` as the chapters call it: the split resident on the
device, batches as index slices, :mod:`fernb.data.augment`'s batched augmentation on the
device (random 44 x 44 crops and flips; flips for E2-Capsnet), bf16 autocast and
channels_last on CUDA (fit trains in fp32 on the CPU), ``torch.compile`` with
``--compile``. The time is that of the training epoch fit reports (its ``time_s`` ends on
a read of the loss sum, so the device has finished), after a warm-up call of fit on the
same model (which also compiles it).

E2-Capsnet's AU attention maps (:func:`fernb.models.e2capsnet.face_maps`: SynthFACS's own
landmarks, dlib on FER2013, cached in ``cache/``) are computed before timing and go with
their faces in both pipelines; the DataLoader pipeline takes them by index and does not
flip them, as the release does. For the VGG19 the ten-crop evaluation is timed as well
(``--eval-images``), and the two rates give an estimate of a full 250-epoch FER2013
schedule against the book's 5-minute goal. FLOPs, peaks and the schedules:
:mod:`fernb.speed`.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from fernb.data import FaceData, load
from fernb.data.augment import Augmentation
from fernb.models import e2capsnet
from fernb.models.feature_attention import (
    CROP,
    FER2013_CLASSES,
    FeatureAttentionNet,
    TenCropTask,
    images_on,
    paper_train_config,
    variant_spec,
)
from fernb.speed import (
    FER2013_SCHEDULES,
    TRAIN_PASSES,
    achieved_tflops,
    format_rate,
    forward_flops,
    measurement_table,
    peak_bf16_tflops,
    peak_fraction,
)
from fernb.train import (
    Batch,
    Task,
    TrainConfig,
    autocast,
    evaluate,
    fit,
    make_optimizer,
    tensors,
)
from fernb.utils import (
    choose_device,
    cpu_name,
    environment_summary,
    seed_everything,
    write_json_atomic,
)

MODELS = ("vgg19", "e2capsnet")
CACHE = Path(__file__).resolve().parents[1] / "cache"
FLOPS_CONVENTION = (
    "matmul and convolution FLOPs of one forward pass per image, counted by torch's "
    f"FlopCounterMode (multiply-add = 2); a training step = {TRAIN_PASSES} forward passes"
)

T = TypeVar("T")


@dataclass(frozen=True)
class Recipe:
    """How both pipelines train one model.

    Attributes:
        batch_size: images per step.
        build: a fresh model (the same initial weights after the same seed).
        task: the loss (and, for the VGG19, the ten-crop evaluation).
        config: fernb's fit settings; its optimiser serves both pipelines.
        augment: fernb's batched augmentation.
        transform: the DataLoader pipeline's PIL transforms.
        split: fernb's split of faces ``index`` (with the maps when given).
        input_size: side of the images the model takes.
        example: extra inputs of one image for the FLOP count (E2-Capsnet's map).
        maps: the model needs AU attention maps.
        ten_crop: the model is evaluated on ten crops (and its schedule estimated).
    """

    batch_size: int
    build: Callable[[], nn.Module]
    task: Task
    config: TrainConfig
    augment: Callable
    transform: Callable[[Image.Image], torch.Tensor]
    split: Callable[[FaceData, np.ndarray, torch.Tensor | None], Batch]
    input_size: int
    example: dict[str, torch.Tensor] = field(default_factory=dict)
    maps: bool = False
    ten_crop: bool = False


def fernb_config(config: TrainConfig, args: argparse.Namespace, batch_size: int) -> TrainConfig:
    """``config`` for one timed epoch: bf16 autocast, channels_last on CUDA, --compile."""
    return replace(
        config,
        epochs=1,
        batch_size=batch_size,
        amp=True,
        channels_last=choose_device(args.device).type == "cuda",
        compile=args.compile,
        seed=args.seed,
        device=args.device,
        progress=False,
    )


def vgg19_recipe(args: argparse.Namespace) -> Recipe:
    """The FER2013 VGG19 baseline: 44 x 44 crops and flips, SGD, ten-crop test."""
    batch_size = args.batch_size or 128
    return Recipe(
        batch_size=batch_size,
        build=lambda: FeatureAttentionNet(
            len(FER2013_CLASSES), variant_spec("vgg19"), width=args.width, in_channels=1
        ),
        task=TenCropTask(),
        config=fernb_config(paper_train_config(1), args, batch_size),
        augment=Augmentation(crop=CROP),
        transform=transforms.Compose(
            [transforms.RandomCrop(CROP), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
        ),
        split=lambda faces, index, maps: tensors(faces, index),
        input_size=CROP,
        ten_crop=True,
    )


def e2capsnet_recipe(args: argparse.Namespace) -> Recipe:
    """E2-Capsnet at 224 x 224 (the paper preset): flips, Adam, margin + reconstruction."""
    preset = replace(e2capsnet.PRESETS["paper"], width=args.width)
    batch_size = args.batch_size or preset.batch_size
    size = preset.input_size
    return Recipe(
        batch_size=batch_size,
        build=lambda: e2capsnet.build_model("e2capsnet", preset, len(FER2013_CLASSES), 1),
        task=e2capsnet.make_task("e2capsnet"),
        config=fernb_config(e2capsnet.train_config(preset), args, batch_size),
        augment=e2capsnet.flip_augmentation(),
        transform=transforms.Compose(
            [transforms.Resize(size), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
        ),
        split=lambda faces, index, maps: e2capsnet.prepare_split(faces, index, size, maps),
        input_size=size,
        example={"maps": torch.ones(1, 1, e2capsnet.MAP_SIZE, e2capsnet.MAP_SIZE)},
        maps=True,
    )


RECIPES: dict[str, Callable[[argparse.Namespace], Recipe]] = {
    "vgg19": vgg19_recipe,
    "e2capsnet": e2capsnet_recipe,
}


class PILFaces(Dataset):
    """Faces served as the public FER codes serve them: each uint8 face becomes a PIL image
    and goes through ``transform``; its label and, if given, its attention map by index."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        transform: Callable[[Image.Image], torch.Tensor],
        maps: torch.Tensor | None = None,
    ) -> None:
        self.images, self.labels, self.transform, self.maps = images, labels, transform, maps

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {
            "image": self.transform(Image.fromarray(self.images[i])),
            "label": torch.tensor(int(self.labels[i])),
        }
        if self.maps is not None:
            item["maps"] = self.maps[i]
        return item


def stack_crops(crops: tuple[Image.Image, ...]) -> torch.Tensor:
    """TenCrop's ten PIL crops as one 10 x C x H x W tensor (the public codes' Lambda)."""
    return torch.stack([transforms.functional.to_tensor(crop) for crop in crops])


def load_faces(data_root: Path | None, synthetic_images: int, seed: int) -> FaceData:
    """FER2013 from ``data_root``, else SynthFACS faces of FER2013's seven classes."""
    if data_root is not None:
        return load("fer2013", data_root)
    people = -(-synthetic_images // len(FER2013_CLASSES))
    return load(
        "synthetic",
        n_subjects=people,
        samples_per_subject=len(FER2013_CLASSES),
        classes=FER2013_CLASSES,
        seed=seed,
    )


def train_and_test_positions(data: FaceData) -> tuple[np.ndarray, np.ndarray]:
    """FER2013's Training and PublicTest + PrivateTest positions; all faces twice without
    an official split."""
    if not (data.split != "").any():
        everything = np.arange(len(data))
        return everything, everything
    tests = np.concatenate([data.indices("val"), data.indices("test")])
    return data.indices("train"), tests


def draw(positions: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``positions`` in random order, each once per pass over them."""
    passes = -(-n // len(positions))
    return np.concatenate([rng.permutation(positions) for _ in range(passes)])[:n]


def synchronize(device: torch.device) -> None:
    """Wait for the device to finish its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(
    batches: Iterator[T], step: Callable[[T], int], warmup: int, device: torch.device
) -> float:
    """Images per second of ``step`` (which returns its image count) over what is left of
    ``batches`` after ``warmup`` steps; the clock runs between two synchronisations."""
    for _ in range(warmup):
        step(next(batches))
    synchronize(device)
    start = time.perf_counter()
    images = sum(step(batch) for batch in batches)
    synchronize(device)
    return images / (time.perf_counter() - start)


def to_device(batch: Batch, device: torch.device) -> Batch:
    """The batch on ``device`` (asynchronous copies from pinned memory)."""
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def dataloader_step(
    model: nn.Module,
    task: Task,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    batch: Batch,
) -> int:
    """One fp32 training step of the public loops, reading the loss as they do to log it."""
    batch = to_device(batch, device)
    loss = task.loss(task.forward(model, batch), batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    loss.item()
    return len(batch["image"])


def ten_crop_step(model: nn.Module, device: torch.device, batch: Batch) -> int:
    """The public codes' ten-crop test step: all crops at once, logits averaged."""
    crops = batch["image"].to(device, non_blocking=True)
    logits = model(crops.flatten(0, 1)).view(*crops.shape[:2], -1).mean(dim=1)
    logits.argmax(dim=1).cpu()  # the predictions, counted on the CPU by those loops
    return len(crops)


def loader(
    dataset: Dataset, batch_size: int, args: argparse.Namespace, shuffle: bool = True
) -> DataLoader:
    """The public codes' DataLoader: ``--workers`` processes, pinned memory on CUDA."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=args.workers,
        pin_memory=choose_device(args.device).type == "cuda",
        drop_last=True,
    )


def fresh_model(recipe: Recipe, seed: int) -> nn.Module:
    """The recipe's model, from the weights every pipeline starts from."""
    seed_everything(seed)
    return recipe.build()


def time_dataloader(
    recipe: Recipe, faces: FaceData, maps: torch.Tensor | None, args: argparse.Namespace
) -> tuple[float, nn.Module]:
    """Training images/s of the DataLoader pipeline, and its model."""
    device = choose_device(args.device)
    model = fresh_model(recipe, args.seed).to(device).train()
    optimizer = make_optimizer(model, recipe.config)
    dataset = PILFaces(faces.images, faces.labels, recipe.transform, maps)
    step = partial(dataloader_step, model, recipe.task, optimizer, device)
    batches = iter(loader(dataset, recipe.batch_size, args))
    return images_per_second(batches, step, args.warmup_steps, device), model


@torch.no_grad()
def time_dataloader_eval(model: nn.Module, faces: FaceData, args: argparse.Namespace) -> float:
    """Ten-crop evaluation images/s of the DataLoader pipeline (fp32), after one batch."""
    device = choose_device(args.device)
    model.eval()
    transform = transforms.Compose([transforms.TenCrop(CROP), stack_crops])
    dataset = PILFaces(faces.images, faces.labels, transform)
    batches = iter(loader(dataset, args.eval_batch_size, args, shuffle=False))
    return images_per_second(batches, partial(ten_crop_step, model, device), 1, device)


def time_fernb(
    recipe: Recipe, faces: FaceData, maps: torch.Tensor | None, args: argparse.Namespace
) -> tuple[float, nn.Module]:
    """Training images/s of fernb's fit over the faces after the warm-up steps' faces
    (trained on first by another call of fit), and the trained model."""
    model = fresh_model(recipe, args.seed)
    warmup = args.warmup_steps * recipe.batch_size
    positions = np.arange(len(faces))
    train = partial(fit, task=recipe.task, config=recipe.config, augment=recipe.augment)
    if warmup:
        train(model, recipe.split(faces, positions[:warmup], maps))
    result = train(model, recipe.split(faces, positions[warmup:], maps))
    return (len(faces) - warmup) / float(result.history["time_s"].iloc[0]), result.model


def time_fernb_eval(
    model: nn.Module, recipe: Recipe, faces: FaceData, args: argparse.Namespace
) -> float:
    """Ten-crop evaluation images/s of fernb's evaluate on device-resident faces, after a
    warm-up on the first batch."""
    device = choose_device(args.device)
    split = images_on(tensors(faces), device)
    first = args.eval_batch_size
    score = partial(
        evaluate, model, task=recipe.task, batch_size=first, device=device, amp=recipe.config.amp
    )
    score({key: value[:first] for key, value in split.items()})
    synchronize(device)
    start = time.perf_counter()
    score({key: value[first:] for key, value in split.items()})  # its scores end on the CPU
    return (len(faces) - first) / (time.perf_counter() - start)


def precision(device: torch.device, amp: bool) -> str:
    """What fit's autocast does on ``device``: ``"bf16 autocast"`` or ``"fp32"``."""
    with autocast(device, amp):
        return "bf16 autocast" if torch.is_autocast_enabled(device.type) else "fp32"


def pipeline_record(
    rate: float,
    flops: float,
    peak: float | None,
    settings: dict[str, Any],
    eval_rate: float | None = None,
) -> dict[str, Any]:
    """One pipeline's figures: images/s, achieved TFLOP/s, fraction of peak, its settings,
    and with an evaluation rate the FER2013 schedule estimates."""
    tflops = achieved_tflops(flops, rate)
    record = {
        "images_per_s": rate,
        "achieved_tflops": tflops,
        "fraction_of_peak": peak_fraction(tflops, peak),
        **settings,
    }
    if eval_rate is not None:
        record["eval_images_per_s"] = eval_rate
        record["schedules"] = {s.key: s.estimate(rate, eval_rate) for s in FER2013_SCHEDULES}
    return record


def measure(
    recipe: Recipe, data: FaceData, args: argparse.Namespace, peak: float | None
) -> dict[str, Any]:
    """Both pipelines on one model: their records, the FLOPs per image and the ratio."""
    device = choose_device(args.device)
    rng = np.random.default_rng(args.seed)
    train_positions, test_positions = train_and_test_positions(data)
    steps = args.warmup_steps + args.steps
    faces = data.subset(draw(train_positions, steps * recipe.batch_size, rng))
    maps = e2capsnet.face_maps(faces, cache_dir=CACHE)[0] if recipe.maps else None
    evaluated = recipe.ten_crop and args.eval_images > 0
    n_tests = args.eval_batch_size + args.eval_images  # a warm-up batch, then the timed ones
    tests = data.subset(draw(test_positions, n_tests, rng)) if evaluated else None
    image = torch.zeros(1, data.channels, recipe.input_size, recipe.input_size)
    flops = forward_flops(recipe.build(), image, **recipe.example)

    common_rate, common_model = time_dataloader(recipe, faces, maps, args)
    common_eval = time_dataloader_eval(common_model, tests, args) if evaluated else None
    del common_model  # its memory is free for fernb's run
    fernb_rate, fernb_model = time_fernb(recipe, faces, maps, args)
    fernb_eval = time_fernb_eval(fernb_model, recipe, tests, args) if evaluated else None
    common_settings = {
        "precision": "fp32",
        "channels_last": False,
        "compile": False,
        "data": f"DataLoader of PIL images, {args.workers} workers, "
        f"pin_memory={device.type == 'cuda'}, loss.item() every step",
    }
    fernb_settings = {
        "precision": precision(device, recipe.config.amp),
        "channels_last": recipe.config.channels_last,
        "compile": recipe.config.compile,
        "data": "fernb.train.fit: split resident on the device, batched on-device augmentation",
    }
    return {
        "batch_size": recipe.batch_size,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "input": f"{data.channels} x {recipe.input_size} x {recipe.input_size}",
        "forward_flops_per_image": flops,
        "train_flops_per_image": TRAIN_PASSES * flops,
        "pipelines": {
            "dataloader": pipeline_record(common_rate, flops, peak, common_settings, common_eval),
            "fernb": pipeline_record(fernb_rate, flops, peak, fernb_settings, fernb_eval),
        },
        "ratio": fernb_rate / common_rate,
    }


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's with its core count and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def data_description(data: FaceData, args: argparse.Namespace) -> str:
    """Which faces were trained on, in words."""
    if args.data_root is not None:
        return f"FER2013 from {args.data_root}: Training faces; PublicTest + PrivateTest for tests"
    return f"SynthFACS, {len(data)} synthetic 48 x 48 faces of FER2013's 7 classes"


def measurement(args: argparse.Namespace) -> dict[str, Any]:
    """Measure the chosen models; the record that ``--out`` receives."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    name = device_name(device)
    peak = args.peak_tflops or (peak_bf16_tflops(name) if device.type == "cuda" else None)
    data = load_faces(args.data_root, args.synthetic_images, args.seed)
    models = MODELS if args.model == "both" else (args.model,)
    return {
        "benchmark": "train_speed",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": name,
        "environment": environment_summary(args.device)
        | {
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
        "options": {
            key: str(value) if isinstance(value, Path) else value
            for key, value in vars(args).items()
        },
        "data": data_description(data, args),
        "peak_bf16_tflops": peak,
        "flops_convention": FLOPS_CONVENTION,
        "models": {model: measure(RECIPES[model](args), data, args, peak) for model in models},
    }


#: How the printed table shows its columns (missing values: ``-``).
FORMATS = {
    "images_per_s": format_rate,
    "ratio": "{:.2f}x".format,
    "forward_gflops": "{:.3f}".format,
    "achieved_tflops": "{:.3f}".format,
    "fraction_of_peak": "{:.1%}".format,
}


def summary(record: dict[str, Any]) -> str:
    """The printed table (one row per model and pipeline), then the schedule estimates."""
    table = measurement_table([record])
    table = table.drop(columns=[c for c in table if c in ("file", "device") or "schedule" in c])
    shown = table.to_string(index=False, formatters=FORMATS, na_rep="-")
    lines = [f"{record['device_name']}; {record['data']}", shown]
    for model, result in record["models"].items():
        for pipeline, figures in result["pipelines"].items():
            for estimate in figures.get("schedules", {}).values():
                verdict = "meets" if estimate["meets_goal"] else "misses"
                lines.append(
                    f"{model} {pipeline}: {estimate['name']}: {estimate['total_s'] / 60:,.1f} "
                    f"min ({verdict} the {estimate['goal_s'] / 60:.0f}-minute goal)"
                )
    return "\n".join(lines)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help with the module docstring as written and every option's default."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--model",
        choices=[*MODELS, "both"],
        default="both",
        help="the FER2013 VGG19, E2-Capsnet at 224 x 224, or both",
    )
    parser.add_argument("--steps", type=int, default=200, help="timed training steps")
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=20,
        help="untimed training steps first (cuDNN tuning, compilation)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per step (None: the recipe's, 128 VGG19, 16 E2-Capsnet)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model in the fernb pipeline"
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="FER2013 (train/<class>/*.jpg and test/, or fer2013.csv); "
        "None: synthetic faces, no download",
    )
    parser.add_argument(
        "--synthetic-images",
        type=int,
        default=2048,
        help="SynthFACS faces to draw batches from without --data-root",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="DataLoader worker processes of the common-practice pipeline",
    )
    parser.add_argument(
        "--eval-images",
        type=int,
        default=2048,
        help="timed ten-crop test images of the VGG19 (0: no evaluation and no schedule estimate)",
    )
    parser.add_argument(
        "--eval-batch-size",
        type=int,
        default=256,
        help="test images per evaluation step (each with ten crops)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of torch (None: torch's; 1 can be much faster on a busy CPU)",
    )
    parser.add_argument(
        "--width",
        type=float,
        default=1.0,
        help="channel multiplier of both networks; below 1 only for smoke tests",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="dense bf16 peak of the device, TFLOP/s (None: known GPUs only)",
    )
    parser.add_argument("--seed", type=int, default=0, help="weights, data and batch order")
    parser.add_argument(
        "--out", type=Path, default=None, help="write the measurement as JSON here (atomically)"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup_steps < 0:
        parser.error("--steps must be at least 1 and --warmup-steps at least 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure, print the table, write ``--out``; return the record."""
    args = parse_args(argv)
    record = measurement(args)
    print(summary(record))
    if args.out is not None:
        print(f"written: {write_json_atomic(args.out, record)}")
    return record


if __name__ == "__main__":
    main()
