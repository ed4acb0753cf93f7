"""One protocol across the methods: every model of the book trained and tested the same way.

None of the five papers compares the methods on the same data and splits. This module runs
them all, plus the plain VGG16 and VGG19 baselines, under one protocol
(:func:`run_comparison`):

- **data**: one :class:`~fernb.data.FaceData` for every method; each method resizes it to
  its own input size as its chapter does.
- **splits** (:func:`comparison_splits`, the same for every method and seed): the official
  split where the dataset has one (FER2013: Training / PublicTest for selection /
  PrivateTest), else subject-independent k-fold cross-validation
  (:func:`fernb.data.splits.subject_kfold`) with 10% of each training fold's subjects held
  out for validation (:func:`fernb.data.splits.holdout_subjects`). No person is in two parts.
- **selection**: every method keeps the epoch with the best validation accuracy; the test
  split is scored once, after training.
- **budget**: the same number of epochs for every method, each at its chapter's preset of
  the same name (``"cpu"`` or ``"paper"``), the same seeds.
- **metrics** (:func:`run_metrics`): accuracy, macro-F1 and per-class accuracy on the test
  split, the selected epoch's validation accuracy, and the wall-clock seconds of training
  (and testing) on the named device.

Each method is a thin adapter over its chapter's own training function (:data:`METHODS`).
Two need a decision:

- ``capsule_lstm`` classifies clips. A dataset with sequences (CK+48: the last 3 frames of
  every sequence) gives one clip per sequence, its middle frames, as many as the shortest
  sequence has (at most the paper's 16); a dataset of still images gives one 1-frame clip
  per image. A clip falls in the split part of its frames (its subject), so the method
  trains, selects and tests on the same people as the others, and is **scored per clip**
  (one prediction per sequence), the others per image.
- ``feature_attention`` is the paper's best model, Model 3 "separately", whose face network
  is trained first, for each fold and seed, on face / non-face data with the fold's
  training faces only, for ``min(epochs, preset face epochs)``; its time counts in the
  method's. E2-Capsnet's attention maps are drawn once per dataset, outside the timing.

:func:`summarise_methods` gives mean, standard deviation and count per method;
:func:`fernb.metrics.paired_differences` compares every method with the best one on the
same folds and seeds, with a t confidence interval of the mean difference; :func:`overview`
sets several datasets and budgets side by side.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fernb import prose
from fernb.data.facedata import FaceData
from fernb.metrics import aggregate, expression_metrics, macro_f1
from fernb.models import au_capsules, capsule_lstm, e2capsnet, feature_attention, lbp_attention
from fernb.models.e2capsnet import Split
from fernb.results import RunRecord, data_fields, record_machines, write_record
from fernb.train import FitResult
from fernb.utils import choose_device, device_label, seed_everything

__all__ = [
    "DATASET_NAMES",
    "EXPERIMENT",
    "FACE_SIZE",
    "GROUPS",
    "MAX_CLIP_FRAMES",
    "METHODS",
    "METHOD_NAMES",
    "REPORTED",
    "ProtocolData",
    "Setting",
    "Tested",
    "clip_parts",
    "comparison_splits",
    "coverage",
    "fold_ranges",
    "method_table",
    "overview",
    "records_table",
    "run_comparison",
    "run_method",
    "run_metrics",
    "summarise_methods",
]

#: The records' experiment (their paper is ``"comparison"``, their variant the method).
EXPERIMENT = "one_protocol"
#: Side of the faces Capsule-LSTM's and Meen et al.'s networks take (FER2013's, CK+48's).
FACE_SIZE = 48
#: What :func:`method_table` reports: metric -> (heading, scale, decimals).
REPORTED: dict[str, tuple[str, float, int]] = {
    "accuracy": ("accuracy (%)", 100.0, 1),
    "macro_f1": ("macro-F1 (%)", 100.0, 1),
    "train_seconds": ("training minutes", 1 / 60, 2),
}
#: What identifies a group of comparable runs in :func:`summarise_methods`: training time
#: compares only on one device.
GROUPS: tuple[str, ...] = ("dataset", "protocol", "device", "method")
#: The paper's longest clip (Liu et al.: 16 frames).
MAX_CLIP_FRAMES = 16
#: How :func:`overview` names the methods (with their papers) and the datasets.
METHOD_NAMES: dict[str, str] = {
    "e2capsnet": "E2-Capsnet",
    "au_capsules": "AU capsules (Rashid & Lee)",
    "vgg16": "VGG16",
    "lbp_attention": "LBP attention (Li et al.)",
    "vgg19": "VGG19",
    "feature_attention": 'feature attention, Model 3 "separately" (Meen et al.)',
    "capsule_lstm": "Capsule-LSTM (Liu et al., per clip)",
}
DATASET_NAMES: dict[str, str] = {
    "ckplus48": "CK+48",
    "fer2013": "FER2013",
    "synthetic": "SynthFACS",
}


@dataclass(frozen=True)
class Setting:
    """How one run trains: the chapter preset's name, epochs, seed and device."""

    preset: str
    epochs: int
    seed: int
    device: str


