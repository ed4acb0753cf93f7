"""The methods under one protocol: same splits, no leakage, records, summaries."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

from fernb.comparison import (
    EXPERIMENT,
    METHODS,
    ProtocolData,
    Setting,
    clip_parts,
    comparison_splits,
    coverage,
    fold_ranges,
    method_table,
    notebook_table,
    overview,
    records_table,
    run_comparison,
    run_method,
    summarise_methods,
)
from fernb.data import load
from fernb.models import au_capsules, capsule_lstm, e2capsnet, feature_attention, lbp_attention
from fernb.models.e2capsnet import Split
from fernb.results import read_records

CLASSES = ["anger", "happiness", "surprise"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small models train fastest on one thread, above all on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clips():
    """Six people, six 2-frame sequences each (72 images): the smallest data every method takes."""
    return load(
        "synthetic",
        n_subjects=6,
        samples_per_subject=6,
        classes=CLASSES,
        sequences=True,
        frames=2,
        difficulty=0.2,
    )


#: Where each method's chapter code turns positions into tensors: (module, function), each
#: taking the dataset and the positions (clip rows for Capsule-LSTM) as its first arguments.
LOADING = [
    (e2capsnet, "prepare_split"),
    (au_capsules, "tensors"),
    (lbp_attention, "tensors"),
    (capsule_lstm, "clip_tensors"),
    (feature_attention, "tensors"),
]


def _spy(load_positions, seen: list):
    def spy(data, positions, *args, **kwargs):
        seen.append(np.unique(positions))
        return load_positions(data, positions, *args, **kwargs)

    return spy


@pytest.fixture(scope="module")
def one_epoch_each(clips):
    """Every method trained for one epoch on fold 0 of 3: per method its record, its
    predictions and the positions its chapter code loaded (train, val, test, in order)."""
    protocol, splits = comparison_splits(clips, folds=3, run_folds=[0])
    inputs = ProtocolData(clips)
    setting = Setting("cpu", epochs=1, seed=0, device="cpu")
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        seen: list[np.ndarray] = []
        for module, name in LOADING:
            patch.setattr(module, name, _spy(getattr(module, name), seen))
        for method in METHODS:
            seen.clear()
            record, tested = run_method(method, inputs, splits[0], setting, protocol, "cpu")
            runs[method] = record, tested, list(seen)
    return splits[0], runs


def _subjects(data, positions) -> set:
    return set(data.subjects[positions])


def test_splits_hold_every_image_once_in_test_and_keep_people_apart(clips) -> None:
    protocol, splits = comparison_splits(clips, folds=3)
    assert "3-fold subject-independent" in protocol and [s.fold for s in splits] == [0, 1, 2]
    tested = np.sort(np.concatenate([split.test for split in splits]))
    np.testing.assert_array_equal(tested, np.arange(len(clips)))
    for split in splits:
        parts = (split.train, split.val, split.test)
        assert all(len(part) for part in parts)
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(clips)))
        people = [_subjects(clips, part) for part in parts]
        assert not (people[0] & people[1] or people[0] & people[2] or people[1] & people[2])
    again = comparison_splits(clips, folds=3, run_folds=[1])[1]
    assert len(again) == 1 and np.array_equal(again[0].test, splits[1].test)
    with pytest.raises(ValueError, match="run_folds"):
        comparison_splits(clips, folds=3, run_folds=[5])


def test_clips_follow_the_split_of_their_frames(clips) -> None:
    rows = ProtocolData(clips).clips
    assert rows.shape == (36, 2)
    split = comparison_splits(clips, folds=3)[1][0]
    parts = clip_parts(rows, split)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(rows)))
    for clip_part, image_part in zip(parts, (split.train, split.val, split.test), strict=True):
        assert set(rows[clip_part].ravel()) <= set(image_part)
    torn = Split(0, np.array([0]), np.array([2, 3]), np.array([1]))  # clip 0 is rows 0 and 1
    with pytest.raises(ValueError, match="two parts"):
        clip_parts(rows[:2], torn)
    still = load("synthetic", n_subjects=2, samples_per_subject=2, classes=CLASSES)
    np.testing.assert_array_equal(ProtocolData(still).clips, np.arange(4)[:, None])


def test_every_method_trains_selects_and_tests_on_the_same_images(clips, one_epoch_each) -> None:
    split, runs = one_epoch_each
    assert set(runs) == set(METHODS)
    for name, (record, tested, loaded) in runs.items():
        assert len(loaded) == 3, name  # train, val, test: nothing else was read
        for used, part in zip(loaded, (split.train, split.val, split.test), strict=True):
            np.testing.assert_array_equal(used, part, err_msg=name)
        assert record.metrics["best_epoch"] == 1 and 0 <= record.metrics["val_accuracy"] <= 1
        expected = len(split.test) // 2 if name == "capsule_lstm" else len(split.test)
        assert record.metrics["n_test"] == len(tested.targets) == expected, name
    _, per_clip, _ = runs["capsule_lstm"]  # one prediction per 2-frame sequence
    np.testing.assert_array_equal(per_clip.targets, clips.labels[split.test][::2])


def test_metrics_are_accuracy_and_sklearn_macro_f1(one_epoch_each) -> None:
    for name, (record, tested, _) in one_epoch_each[1].items():
        assert record.metrics["accuracy"] == pytest.approx(
            np.mean(tested.predicted == tested.targets)
        ), name
        assert record.metrics["macro_f1"] == pytest.approx(
            skm.f1_score(tested.targets, tested.predicted, average="macro")
        ), name
        assert set(record.metrics["per_class_accuracy"]) <= set(CLASSES)


def test_run_comparison_writes_one_record_per_method_fold_and_seed(clips, tmp_path) -> None:
    methods = ["vgg16", "au_capsules"]
    table = run_comparison(
        clips, methods, folds=3, run_folds=[1], seeds=[0, 1], epochs=1, device="cpu",
        results_dir=tmp_path,
    )  # fmt: skip
    records = read_records(tmp_path, paper="comparison")
    assert len(records) == len(table) == 4
    assert sorted(Path(p).name for p in records["path"]) == sorted(
        f"{EXPERIMENT}_{m}_synthetic_fold-1_seed-{s}_val-selected_cpu_1-epochs.json"
        for m in methods
        for s in (0, 1)
    )
    assert set(records["experiment"]) == {EXPERIMENT} and set(records["selection"]) == {"val"}
    assert set(records["variant"]) == set(methods) and set(records["fold"]) == {1}
    assert set(records["epochs"]) == {1} and set(records["device"]) == {"cpu"}
    assert (records["wall_time_s"] > 0).all()
    assert records["protocol"].str.contains("1 epochs per method at its 'cpu' preset").all()
    assert records["metrics.n_test"].nunique() == 1  # both seeds, both methods: one test fold
    # which synthetic data: the generator's configuration, as the loader was given it
    for option in ("n_subjects", "difficulty", "generator_version"):
        assert (records[f"data_options.{option}"] == clips.provenance[option]).all()
    assert (records["data_options.n_subjects"] == 6).all()
    read_back = records_table(records).sort_values(["method", "seed"]).reset_index(drop=True)
    ours = table.sort_values(["method", "seed"]).reset_index(drop=True)
    columns = ["method", "seed", "accuracy", "macro_f1", "train_seconds", "val_accuracy"]
    pd.testing.assert_frame_equal(read_back[columns], ours[columns])
    with pytest.raises(FileExistsError):
        run_comparison(clips, ["vgg16"], folds=3, run_folds=[1], epochs=1, results_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown methods"):
        run_comparison(clips, ["resnet"], folds=3)


def test_an_official_split_is_the_one_split_and_clips_are_single_images(tmp_path) -> None:
    """FER2013's protocol: Training / PublicTest (selection) / PrivateTest, one run per seed."""
    still = load("synthetic", n_subjects=6, samples_per_subject=6, classes=CLASSES)
    person = np.unique(still.subjects, return_inverse=True)[1]
    usage = np.select([person <= 3, person == 4], ["train", "val"], "test")
    official = replace(still, split=usage)
    protocol, splits = comparison_splits(official, folds=3, run_folds=[2])  # folds: ignored
    assert protocol.startswith("official split") and len(splits) == 1
    (split,) = splits
    assert split.fold is None
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(split, name), np.flatnonzero(usage == name))
    methods = ["vgg16", "capsule_lstm"]
    table = run_comparison(official, methods, epochs=1, device="cpu", results_dir=tmp_path)
    assert table["fold"].isna().all() and set(table["method"]) == set(methods)
    assert (table["n_test"] == len(split.test)).all()  # Capsule-LSTM: one 1-frame clip each
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == sorted(
        f"{EXPERIMENT}_{m}_synthetic_seed-0_val-selected_cpu_1-epochs.json" for m in methods
    )


