"""Run records: validation, atomic writing, reading, summaries and the papers' numbers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn import metrics as skm

import fernb
from fernb.results import (
    COMMIT_STATES,
    LOADED_COMMIT,
    PAPER_TABLES,
    PAPERS,
    RUN_NOTEBOOK_VARIABLE,
    RunRecord,
    commit_states,
    compare,
    paper_tables,
    read_records,
    record_machines,
    recorded_confusion,
    records_frame,
    results_root,
    share_runs,
    summarise,
    write_record,
)
from fernb.utils import cpu_name, git_commit


def _record(**changes) -> RunRecord:
    fields = {
        "paper": "e2capsnet",
        "experiment": "ablation",
        "variant": "e2capsnet",
        "dataset": "rafdb",
        "protocol": "official train/test, val from train",
        "fold": None,
        "seed": 0,
        "epochs": 3,
        "selection": "val",
        "metrics": {"accuracy": 0.8, "per_class_accuracy": {"anger": 0.5, "fear": 0.25}},
        "device": "cpu",
        "wall_time_s": 1.5,
    }
    return RunRecord(**{**fields, **changes})


def test_a_record_knows_where_and_when_it_ran() -> None:
    record = _record(metrics={"accuracy": np.float32(0.5), "n": np.int64(3)})
    assert record.commit == LOADED_COMMIT == git_commit()  # the checkout has not moved
    assert record.fernb_version == fernb.__version__
    created = datetime.fromisoformat(record.created)
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert record.metrics == {"accuracy": 0.5, "n": 3.0}
    assert all(type(v) is float for v in record.metrics.values())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"paper": "capsnet"}, "unknown paper"),
        ({"selection": "train"}, "selection must be one of"),
        ({"metrics": {"f1": {"AU1": float("nan")}}}, r"metrics\.f1\.AU1 is nan"),
        ({"metrics": {"accuracy": float("inf")}}, r"metrics\.accuracy is inf"),
        ({"metrics": {"accuracy": True}}, "must be a number"),
        ({"metrics": {"f1.AU1": 0.5}}, "without '.'"),
        ({"metrics": {}}, "non-empty"),
        ({"seed": -1}, "seed must be an integer"),
        ({"fold": 1.5}, "fold must be an integer"),
        ({"variant": "../elsewhere"}, "variant must be a name"),
        ({"wall_time_s": -2.0}, "wall_time_s"),
        ({"created": "2024-01-01T10:00:00+02:00"}, "UTC"),
        ({"created": "yesterday"}, "ISO 8601"),
        ({"notebook": ""}, "notebook must be"),
        ({"data_options": {}}, "data_options must be a non-empty dict"),
        ({"data_options": {"difficulty": float("nan")}}, "data_options must be JSON data"),
        ({"data_options": {"size": object()}}, "data_options must be JSON data"),
        ({"machine": {}}, "machine must be a non-empty dict"),
        ({"metrics": {"accuracy": 0.5, "epoch": 3}}, "metric 'epoch' is called 'best_epoch' now"),
    ],
)
def test_invalid_records_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _record(**changes)


def test_write_record_names_the_file_and_round_trips(tmp_path: Path) -> None:
    record = _record(fold=2, seed=1, selection="test")
    path = write_record(record, root=tmp_path)
    assert (
        path == tmp_path / "e2capsnet" / "ablation_e2capsnet_rafdb_fold-2_seed-1_test-selected.json"
    )
    assert json.loads(path.read_text()) == record.to_dict()
    assert RunRecord.from_dict(json.loads(path.read_text())) == record
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert write_record(_record(), root=tmp_path, name="custom").name == "custom.json"
    assert _record().name == "ablation_e2capsnet_rafdb_seed-0_val-selected"  # no fold


def test_write_record_refuses_to_overwrite_unless_told(tmp_path: Path) -> None:
    path = write_record(_record(), root=tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_record(_record(metrics={"accuracy": 0.1}), root=tmp_path)
    assert json.loads(path.read_text())["metrics"]["accuracy"] == 0.8
    write_record(_record(metrics={"accuracy": 0.1}), root=tmp_path, overwrite=True)
    assert json.loads(path.read_text())["metrics"] == {"accuracy": 0.1}
    assert len(list(path.parent.iterdir())) == 1
    with pytest.raises(ValueError, match="name must be"):
        write_record(_record(), root=tmp_path, name="a/b")


def test_records_in_memory_make_the_table_read_records_makes(tmp_path: Path) -> None:
    record = _record(metrics={"accuracy": 0.5, "per_class_accuracy": {"fear": 0.25}})
    write_record(record, root=tmp_path)
    table = records_frame([record.to_dict()])
    assert table.equals(read_records(tmp_path).drop(columns="path"))
    empty = records_frame([], extra=["path"])
    assert empty.empty and list(empty.columns) == list(read_records(tmp_path / "none").columns)
    assert {"fold", "seed", "metrics"} <= set(records_frame([]).columns)


def test_read_records_flattens_metrics_and_filters_by_paper(tmp_path: Path) -> None:
    write_record(_record(), root=tmp_path)
    write_record(_record(seed=1, metrics={"accuracy": 0.6}), root=tmp_path)
    au = {
        "paper": "au_capsules",
        "experiment": "au_detection",
        "variant": "ours",
        "dataset": "bp4d",
    }
    write_record(_record(**au, metrics={"f1": {"AU1": 0.4}}), root=tmp_path)

    table = read_records(tmp_path)
    assert len(table) == 3
    assert {"metrics.accuracy", "metrics.per_class_accuracy.anger", "metrics.f1.AU1"} <= set(
        table.columns
    )
    e2 = read_records(tmp_path, paper="e2capsnet")
    assert sorted(e2["metrics.accuracy"]) == [0.6, 0.8]
    assert e2["metrics.per_class_accuracy.anger"].isna().sum() == 1  # seed 1 did not record it
    assert read_records(tmp_path, paper="au_capsules")["metrics.f1.AU1"].tolist() == [0.4]
    assert read_records(tmp_path / "empty").empty
    (tmp_path / "benchmarks").mkdir()  # not a paper's folder: not records
    (tmp_path / "benchmarks" / "speed.json").write_text('{"images_per_second": 1}')
    assert len(read_records(tmp_path)) == 3
    with pytest.raises(ValueError, match="unknown paper"):
        read_records(tmp_path, paper="nope")


def test_a_record_names_the_notebook_fernb_run_executes(tmp_path: Path, monkeypatch) -> None:
    assert _record().notebook is None  # not inside `fernb run`
    monkeypatch.setenv(RUN_NOTEBOOK_VARIABLE, "book/runs/e2capsnet/ablation-x.ipynb")
    record = _record()
    assert record.notebook == "book/runs/e2capsnet/ablation-x.ipynb"
    path = write_record(record, root=tmp_path)
    assert read_records(tmp_path)["notebook"].tolist() == [record.notebook]
    # a record written before the field existed has no notebook, whoever reads it
    older = {k: v for k, v in record.to_dict().items() if k != "notebook"}
    path.write_text(json.dumps(older))
    assert RunRecord.from_dict(older).notebook is None
    assert read_records(tmp_path)["notebook"].isna().all()
    with pytest.raises(ValueError, match=r"missing record fields: \['seed'\]"):
        RunRecord.from_dict({k: v for k, v in older.items() if k != "seed"})


def test_data_options_round_trip_as_json_and_older_records_have_none(tmp_path: Path) -> None:
    options = {"difficulty": 0.25, "classes": ("anger", "fear"), "n_subjects": 60}
    record = _record(dataset="synthetic", data_options=options)
    assert record.data_options == {
        "difficulty": 0.25,
        "classes": ["anger", "fear"],
        "n_subjects": 60,
    }
    path = write_record(record, root=tmp_path)
    assert RunRecord.from_dict(json.loads(path.read_text())) == record
    assert read_records(tmp_path)["data_options.difficulty"].tolist() == [0.25]
    older = {k: v for k, v in record.to_dict().items() if k != "data_options"}
    assert RunRecord.from_dict(older).data_options is None
    assert _record().data_options is None


def test_an_older_records_epoch_is_read_as_best_epoch_and_its_file_left_alone(
    tmp_path: Path,
) -> None:
    path = write_record(_record(metrics={"accuracy": 0.8, "best_epoch": 7}), root=tmp_path)
    path.write_text(path.read_text().replace('"best_epoch"', '"epoch"'))  # as older runs wrote
    written = path.read_text()
    assert json.loads(written)["metrics"] == {"accuracy": 0.8, "epoch": 7}
    assert RunRecord.from_dict(json.loads(written)).metrics == {"accuracy": 0.8, "best_epoch": 7}
    table = read_records(tmp_path)
    assert table["metrics.best_epoch"].tolist() == [7] and "metrics.epoch" not in table
    assert path.read_text() == written
    both = {**json.loads(written), "metrics": {"epoch": 7, "best_epoch": 6}}
    with pytest.raises(ValueError, match="both 'epoch' and its new name 'best_epoch'"):
        RunRecord.from_dict(both)


def test_a_record_names_the_machine_it_was_made_on_and_older_records_have_none(
    tmp_path: Path,
) -> None:
    record = _record()
    assert record.machine["cpu"] == cpu_name()
    assert record.machine["cpu_threads"] == torch.get_num_threads()
    assert (record.machine["torch"], record.machine["numpy"]) == (torch.__version__, np.__version__)
    write_record(record, root=tmp_path)
    assert read_records(tmp_path)["machine.cpu"].tolist() == [cpu_name()]
    older = {k: v for k, v in record.to_dict().items() if k != "machine"}
    assert RunRecord.from_dict(older).machine is None
    elsewhere = _record(machine={"cpu": "Other CPU", "cpu_threads": 2})
    assert elsewhere.machine == {"cpu": "Other CPU", "cpu_threads": 2}


def test_commit_states_count_clean_dirty_and_unknown_commits_per_paper() -> None:
    records = pd.DataFrame(
        {
            "paper": ["e2capsnet", "e2capsnet", "e2capsnet", "comparison", "comparison"],
            "commit": ["a1b2", "a1b2+dirty", None, "c3d4", "c3d4"],
        }
    )
    states = commit_states(records)
    assert list(states.columns) == [*COMMIT_STATES, "total"]
    assert states.loc["e2capsnet"].tolist() == [1, 1, 1, 3]
    assert states.loc["comparison"].tolist() == [2, 0, 0, 2]


def test_record_machines_name_the_linux_build_or_when_an_unnamed_record_was_made() -> None:
    records = pd.DataFrame(
        {
            "created": [
                "2026-12-03T09:00:00+00:00",
                "2026-12-03T09:00:00+00:00",
                "2026-12-02T10:33:59+00:00",
                "2026-12-02T10:34:00+00:00",
            ],
            "machine.platform": [
                "Linux-6.18.44-fc-v1252-x86_64-with-glibc2.36",
                "Linux-5.15.0-91-generic-x86_64-with-glibc2.35",
                None,
                None,
            ],
        }
    )
    assert record_machines(records).tolist() == [
        "v1252",
        "Linux-5.15.0-91-generic-x86_64-with-glibc2.35",
        "before the rebuild, not named",
        "after the rebuild, not named",
    ]
    none_named = records.drop(columns="machine.platform")
    assert record_machines(none_named).tolist()[2:] == record_machines(records).tolist()[2:]
    assert record_machines(none_named).tolist()[0] == "after the rebuild, not named"


def test_read_records_names_a_bad_file(tmp_path: Path) -> None:
    path = write_record(_record(), root=tmp_path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "selection": "train"}))
    with pytest.raises(ValueError, match=path.name):
        read_records(tmp_path)
    moved = tmp_path / "capsule_lstm" / path.name
    moved.parent.mkdir()
    path.rename(moved)
    moved.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="wrong folder"):
        read_records(tmp_path)


def test_results_root_is_the_books_results_folder(repo_root: Path) -> None:
    assert results_root() == repo_root / "book" / "results"


def test_summarise_pools_folds_and_seeds(tmp_path: Path) -> None:
    accuracies = {(0, 0): 0.5, (1, 0): 0.7, (0, 1): 0.6, (1, 1): 1.0}
    for (fold, seed), acc in accuracies.items():
        write_record(_record(fold=fold, seed=seed, metrics={"accuracy": acc}), root=tmp_path)
    write_record(_record(variant="vgg16", metrics={"accuracy": 0.4}), root=tmp_path)
    table = summarise(read_records(tmp_path), by=["variant"], metric="accuracy")
    assert list(table.columns) == ["mean", "std", "n"]
    expected = list(accuracies.values())
    assert table.loc["e2capsnet", "mean"] == pytest.approx(np.mean(expected))
    assert table.loc["e2capsnet", "std"] == pytest.approx(np.std(expected, ddof=1))
    assert table.loc["e2capsnet", "n"] == 4
    assert table.loc["vgg16", "n"] == 1 and np.isnan(table.loc["vgg16", "std"])


def test_recorded_confusion_sums_the_runs_counts_in_the_records_class_order(
    tmp_path: Path,
) -> None:
    classes = ["sad", "angry", "happy"]  # not alphabetical: the records' order is kept
    rng = np.random.default_rng(0)
    expected = np.zeros((3, 3), dtype=int)
    for seed in (0, 1):
        labels, guesses = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
        counts = skm.confusion_matrix(labels, guesses, labels=[0, 1, 2])
        expected += counts
        confusion = {t: {p: int(counts[i, j]) for j, p in enumerate(classes)}
                     for i, t in enumerate(classes)}  # fmt: skip
        metrics = {"accuracy": float(np.trace(counts)) / 40, "confusion": confusion}
        write_record(_record(seed=seed, metrics=metrics), root=tmp_path)
    # another dataset's runs, over other classes, share the table but not the matrix
    other = {"confusion": {"a": {"a": 1, "b": 0}, "b": {"a": 2, "b": 3}}, "accuracy": 0.67}
    write_record(_record(dataset="rafdb2", metrics=other), root=tmp_path)
    records = read_records(tmp_path)
    matrix, names = recorded_confusion(records[records["dataset"] == "rafdb"])
    assert names == classes
    np.testing.assert_array_equal(matrix, expected)
    with pytest.raises(ValueError, match="same classes"):
        recorded_confusion(records)
    write_record(_record(seed=2), root=tmp_path)  # a run without a confusion matrix
    with pytest.raises(ValueError, match="confusion matrix"):
        recorded_confusion(read_records(tmp_path))


def test_paper_tables_hold_every_papers_headline_numbers() -> None:
    table = paper_tables()
    keys = ["paper", "experiment", "variant", "dataset", "metric", "selection"]
    assert not table.duplicated(keys).any()
    assert set(table["paper"]) == set(PAPERS) - {"data", "comparison"}
    assert table["value"].between(0, 100).all() and table["source"].str.len().gt(0).all()
    headline = {  # the papers' abstracts and /work/shared/papers/README.md
        ("e2capsnet", "rafdb", "e2capsnet", "accuracy"): 85.24,
        ("e2capsnet", "emotionet", "e2capsnet", "accuracy"): 55.91,
        ("au_capsules", "bp4d", "ours_vggf", "f1_mean"): 62.9,
        ("au_capsules", "disfa", "ours_vggf", "f1_mean"): 55.1,
        ("au_capsules", "ckplus", "ours", "accuracy"): 93.7,
        ("lbp_attention", "fer2013", "full", "accuracy"): 75.82,
        ("lbp_attention", "ckplus", "full", "accuracy"): 98.68,
        ("lbp_attention", "jaffe", "full", "accuracy"): 98.52,
        ("lbp_attention", "oulu_casia", "full", "accuracy"): 94.63,
        ("capsule_lstm", "mmi", "full", "accuracy"): 72.11,
        ("feature_attention", "fer2013", "vgg19", "accuracy"): 72.61,
        ("feature_attention", "fer2013", "model3_separately", "accuracy"): 73.59,
    }
    present = set(
        table[["paper", "dataset", "variant", "metric", "value"]].itertuples(index=False, name=None)
    )
    assert {key: v for key, v in headline.items() if (*key, v) not in present} == {}
    assert len(PAPER_TABLES) == len(table)


def test_per_au_paper_numbers_average_to_the_printed_mean() -> None:
    table = paper_tables("au_capsules")
    per_au = table[table["metric"].str.contains(r"\.AU")]
    columns = per_au.groupby(["dataset", "variant", per_au["metric"].str.split(".").str[0]])
    assert columns.ngroups == 9  # BP4D F1 and AUC x 3 variants, DISFA AUC x 2, DISFA F1 x 1
    for (dataset, variant, metric), group in columns:
        printed = table[
            (table["dataset"] == dataset)
            & (table["variant"] == variant)
            & (table["metric"] == f"{metric}_mean")
        ]["value"]
        assert len(group) == {"bp4d": 12, "disfa": 8}[dataset]
        # per-AU values and the mean are each rounded to 0.1 in print
        assert group["value"].mean() == pytest.approx(printed.item(), abs=0.06)


def test_compare_puts_ours_beside_theirs(tmp_path: Path) -> None:
    for seed, acc in enumerate([0.80, 0.82, 0.84]):
        write_record(_record(seed=seed, metrics={"accuracy": acc}), root=tmp_path)
    write_record(_record(selection="test", metrics={"accuracy": 0.86}), root=tmp_path)
    ck = {"paper": "au_capsules", "experiment": "emotion", "variant": "ours", "dataset": "ckplus"}
    for fold in range(2):
        for selection, acc in (("val", 0.9), ("test", 0.95)):
            write_record(
                _record(**ck, fold=fold, selection=selection, metrics={"accuracy": acc}),
                root=tmp_path,
            )
    ours = read_records(tmp_path)

    e2 = compare(ours, paper="e2capsnet")
    assert len(e2) == len(paper_tables("e2capsnet")) + 1  # Table 1's row, once per selection
    row = e2[(e2["experiment"] == "ablation") & (e2["variant"] == "e2capsnet")]
    val, test = (row[row["selection"] == s].iloc[0] for s in ("val", "test"))
    assert val["ours"] == pytest.approx(82.0) and val["ours_std"] == pytest.approx(2.0)
    assert val["n"] == 3 and val["theirs"] == 85.24
    assert val["difference"] == pytest.approx(82.0 - 85.24)
    assert test["ours"] == pytest.approx(86.0) and test["their_selection"] == "test"
    assert e2[e2["variant"] == "vgg16"]["ours"].isna().all()  # not run: theirs only

    au = compare(ours, paper="au_capsules").query("experiment == 'emotion'")
    pairs = sorted(zip(au["their_selection"], au["selection"], au["ours"].round(6), strict=True))
    # our test-selected runs are set beside Ours-Max only, our val-selected ones beside both
    assert pairs == [("last", "val", 90.0), ("test", "test", 95.0), ("test", "val", 90.0)]


def test_a_network_the_paper_prints_in_several_tables_fills_each(tmp_path: Path) -> None:
    """Li et al.'s complete network is one run in Tables 1-4; without LBP in Tables 1 and 4."""
    li = {"paper": "lbp_attention", "dataset": "fer2013", "protocol": "official"}
    for variant, acc in (("full", 0.5), ("no_lbp", 0.6), ("no_attention", 0.55)):
        write_record(
            _record(**li, experiment="benchmark", variant=variant, metrics={"accuracy": acc}),
            root=tmp_path,
        )
    # Tables 1-3 are FER2013 tables: a CK+48 run of Table 5 fills none of them
    write_record(
        _record(**{**li, "dataset": "ckplus48"}, experiment="benchmark", variant="full"),
        root=tmp_path,
    )
    # Table 3's own run of the complete network takes precedence over the shared one
    write_record(
        _record(**li, experiment="dilation", variant="full", metrics={"accuracy": 0.7}),
        root=tmp_path,
    )
    records = read_records(tmp_path)

    shared = share_runs(records)
    copies = shared[shared["shared_from"].notna()]
    assert sorted(zip(copies["experiment"], copies["variant"], strict=True)) == [
        ("lbp", "full"),
        ("lbp", "no_lbp"),
        ("modules", "full"),
        ("modules", "no_attention"),
    ]
    assert set(copies["shared_from"]) == {"benchmark"}
    assert shared[shared["shared_from"].isna()].drop(columns="shared_from").equals(records)

    table = compare(records, "lbp_attention").set_index(["experiment", "variant"])
    assert table.loc[("lbp", "full"), "ours"] == pytest.approx(50.0)
    assert table.loc[("lbp", "no_lbp"), "ours"] == pytest.approx(60.0)
    assert table.loc[("modules", "no_attention"), "ours"] == pytest.approx(55.0)
    assert table.loc[("dilation", "full"), "ours"] == pytest.approx(70.0)
    assert np.isnan(table.loc[("lbp", "lbp_original"), "ours"])
    assert table.loc[("lbp", "no_lbp"), "shared_from"] == "benchmark"
    assert table.loc[[("dilation", "full"), ("benchmark", "full")], "shared_from"].isna().all()