@dataclass(frozen=True)
class Tested:
    """A method's test predictions on one split, and the epoch it selected on validation."""

    targets: np.ndarray
    predicted: np.ndarray
    val_accuracy: float
    best_epoch: int

    @classmethod
    def from_scores(
        cls, targets: np.ndarray, scores: np.ndarray, val_accuracy: float, best_epoch: int
    ) -> Tested:
        """Predictions are the argmax of N x C ``scores``."""
        predicted = np.asarray(scores).argmax(axis=1)
        return cls(np.asarray(targets), predicted, float(val_accuracy), int(best_epoch))

    @classmethod
    def from_fit(cls, targets: np.ndarray, scores: np.ndarray, fit: FitResult) -> Tested:
        """As :meth:`from_scores`, with the selection of :func:`fernb.train.fit`'s result."""
        return cls.from_scores(targets, scores, fit.best_metrics["accuracy"], fit.best_epoch)


class ProtocolData:
    """The comparison's dataset and what methods derive from it, each computed once.

    ``cache_dir`` holds detected landmarks (E2-Capsnet's maps on datasets without given
    landmarks).
    """

    def __init__(self, data: FaceData, cache_dir: Path | str | None = None) -> None:
        if not data.name:
            raise ValueError("the dataset needs a name (it goes into the run records)")
        self.data = data
        self.cache_dir = cache_dir
        self._resized: dict[int, FaceData] = {}

    def resized(self, size: int) -> FaceData:
        """The dataset at ``size`` x ``size`` (:func:`fernb.models.au_capsules.resize_images`)."""
        if size not in self._resized:
            self._resized[size] = au_capsules.resize_images(self.data, size)
        return self._resized[size]

    @cached_property
    def maps(self) -> torch.Tensor:
        """E2-Capsnet's AU attention maps (:func:`fernb.models.e2capsnet.face_maps`)."""
        return e2capsnet.face_maps(self.data, cache_dir=self.cache_dir)[0]

    @cached_property
    def clips(self) -> np.ndarray:
        """Capsule-LSTM's clips, (n_clips, frames) rows: the middle frames of each sequence
        (as many as the shortest has, at most 16), or each still image alone."""
        if self.data.sequence is None:
            return np.arange(len(self.data))[:, None]
        shortest = int(pd.Series(self.data.sequence).value_counts().min())
        return capsule_lstm.clip_rows(self.data, min(MAX_CLIP_FRAMES, shortest))


#: A method: train on ``split.train``, select on ``split.val``, test on ``split.test``; a
#: thin adapter over its chapter's own training function.
Adapter = Callable[[ProtocolData, Split, Setting], Tested]