def _hand_table() -> pd.DataFrame:
    accuracy = {
        "a": [0.80, 0.70, 0.90, 0.80],
        "b": [0.60, 0.55, 0.72, 0.62],
        "c": [0.78, 0.72, 0.85, None],  # c did not run fold 3
    }
    rows = [
        {"dataset": "d", "protocol": "p", "device": "cpu", "method": method, "fold": fold,
         "seed": 0, "accuracy": value, "macro_f1": value / 2, "train_seconds": 60.0 * (fold + 1)}
        for method, values in accuracy.items()
        for fold, value in enumerate(values)
        if value is not None
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_summary_by_hand() -> None:
    summary = summarise_methods(_hand_table())
    a = summary.loc[("d", "p", "cpu", "a")]
    assert a[("accuracy", "mean")] == pytest.approx(0.8)
    assert a[("accuracy", "std")] == pytest.approx(np.sqrt(0.02 / 3))  # deviations 0 .1 .1 0
    assert a[("accuracy", "n")] == 4 and summary.loc[("d", "p", "cpu", "c"), ("accuracy", "n")] == 3
    assert a[("macro_f1", "mean")] == pytest.approx(0.4)
    assert a[("train_seconds", "mean")] == pytest.approx(150.0)
    shown = method_table(_hand_table().query("method == 'a' or fold == 0"))
    assert shown.loc[("d", "p", "cpu", "a")].tolist() == [
        "80.0 ± 8.2",
        "40.0 ± 4.1",
        "2.50 ± 1.29",
        4,
    ]
    assert shown.loc[("d", "p", "cpu", "b")].tolist() == ["60.0", "30.0", "1.00", 1]


def test_overview_by_hand() -> None:
    first = _hand_table().assign(epochs=10)
    first.loc[(first["method"] == "b") & (first["fold"] == 3), "accuracy"] = 0.61
    second = pd.DataFrame(
        {"dataset": "ckplus48", "protocol": "q", "epochs": 5, "method": method, "fold": fold,
         "seed": 0, "accuracy": value}
        for method, fold, value in [("b", 0, 0.5), ("b", 1, 0.7), ("a", 0, 0.4), ("vgg16", 0, 0.45)]
    )  # fmt: skip
    shown = overview(pd.concat([first, second]), [("d", 10), ("ckplus48", 5)])
    assert list(shown.columns) == ["d, 10 epochs (3 to 4 runs)", "CK+48, 5 epochs (1 to 2 runs)"]
    assert shown.index.tolist() == ["a", "c", "b", "VGG16"]  # by the first column, then new ones
    assert shown.iloc[:, 0].tolist() == ["**80.0 ± 8.2**", "78.3 ± 6.5", "62.0 ± 7.2", ""]
    assert shown.iloc[:, 1].tolist() == ["40.0", "", "**60.0 ± 14.1**", "45.0"]


def test_overview_refuses_a_column_of_no_runs_or_of_two_protocols() -> None:
    table = _hand_table().assign(epochs=10)
    with pytest.raises(ValueError, match="d at 20 epochs: expected the runs of one protocol"):
        overview(table, [("d", 20)])
    table.loc[table["fold"] == 0, "protocol"] = "other"
    with pytest.raises(ValueError, match="found 2"):
        overview(table, [("d", 10)])


def test_coverage_names_the_seeds_and_their_folds() -> None:
    def runs(seed: int, folds: list) -> list[dict]:
        return [{"seed": seed, "fold": fold, "method": m} for fold in folds for m in ("a", "b")]

    whole = pd.DataFrame(runs(0, range(10)) + runs(1, range(10)))
    assert coverage(whole) == "seeds 0 and 1"
    official = pd.DataFrame(runs(0, [None]) + runs(2, [None]))  # no folds: one split per seed
    assert coverage(official) == "seeds 0 and 2"
    partial = pd.DataFrame(runs(0, range(10)) + runs(1, [0, 1, 2, 3, 4, 8]) + runs(2, [7]))
    assert coverage(partial) == "seed 0 on all folds, seed 1 on folds 0 to 4, 8, seed 2 on fold 7"
    assert coverage(pd.DataFrame(runs(3, [2, 3]))) == "seed 3"


def test_fold_ranges_join_consecutive_folds() -> None:
    assert fold_ranges([3, 0.0, 1, 2, 3, 7, 9, 10]) == "0 to 3, 7, 9 to 10"
    assert fold_ranges([5]) == "5"
    assert fold_ranges([None, float("nan")]) == "none"


def test_notebook_table_says_what_each_notebook_recorded_where_and_from_which_commit() -> None:
    def run(notebook: str, method: str, seed: int, fold: int | None, **where: str) -> dict:
        return {
            "dataset": "ckplus48" if fold is not None else "fer2013",
            "epochs": 10,
            "notebook": f"book/runs/results/{notebook}",
            "method": method,
            "seed": seed,
            "fold": fold,
            "commit": "4876e1d5a0a891e64dd08f7e55a4206de233084f",
            "created": "2026-12-03T08:39:29+00:00",
            "machine.platform": "Linux-6.18.44-fc-v1045-x86_64-with-glibc2.36",
            **where,
        }

    later = {
        "commit": "1d62afe0000000000000000000000000000000000",
        "created": "2026-12-04T01:00:00+00:00",
        "machine.platform": "Linux-6.18.44-fc-v1252-x86_64-with-glibc2.36",
    }
    unnamed = {"created": "2026-12-01T23:00:00+00:00", "machine.platform": None}
    table = pd.DataFrame(
        [
            run("ck.ipynb", "vgg16", 0, 0),
            run("ck.ipynb", "vgg16", 0, 1),
            run("ck.ipynb", "vgg19", 0, 3, **later),
            run("fer.ipynb", "vgg16", 10, None, **unnamed),
            run("fer.ipynb", "vgg16", 2, None, **unnamed, commit=None),
        ]
    )
    made = notebook_table(table)
    assert list(made.index) == [("ckplus48", 10, "ck.ipynb"), ("fer2013", 10, "fer.ipynb")]
    assert made.loc[("ckplus48", 10, "ck.ipynb")].to_dict() == {
        "methods": 2,
        "runs": 3,
        "seeds": "0",
        "folds": "0 to 1, 3",
        "machine": "v1045, v1252",
        "commit": "1d62afe, 4876e1d",
        "day": "2026-12-03, 2026-12-04",
    }
    assert made.loc[("fer2013", 10, "fer.ipynb")].to_dict() == {
        "methods": 1,
        "runs": 2,
        "seeds": "2, 10",
        "folds": "none",
        "machine": "before the rebuild, not named",
        "commit": "4876e1d",
        "day": "2026-12-01",
    }