def test_an_experiments_own_run_takes_precedence_seed_by_seed(tmp_path: Path) -> None:
    """Table 3 recorded seed 0 of the complete network itself; seed 1 comes from Table 4."""
    li = {"paper": "lbp_attention", "dataset": "fer2013", "protocol": "official"}
    for seed, acc in ((0, 0.5), (1, 0.7)):
        write_record(
            _record(
                **li, experiment="benchmark", variant="full", seed=seed, metrics={"accuracy": acc}
            ),
            root=tmp_path,
        )
    write_record(
        _record(**li, experiment="dilation", variant="full", seed=0, metrics={"accuracy": 0.9}),
        root=tmp_path,
    )
    shared = share_runs(read_records(tmp_path))
    dilation = shared[(shared["experiment"] == "dilation") & (shared["variant"] == "full")]
    assert sorted(zip(dilation["seed"], dilation["shared_from"].fillna("own"), strict=True)) == [
        (0, "own"),
        (1, "benchmark"),
    ]
    table = compare(read_records(tmp_path), "lbp_attention").set_index(["experiment", "variant"])
    row = table.loc[("dilation", "full")]
    assert row["ours"] == pytest.approx(80.0) and row["n"] == 2
    assert row["shared_from"] == "benchmark" and row["n_shared"] == 1
    assert table.loc[("lbp", "full"), "n_shared"] == 2  # Table 1 recorded none of its own


def test_compare_without_runs_lists_the_papers_numbers(tmp_path: Path) -> None:
    table = compare(read_records(tmp_path), paper="capsule_lstm")
    assert isinstance(table, pd.DataFrame)
    assert len(table) == len(paper_tables("capsule_lstm")) and table["ours"].isna().all()


def test_records_name_the_commit_the_process_started_from(monkeypatch) -> None:
    """A long run records the code it imported, not a later checkout."""
    import fernb.results

    monkeypatch.setattr(fernb.results, "LOADED_COMMIT", "0123abc")
    monkeypatch.setattr(fernb.results, "source_commit", lambda: "later")
    assert _record().commit == "0123abc"