def _e2capsnet(variant: str) -> Adapter:
    """E2-Capsnet's chapter model ``variant`` (its ``train_variant``, flips as augmentation)."""

    def train(inputs: ProtocolData, split: Split, setting: Setting) -> Tested:
        maps = inputs.maps if e2capsnet.VARIANTS[variant].attention else None
        run = e2capsnet.train_variant(
            variant,
            inputs.data,
            split,
            maps,
            setting.preset,
            setting.epochs,
            setting.seed,
            setting.device,
        )
        return Tested.from_fit(run.test_targets, run.test_scores, run.fit)

    return train


def _au_capsules(inputs: ProtocolData, split: Split, setting: Setting) -> Tested:
    """Rashid & Lee's 96 x 96 capsule network ("ours") for expressions, at its preset's size."""
    size = au_capsules.recipe(setting.preset, inputs.data.name).input_size("ours")
    data = inputs.resized(size)
    (run,) = au_capsules.cross_validate(
        data,
        "emotion",
        "capsules",
        [(split.train, split.val, split.test)],
        setting.preset,
        "ours",
        setting.epochs,
        setting.seed,
        setting.device,
    )
    return Tested.from_fit(data.labels[run.test_index], run.scores, run.fit)


def _lbp_attention(inputs: ProtocolData, split: Split, setting: Setting) -> Tested:
    """Li et al.'s two-stream attention CNN with LBP, the full model, with its augmentation."""
    config = lbp_attention.PRESETS[setting.preset].config(
        setting.epochs, seed=setting.seed, device=setting.device, progress=False
    )
    run = lbp_attention.train_and_test(inputs.data, split, "full", config, setting.preset)
    return Tested.from_scores(run.test.targets, run.test.scores, run.val_accuracy, run.best_epoch)


def clip_parts(clips: np.ndarray, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clips (indices into ``clips``' rows) whose frames lie in the train, val and test
    part of ``split``.

    Raises:
        ValueError: a clip has frames in two parts (a split that is not by subject).
    """
    parts = []
    for positions in (split.train, split.val, split.test):
        inside = np.isin(clips, positions)
        if (inside.any(axis=1) & ~inside.all(axis=1)).any():
            raise ValueError("a clip has frames in two parts of the split; split by subject")
        parts.append(np.flatnonzero(inside.all(axis=1)))
    return parts[0], parts[1], parts[2]


def _capsule_lstm(inputs: ProtocolData, split: Split, setting: Setting) -> Tested:
    """Liu et al.'s Capsule-LSTM (full loss) on clips, scored per clip (see the module)."""
    preset = capsule_lstm.PRESETS[setting.preset]
    data = inputs.resized(preset.model.image_size)
    clips = inputs.clips
    train, val, test = clip_parts(clips, split)
    config = preset.config(setting.epochs, seed=setting.seed, device=setting.device, progress=False)
    run = capsule_lstm.train_fold(
        data,
        clips,
        train,
        test,
        preset,
        config,
        "full",
        fold=split.fold or 0,
        augment=capsule_lstm.ClipAugmentation(),
        val=val,
    )
    return Tested.from_fit(run.test.targets, run.test.scores, run.result)


def _feature_attention(variant: str) -> Adapter:
    """Meen et al.'s emotion network ``variant``, with its face network when it reads one."""

    def train(inputs: ProtocolData, split: Split, setting: Setting) -> Tested:
        chosen = feature_attention.PRESETS[setting.preset]
        preset = replace(
            chosen, epochs=setting.epochs, face_epochs=min(chosen.face_epochs, setting.epochs)
        )
        emotion = feature_attention.EmotionData(
            inputs.resized(FACE_SIZE),
            {"train": split.train, "val": split.val, "test": split.test},
            protocol="one protocol",
        )
        config = {"device": setting.device, "seed": setting.seed, "progress": False}
        face_net = None
        if feature_attention.variant_spec(variant).face_stages():
            face_net, _ = feature_attention.face_network(
                lambda: feature_attention.face_training_data(emotion, preset, seed=setting.seed),
                preset,
                **config,
            )
        run = feature_attention.train_variant(variant, emotion, face_net, preset, **config)
        return Tested.from_fit(run.test.targets, run.test.scores, run.fit)

    return train


#: Every method of the book and the two plain baselines, by the name the records use.
METHODS: dict[str, Adapter] = {
    "e2capsnet": _e2capsnet("e2capsnet"),
    "vgg16": _e2capsnet("vgg16"),  # E2-Capsnet's ablation baseline
    "au_capsules": _au_capsules,
    "lbp_attention": _lbp_attention,
    "capsule_lstm": _capsule_lstm,
    "feature_attention": _feature_attention("model3_separately"),  # the paper's best model
    "vgg19": _feature_attention("vgg19"),  # Meen et al.'s baseline
}


def comparison_splits(
    data: FaceData,
    folds: int = 10,
    run_folds: Sequence[int] | None = None,
    split_seed: int = 0,
    val_fraction: float = 0.1,
) -> tuple[str, list[Split]]:
    """The protocol in words and the splits every method trains on.

    The official split if ``data`` has one, else ``folds`` subject-independent folds with
    ``val_fraction`` of each training fold's subjects for validation
    (:func:`fernb.models.e2capsnet.experiment_splits`), restricted to ``run_folds`` (None:
    all). ``split_seed`` draws the folds; it is not a training seed, so every seed of a
    comparison sees the same folds.
    """
    protocol, splits = e2capsnet.experiment_splits(data, folds, split_seed, val_fraction)
    if run_folds is not None and splits[0].fold is not None:
        unknown = sorted(set(run_folds) - {split.fold for split in splits})
        if unknown:
            raise ValueError(f"run_folds {unknown} are not among the {len(splits)} folds")
        splits = [split for split in splits if split.fold in run_folds]
    return protocol, splits


def run_metrics(tested: Tested, classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class accuracy, the selected epoch's validation accuracy, the
    selected epoch and the number of test examples, as a record stores them."""
    return {
        **expression_metrics(tested.targets, tested.predicted, classes),
        "macro_f1": macro_f1(tested.targets, tested.predicted, n_classes=len(classes)),
        "val_accuracy": tested.val_accuracy,
        "best_epoch": tested.best_epoch,
        "n_test": len(tested.targets),
    }


def run_method(
    name: str, inputs: ProtocolData, split: Split, setting: Setting, protocol: str, device: str
) -> tuple[RunRecord, Tested]:
    """Train and test method ``name`` on ``split``, timed; its record and its predictions."""
    seed_everything(setting.seed)
    started = time.perf_counter()
    tested = METHODS[name](inputs, split, setting)
    seconds = time.perf_counter() - started
    record = RunRecord(
        paper="comparison",
        experiment=EXPERIMENT,
        variant=name,
        **data_fields(inputs.data),
        protocol=protocol,
        fold=split.fold,
        seed=setting.seed,
        epochs=setting.epochs,
        selection="val",
        metrics=run_metrics(tested, inputs.data.classes),
        device=device,
        wall_time_s=seconds,
    )
    return record, tested


def run_comparison(
    data: FaceData,
    methods: Sequence[str] = tuple(METHODS),
    folds: int = 10,
    run_folds: Sequence[int] | None = None,
    seeds: Sequence[int] = (0,),
    epochs: int = 10,
    preset: str = "cpu",
    device: str = "auto",
    results_dir: Path | str | None = None,
    overwrite: bool = False,
    split_seed: int = 0,
    cache_dir: Path | str | None = None,
) -> pd.DataFrame:
    """Run ``methods`` (names of :data:`METHODS`) under one protocol on ``data``.

    Every method trains ``epochs`` epochs at its chapter's ``preset`` on the same splits
    (:func:`comparison_splits`: ``folds`` folds of which ``run_folds`` are run, or the
    official split) for each of ``seeds``. With ``results_dir`` each (method, fold, seed)
    is written as a :class:`~fernb.results.RunRecord` of paper ``"comparison"`` (variant:
    the method, file name ending in ``_<preset>_<epochs>-epochs``, so runs of one method
    under two budgets are both kept). Returns one row per run, in
    :func:`records_table`'s columns.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; expected some of {list(METHODS)}")
    chosen = choose_device(device)
    protocol, splits = comparison_splits(data, folds, run_folds, split_seed)
    protocol = (
        f"{protocol}; {epochs} epochs per method at its {preset!r} preset; selection on "
        "validation accuracy"
    )
    inputs = ProtocolData(data, cache_dir)
    described = device_label(chosen)
    records = []
    for split in splits:
        for seed in seeds:
            setting = Setting(preset, epochs, seed, str(chosen))
            for name in methods:
                record, _ = run_method(name, inputs, split, setting, protocol, described)
                if results_dir is not None:
                    file_name = f"{record.name}_{preset}_{epochs}-epochs"
                    write_record(record, root=results_dir, name=file_name, overwrite=overwrite)
                records.append(record.to_dict())
    return records_table(pd.json_normalize(records, sep="."))


def records_table(records: pd.DataFrame) -> pd.DataFrame:
    """Comparison records (:func:`fernb.results.read_records`' table, or
    :func:`run_comparison`'s) with one column per metric: ``method`` (the variant),
    ``train_seconds`` (the wall time), ``accuracy``, ``macro_f1``, ``per_class_accuracy.<c>``
    and the rest of the record's fields."""
    table = records.rename(columns={"variant": "method", "wall_time_s": "train_seconds"})
    return table.rename(columns=lambda column: column.removeprefix("metrics."))


def summarise_methods(
    table: pd.DataFrame, metrics: Sequence[str] = tuple(REPORTED), by: Sequence[str] = GROUPS
) -> pd.DataFrame:
    """Mean, sample standard deviation and count ``n`` of each metric over the folds and
    seeds of each method (:func:`fernb.metrics.aggregate`); columns ``(metric, stat)``."""
    return aggregate(table, metrics=list(metrics), by=list(by))


def method_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`summarise_methods` for reading: one column per :data:`REPORTED` metric as
    ``"mean ± std"`` (the mean alone for a single run), and ``n``, the runs."""
    summary = summarise_methods(table)
    shown = pd.DataFrame(index=summary.index)
    for metric, (heading, scale, decimals) in REPORTED.items():
        means, stds = summary[(metric, "mean")] * scale, summary[(metric, "std")] * scale
        shown[heading] = [
            prose.mean_std(mean, std, decimals) for mean, std in zip(means, stds, strict=True)
        ]
    shown["n"] = summary[("accuracy", "n")].astype(int)
    return shown


def fold_ranges(folds: Iterable[float | None]) -> str:
    """The distinct folds in words, consecutive ones as a range: ``"0 to 4, 8"``; ``"none"``
    for the runs of an official split, which have no fold."""
    present = sorted({int(fold) for fold in folds if pd.notna(fold)})
    if not present:
        return "none"
    stretches = [
        [fold for _, fold in group]
        for _, group in itertools.groupby(enumerate(present), lambda pair: pair[1] - pair[0])
    ]
    return ", ".join(f"{s[0]}" if len(s) == 1 else f"{s[0]} to {s[-1]}" for s in stretches)


def _joined(values: Iterable[object]) -> str:
    """The distinct ``values`` present (missing ones dropped), in their own order (numbers as
    numbers), joined by commas."""
    return ", ".join(str(value) for value in sorted({value for value in values if pd.notna(value)}))


def notebook_table(table: pd.DataFrame) -> pd.DataFrame:
    """Where ``table``'s runs (:func:`records_table`'s rows) come from: one row per dataset,
    epochs and executed notebook (its file name), with the methods and runs it recorded, its
    seeds and folds (:func:`fold_ranges`), the machines it ran on
    (:func:`fernb.results.record_machines`), the commits it ran from (their first 7
    characters) and the days (UTC) it recorded them."""
    runs = table.assign(
        notebook=table["notebook"].map(lambda path: Path(path).name),
        machine=record_machines(table),
        commit=table["commit"].str[:7],
        day=pd.to_datetime(table["created"], utc=True).dt.strftime("%Y-%m-%d"),
    )
    made = runs.groupby(["dataset", "epochs", "notebook"])
    return pd.DataFrame(
        {
            "methods": made["method"].nunique(),
            "runs": made.size(),
            "seeds": made["seed"].apply(_joined),
            "folds": made["fold"].apply(fold_ranges),
            **{column: made[column].apply(_joined) for column in ("machine", "commit", "day")},
        }
    )


def coverage(table: pd.DataFrame) -> str:
    """Which seeds ran which folds in ``table`` (runs of one protocol), in words:
    ``"seeds 0, 1 and 2"`` (:func:`fernb.prose.seeds`) where every seed ran every fold that
    any seed ran (or the dataset has one official split), else per seed,
    ``"seed 0 on all folds, seed 1 on folds 0 to 4, 8"``."""
    folds = table.groupby("seed")["fold"].apply(fold_ranges)
    every = fold_ranges(table["fold"])
    if (folds == every).all():
        return prose.seeds(folds.index)
    return ", ".join(
        f"seed {seed} on "
        + ("all folds" if ran == every else f"fold{'s' * (not ran.isdigit())} {ran}")
        for seed, ran in folds.items()
    )


def overview(
    table: pd.DataFrame, columns: Sequence[tuple[str, int]], metric: str = "accuracy"
) -> pd.DataFrame:
    """The comparison at a glance: one column per ``(dataset, epochs)`` of ``table``
    (:func:`records_table`'s rows), one row per method (:data:`METHOD_NAMES`), each cell
    ``metric`` as ``"mean ± std"`` over the method's runs there (folds x seeds, scaled as in
    :data:`REPORTED`), the highest mean of each column in bold (Markdown ``**``), ``""``
    where the method has no run. Headings name the dataset (:data:`DATASET_NAMES`), the
    epochs and the runs per method ("18 runs"; "15 to 18 runs" where methods differ); rows
    follow the first column, highest mean first. Raises ``ValueError`` for a column with no
    run, or with runs of several protocols (their numbers are not comparable)."""
    _, scale, decimals = REPORTED[metric]
    shown: dict[str, pd.Series] = {}
    order: list[str] = []
    for dataset, epochs in columns:
        runs = table[(table["dataset"] == dataset) & (table["epochs"] == epochs)]
        protocols = runs["protocol"].unique()
        if len(protocols) != 1:
            raise ValueError(
                f"{dataset} at {epochs} epochs: expected the runs of one protocol, "
                f"found {len(protocols)}: {list(protocols)}"
            )
        stats = summarise_methods(runs, metrics=[metric], by=["method"])[metric]
        cells = {
            method: prose.mean_std(row["mean"] * scale, row["std"] * scale, decimals)
            for method, row in stats.iterrows()
        }
        best = stats["mean"].idxmax()
        cells[best] = f"**{cells[best]}**"
        low, high = int(stats["n"].min()), int(stats["n"].max())
        counted = f"{high}" if low == high else f"{low} to {high}"
        name = f"{DATASET_NAMES.get(dataset, dataset)}, {epochs} epochs ({counted} runs)"
        shown[name] = pd.Series(cells)
        ranked = stats["mean"].sort_values(ascending=False).index
        order += [method for method in ranked if method not in order]
    frame = pd.DataFrame(shown).reindex(order).fillna("")
    frame.index = pd.Index([METHOD_NAMES.get(method, method) for method in order], name="method")
    return frame
