"""Run records: every number in the book comes from one, and sits beside the paper's.

A run writes a :class:`RunRecord` as JSON to ``book/results/<paper>/<name>.json``
(:func:`write_record`); :func:`read_records` collects them into a DataFrame, one row per
record, metrics flattened to columns such as ``metrics.accuracy`` or ``metrics.f1.AU12``;
:func:`summarise` gives mean, standard deviation and count over folds and seeds; and
:func:`compare` puts them beside the papers' own numbers, :data:`PAPER_TABLES`.

Metrics in records are fractions in [0, 1] (as :mod:`fernb.metrics` computes them); the
papers' numbers are stored in percent, as printed.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fernb.metrics import aggregate
from fernb.utils import machine_summary, source_commit, write_json_atomic

if TYPE_CHECKING:
    from fernb.data.facedata import FaceData

__all__ = [
    "COMMIT_STATES",
    "LOADED_COMMIT",
    "OPTIONAL_FIELDS",
    "PAPERS",
    "PAPER_SELECTIONS",
    "PAPER_TABLES",
    "RENAMED_METRICS",
    "RUN_KEYS",
    "RUN_NOTEBOOK_VARIABLE",
    "SAME_DATA",
    "SAME_RUN",
    "SELECTIONS",
    "SHARED_RUNS",
    "PaperNumber",
    "RunRecord",
    "commit_states",
    "compare",
    "data_fields",
    "paper_tables",
    "read_records",
    "recorded_confusion",
    "records_frame",
    "results_root",
    "share_runs",
    "shared_sources",
    "summarise",
    "write_record",
]

#: Where records go: one folder per paper, plus ``data`` for the data chapter's experiments
#: and ``comparison`` for the methods run under one protocol (:mod:`fernb.comparison`).
PAPERS: tuple[str, ...] = (
    "e2capsnet",
    "au_capsules",
    "lbp_attention",
    "capsule_lstm",
    "feature_attention",
    "data",
    "comparison",
)
#: The split a run's reported model was chosen on.
SELECTIONS: tuple[str, ...] = ("val", "test")
#: How a paper's number was selected: on val, on test, at the last epoch, or not said.
PAPER_SELECTIONS: tuple[str, ...] = ("val", "test", "last", "unknown")
#: What identifies a configuration; :func:`summarise` pools the folds and seeds of each.
RUN_KEYS: tuple[str, ...] = ("paper", "experiment", "variant", "dataset", "protocol", "selection")

#: Record fields that files written before they existed may lack.
OPTIONAL_FIELDS: frozenset[str] = frozenset({"notebook", "data_options", "machine"})
#: Metric names that older records used, and the names they are read under: the epoch a
#: record's selection chose was ``epoch`` in feature-attention and E2-Capsnet records until
#: every writer called it ``best_epoch``. The files stay as their runs wrote them.
RENAMED_METRICS: Mapping[str, str] = {"epoch": "best_epoch"}
#: The environment variable through which ``fernb run`` tells a notebook's records where
#: its executed copy will be kept.
RUN_NOTEBOOK_VARIABLE = "FERNB_RUN_NOTEBOOK"

#: The commit checked out when this module was imported: what a run's code came from
#: (:func:`fernb.utils.source_commit`).
LOADED_COMMIT: str | None = source_commit()

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def results_root() -> Path:
    """The ``book/results`` folder of the checkout this package runs from.

    Notebooks run in their own folder (Jupyter Book and ``fernb run`` both do that), so a
    relative ``"book/results"`` would land in the wrong place; this resolves it from the
    package's source tree instead.
    """
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "_toc.yml").is_file():
        raise FileNotFoundError(
            f"fernb is not running from a checkout of the book ({checkout} has no _toc.yml); "
            "pass root= explicitly"
        )
    return checkout / "book" / "results"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _fernb_version() -> str:
    from fernb import __version__

    return __version__


def _json_data(what: str, value: object) -> dict:
    """``value``, a non-empty dict, as JSON would give it back (tuples become lists)."""
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{what} must be a non-empty dict or None, got {value!r}")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be JSON data: {error}") from error


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} must be a name of letters, digits and _ . + - (not starting with "
            f"one of _ . + -), got {value!r}"
        )


def _count(what: str, value: object, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {value!r}")
    return int(value)


def _clean_metrics(metrics: object, where: str = "metrics") -> dict:
    """Validate a (nested) dict of finite numbers; return it with plain ``float`` values."""
    if not isinstance(metrics, Mapping) or not metrics:
        raise ValueError(f"{where} must be a non-empty dict of numbers, got {metrics!r}")
    clean = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key or "." in key:
            raise ValueError(f"{where}: key {key!r} must be a non-empty string without '.'")
        path = f"{where}.{key}"
        if isinstance(value, Mapping):
            clean[key] = _clean_metrics(value, path)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(
                    f"{path} is {value}: records hold finite numbers only (leave undefined "
                    "metrics out, as fernb.metrics.expression_metrics and au_metrics do)"
                )
            clean[key] = float(value)
        else:
            raise ValueError(f"{path} must be a number or a dict, got {type(value).__name__}")
    return clean


@dataclass(frozen=True)
class RunRecord:
    """What one run measured, on what, and where it ran.

    Attributes:
        paper: one of :data:`PAPERS` (the folder the record goes to).
        experiment: the table or figure the run belongs to, e.g. ``"ablation"``.
        variant: the model configuration, e.g. ``"e2capsnet"`` or ``"no_lbp"``.
        dataset: a :func:`fernb.data.load` name, e.g. ``"rafdb"``.
        protocol: the split protocol in words, e.g. ``"official train/test, val from train"``.
        fold: the cross-validation fold, ``None`` for a single split.
        seed: the seed of the run.
        epochs: epochs trained.
        selection: ``"val"`` or ``"test"``, the split the reported model was chosen on.
        metrics: finite numbers (fractions in [0, 1] for rates), possibly nested per class
            or AU; keys contain no ``"."``.
        device: where it ran, e.g. ``"cuda:0 (NVIDIA H100)"``.
        wall_time_s: wall-clock seconds of the run.
        commit: the fernb commit (default: :data:`LOADED_COMMIT`, the commit checked out
            when this process imported fernb.results, which is the code it runs even if
            the checkout moves on while a long run goes).
        fernb_version: default: the installed version.
        created: ISO 8601 time in UTC (default: now).
        notebook: the executed notebook of the run, relative to the checkout, e.g.
            ``"book/runs/e2capsnet/ablation-ckplus48-cpu.ipynb"`` (default: what
            ``fernb run`` put in :data:`RUN_NOTEBOOK_VARIABLE`; ``None`` outside it).
        data_options: what the data was made with where ``dataset`` alone does not say it,
            as JSON data: the data's :attr:`fernb.data.FaceData.provenance` (for SynthFACS
            the generator's configuration and version: people, faces, difficulty, classes,
            seed). ``None`` where the name is enough (a real dataset's files) and in
            records older than this field (their executed notebook's parameters say it).
        machine: the host that made the record (default: :func:`fernb.utils.machine_summary`
            of this process: CPU, torch threads, OS, Python, torch and NumPy versions), as
            JSON data; ``None`` in records older than this field. The same commit and seed
            trained on another machine can give other numbers (the AU-detection page shows
            a case); this says whether two records shared one.
    """

    paper: str
    experiment: str
    variant: str
    dataset: str
    protocol: str
    fold: int | None
    seed: int
    epochs: int
    selection: str
    metrics: dict
    device: str
    wall_time_s: float
    commit: str | None = field(default_factory=lambda: LOADED_COMMIT)
    fernb_version: str = field(default_factory=_fernb_version)
    created: str = field(default_factory=_now)
    notebook: str | None = field(default_factory=lambda: os.environ.get(RUN_NOTEBOOK_VARIABLE))
    data_options: dict | None = None
    machine: dict | None = field(default_factory=machine_summary)

    def __post_init__(self) -> None:
        if self.paper not in PAPERS:
            raise ValueError(f"unknown paper {self.paper!r}; expected one of {PAPERS}")
        if self.selection not in SELECTIONS:
            raise ValueError(
                f"selection must be one of {SELECTIONS} (the split the model was chosen on), "
                f"got {self.selection!r}"
            )
        for what in ("experiment", "variant", "dataset"):
            _check_name(what, getattr(self, what))
        for what in ("protocol", "device", "fernb_version"):
            if not isinstance(getattr(self, what), str) or not getattr(self, what):
                raise ValueError(f"{what} must be a non-empty string")
        for what in ("commit", "notebook"):
            value = getattr(self, what)
            if not (value is None or (isinstance(value, str) and value)):
                raise ValueError(f"{what} must be a non-empty string or None, got {value!r}")
        set_field = object.__setattr__  # frozen: normalise once, here
        for what in ("data_options", "machine"):
            if getattr(self, what) is not None:
                set_field(self, what, _json_data(what, getattr(self, what)))
        set_field(self, "fold", _count("fold", self.fold, optional=True))
        set_field(self, "seed", _count("seed", self.seed))
        set_field(self, "epochs", _count("epochs", self.epochs))
        set_field(self, "metrics", _clean_metrics(self.metrics))
        for old, new in RENAMED_METRICS.items():
            if old in self.metrics:
                raise ValueError(f"metric {old!r} is called {new!r} now")
        wall = self.wall_time_s
        if not isinstance(wall, numbers.Real) or not math.isfinite(wall) or wall < 0:
            raise ValueError(f"wall_time_s must be a finite number >= 0, got {wall!r}")
        set_field(self, "wall_time_s", float(wall))
        try:
            created = datetime.fromisoformat(self.created)
        except (TypeError, ValueError) as error:
            raise ValueError(f"created must be an ISO 8601 time, got {self.created!r}") from error
        if created.utcoffset() is None or created.utcoffset().total_seconds() != 0:
            raise ValueError(f"created must be in UTC (+00:00), got {self.created!r}")

    @property
    def name(self) -> str:
        """Default file name (no extension): experiment, variant, dataset, fold, seed, selection.

        The selection is part of it because one run may record its val- and test-selected
        models. A fold of ``None`` is left out.
        """
        fold = "" if self.fold is None else f"_fold-{self.fold}"
        return (
            f"{self.experiment}_{self.variant}_{self.dataset}{fold}_seed-{self.seed}"
            f"_{self.selection}-selected"
        )

    def to_dict(self) -> dict:
        """The record as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> RunRecord:
        """Rebuild and validate a record; unknown or missing fields are an error, except
        :data:`OPTIONAL_FIELDS`, which are ``None`` when missing (never filled in from the
        reading process's environment). Metrics under an old name of
        :data:`RENAMED_METRICS` come back under the new one."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown record fields: {sorted(unknown)}")
        missing = {f.name for f in fields(cls) if f.name not in data} - OPTIONAL_FIELDS
        if missing:
            raise ValueError(f"missing record fields: {sorted(missing)}")
        metrics = _renamed_metrics(data["metrics"])
        return cls(**{**dict.fromkeys(OPTIONAL_FIELDS), **data, "metrics": metrics})


def _renamed_metrics(metrics: object) -> object:
    """``metrics`` with each old name of :data:`RENAMED_METRICS` replaced by its new one."""
    if not isinstance(metrics, Mapping):
        return metrics  # the record's own validation says what is wrong
    clash = [old for old, new in RENAMED_METRICS.items() if old in metrics and new in metrics]
    if clash:
        raise ValueError(
            f"metrics hold both {clash[0]!r} and its new name {RENAMED_METRICS[clash[0]]!r}"
        )
    return {RENAMED_METRICS.get(name, name): value for name, value in metrics.items()}


def data_fields(data: FaceData) -> dict[str, object]:
    """The :class:`RunRecord` fields that say which data a run used: ``dataset`` (the
    loader's name) and ``data_options`` (:attr:`fernb.data.FaceData.provenance`, e.g. the
    SynthFACS generator settings). Every writer fills both from the data it ran on:
    ``RunRecord(**data_fields(data), paper=..., ...)``.
    """
    return {"dataset": data.name, "data_options": data.provenance}


def write_record(
    record: RunRecord,
    root: Path | str | None = None,
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``record`` to ``root/<paper>/<name>.json`` atomically; return the path.

    ``root`` defaults to :func:`results_root`, ``name`` to :attr:`RunRecord.name`. The JSON
    is written to a temporary file in the same folder, then moved into place, so a reader
    never sees half a record. An existing record is never replaced unless ``overwrite``;
    without it the move is a hard link, which fails if the name was taken meanwhile.
    """
    name = record.name if name is None else name
    _check_name("name", name)
    folder = Path(root) if root is not None else results_root()
    path = folder / record.paper / f"{name}.json"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace that record")
    try:
        return write_json_atomic(path, record.to_dict(), overwrite=overwrite)
    except FileExistsError:
        raise FileExistsError(f"{path} was written meanwhile by another run") from None


def read_records(root: Path | str | None = None, paper: str | None = None) -> pd.DataFrame:
    """All records under ``root`` (default :func:`results_root`), or one paper's.

    Only the folders of :data:`PAPERS` hold records; other folders (``benchmarks``) are
    left alone.

    One row per record, in path order, with the record's fields, its metrics flattened to
    ``metrics.<key>[.<key>]`` columns, and ``path``. A record that does not validate raises,
    naming its file.
    """
    if paper is not None and paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; expected one of {PAPERS}")
    folder = Path(root) if root is not None else results_root()
    paths = [
        path for name in ([paper] if paper else PAPERS) for path in (folder / name).glob("*.json")
    ]
    rows = []
    for path in sorted(paths):
        try:
            record = RunRecord.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: {error}") from error
        if record.paper != path.parent.name:
            raise ValueError(f"{path}: a record of paper {record.paper!r} in the wrong folder")
        rows.append({**record.to_dict(), "path": str(path)})
    return records_frame(rows, extra=["path"])


def records_frame(rows: Iterable[Mapping[str, object]], extra: Sequence[str] = ()) -> pd.DataFrame:
    """Records as dictionaries (:meth:`RunRecord.to_dict`, maybe with ``extra`` fields) as
    one table, a row each, metrics flattened to ``metrics.<key>[.<key>]`` columns; with no
    rows, the empty table with a column per :class:`RunRecord` field and per ``extra``."""
    rows = list(rows)
    if not rows:
        return pd.DataFrame(columns=[*(f.name for f in fields(RunRecord)), *extra])
    return pd.json_normalize(rows, sep=".")


#: When the project's environment was rebuilt: 2 December 2026, 10:34 UTC. Records made
#: before 3 December name no machine; those made before the rebuild came from a machine of
#: the ``v1252`` kind, those after it from either kind (the book's page on running, "Same
#: seed, same numbers").
REBUILT = pd.Timestamp("2026-12-02 10:34", tz="UTC")

#: The build in a Linux platform string of the project's machines: ``"...-fc-v1252-..."``.
_LINUX_BUILD = r"-fc-(v\d+)-"


def record_machines(records: pd.DataFrame) -> pd.Series:
    """The machine each record of ``records`` (:func:`read_records`' table) was made on, by
    its ``machine.platform``: the Linux build where the platform has one
    (``"Linux-6.18.44-fc-v1252-x86_64-with-glibc2.36"`` -> ``"v1252"``; the build is what
    tells the project's CPU machines apart), else the whole platform. A record that names no
    machine is ``"before the rebuild, not named"`` or ``"after the rebuild, not named"``
    (:data:`REBUILT`)."""
    platform = records.get("machine.platform", pd.Series(pd.NA, index=records.index))
    platform = platform.astype("string")
    named = platform.str.extract(_LINUX_BUILD, expand=False).fillna(platform)
    before = pd.to_datetime(records["created"], utc=True) < REBUILT
    unnamed = pd.Series("after the rebuild, not named", index=records.index, dtype="string")
    return named.fillna(unnamed.mask(before, "before the rebuild, not named")).astype(object)


#: :func:`commit_states`' columns: what the commit field of a record says of its code.
COMMIT_STATES: tuple[str, ...] = ("committed", "uncommitted changes", "unknown")


def commit_states(records: pd.DataFrame) -> pd.DataFrame:
    """Records per paper whose ``commit`` names committed code, a commit plus uncommitted
    changes (``<sha>+dirty``: the code differed from that commit, how is not recorded), or
    nothing (``None``: run outside a git checkout without ``FERNB_COMMIT``).

    ``records`` is :func:`read_records`' table; one row per paper, a column per state of
    :data:`COMMIT_STATES` and ``total``.
    """
    commit = records["commit"]
    state = pd.Series("committed", index=records.index)
    state[commit.isna()] = "unknown"
    state[commit.fillna("").str.endswith("+dirty")] = "uncommitted changes"
    counts = pd.crosstab(records["paper"], state).reindex(columns=COMMIT_STATES, fill_value=0)
    counts.columns.name = None
    return counts.assign(total=counts.sum(axis=1))


#: Per paper, an experiment whose runs are also rows of other tables: a run recorded under
#: the key stands for the same variant in each listed experiment (see :func:`share_runs`).
#: Li et al. print one complete network in their Tables 1-4 (75.82% each time), one without
#: LBP in Tables 1 and 4 (67.73%) and one without attention in Tables 2 and 4 (73.96%). Liu
#: et al.'s full loss of Table 4.1 is the network of Table 4.2 (72.11% both) and of Sec. 4.3.
SHARED_RUNS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "lbp_attention": {"benchmark": ("lbp", "modules", "dilation")},
    "capsule_lstm": {"loss": ("benchmark",)},
}

#: Per paper, our dataset name -> the paper's name for the same images. CK+48 is exactly the
#: set Li et al. describe (the last three frames of each emotion-labelled CK+ sequence).
SAME_DATA: Mapping[str, Mapping[str, str]] = {"lbp_attention": {"ckplus48": "ckplus"}}

#: What makes two records the same run: one configuration, fold and seed.
SAME_RUN: tuple[str, ...] = ("variant", "dataset", "protocol", "selection", "fold", "seed")


def share_runs(
    records: pd.DataFrame,
    papers: pd.DataFrame | None = None,
    shared: Mapping[str, Mapping[str, tuple[str, ...]]] = SHARED_RUNS,
) -> pd.DataFrame:
    """``records`` plus a copy of each shared run (:data:`SHARED_RUNS`) under every experiment
    whose paper table prints its variant on its dataset (as the paper names it,
    :data:`SAME_DATA`), or, for a run on a dataset neither table prints (a stand-in), under
    every experiment that prints its variant on a dataset where the run's own experiment
    prints it too; unless that experiment recorded the same run itself (:data:`SAME_RUN`):
    its own runs take precedence, and the copies fill the folds and seeds it lacks.

    ``records`` is :func:`read_records`' table; ``papers`` the paper numbers (default
    :func:`paper_tables`). A copy keeps its record's path and values; its ``shared_from``
    column names the experiment it was recorded under (``None`` on the records themselves),
    so a table built from it can say that the row repeats another table's runs.
    """
    papers = paper_tables() if papers is None else papers
    records = records.assign(shared_from=None)
    keys = list(SAME_RUN)
    copies = []
    for paper, sources in shared.items():
        tables = papers[papers["paper"] == paper]
        for source, targets in sources.items():
            runs = records[(records["paper"] == paper) & (records["experiment"] == source)]
            for target in targets:
                own = records[(records["paper"] == paper) & (records["experiment"] == target)]
                candidates = _standing_for(
                    runs,
                    tables[tables["experiment"] == source],
                    tables[tables["experiment"] == target],
                    SAME_DATA.get(paper, {}),
                )
                marked = candidates.merge(own[keys].drop_duplicates(), how="left", indicator=True)
                free = marked[marked["_merge"] == "left_only"].drop(columns="_merge")
                copies.append(free.assign(experiment=target, shared_from=source))
    return pd.concat([records, *copies], ignore_index=True) if copies else records


def _standing_for(
    runs: pd.DataFrame, source: pd.DataFrame, target: pd.DataFrame, same: Mapping[str, str]
) -> pd.DataFrame:
    """The ``runs`` of the ``source`` table's experiment that stand for rows of ``target``'s
    (both paper tables): on a dataset where ``target`` prints their variant, or stand-ins
    (on a dataset neither table prints) of a network both tables print on one dataset."""
    named = runs["dataset"].map(lambda dataset: same.get(dataset, dataset))
    printed = set(zip(target["variant"], target["dataset"], strict=True))
    one_network = {
        v for v, _ in printed & set(zip(source["variant"], source["dataset"], strict=True))
    }
    on_printed = [pair in printed for pair in zip(runs["variant"], named, strict=True)]
    elsewhere = ~named.isin({*source["dataset"], *target["dataset"]})
    stand_in = elsewhere & runs["variant"].isin(one_network)
    return runs[np.array(on_printed, dtype=bool) | stand_in.to_numpy()]


def shared_sources(
    df: pd.DataFrame, by: Sequence[str] = RUN_KEYS, metric: str = "accuracy"
) -> pd.DataFrame:
    """Per group of ``by``, where the runs that know ``metric`` were recorded.

    ``df`` is :func:`share_runs`' table. Columns ``shared_from`` (the experiments the group's
    copies come from, comma-separated; ``None`` where all are the group's own runs) and
    ``n_shared`` (how many of the group's runs are copies).
    """
    known = df.dropna(subset=[_metric_column(df, metric)])
    return known.groupby(list(by)).agg(
        shared_from=("shared_from", lambda s: ", ".join(sorted(set(s.dropna()))) or None),
        n_shared=("shared_from", lambda s: int(s.notna().sum())),
    )


def _metric_column(df: pd.DataFrame, metric: str) -> str:
    for column in (metric, f"metrics.{metric}"):
        if column in df.columns:
            return column
    raise KeyError(f"no metric {metric!r} (nor metrics.{metric}) among the records' columns")


def summarise(
    df: pd.DataFrame, by: Sequence[str] = RUN_KEYS, metric: str = "accuracy"
) -> pd.DataFrame:
    """Mean, sample standard deviation and count ``n`` of ``metric`` over folds and seeds.

    ``df`` is :func:`read_records`' table; ``metric`` a metrics key such as ``"accuracy"``
    or ``"f1.AU12"`` (or its column name). One row per group of ``by``, columns ``mean``,
    ``std`` (``ddof=1``; NaN for a single run) and ``n`` (runs where the metric is known).
    """
    column = _metric_column(df, metric)
    return aggregate(df, metrics=[column], by=by)[column]


def recorded_confusion(df: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """The test confusion matrix of the recorded runs in ``df``, summed over them.

    Reads the ``metrics.confusion.<true>.<predicted>`` columns of :func:`read_records`'
    table (records whose metrics hold ``confusion[true][predicted]`` counts). Returns the
    C x C count matrix (rows: true class) and the class names, in the records' order.
    Raises ``ValueError`` when a run has no confusion matrix or one over other classes.
    """
    prefix = "metrics.confusion."
    # read_records' table has a column per cell of every dataset's classes: keep these runs'
    cells = [c for c in df.columns if c.startswith(prefix) and df[c].notna().any()]
    if df.empty or not cells or df[cells].isna().any(axis=None):
        raise ValueError(
            "expected runs that all record a confusion matrix over the same classes "
            "(metrics.confusion.<true>.<predicted>)"
        )
    pairs = [c[len(prefix) :].split(".") for c in cells]
    classes = list(dict.fromkeys(true for true, _ in pairs))
    index = {name: k for k, name in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for column, (true, predicted) in zip(cells, pairs, strict=True):
        matrix[index[true], index[predicted]] = int(df[column].sum())
    return matrix, classes


@dataclass(frozen=True)
class PaperNumber:
    """One number printed in a paper, with where it is and how it was obtained.

    ``value`` is in percent, as printed. ``selection`` is how the paper chose the model the
    number comes from: ``"val"``, ``"test"`` (best test score over training), ``"last"``
    (a fixed schedule, no selection) or ``"unknown"``.
    """

    paper: str
    experiment: str
    variant: str
    dataset: str
    metric: str
    value: float
    source: str
    protocol: str
    selection: str = "unknown"
    note: str = ""

    def __post_init__(self) -> None:
        if self.paper not in PAPERS:
            raise ValueError(f"unknown paper {self.paper!r}; expected one of {PAPERS}")
        if self.selection not in PAPER_SELECTIONS:
            raise ValueError(f"selection must be one of {PAPER_SELECTIONS}, got {self.selection!r}")


def paper_tables(paper: str | None = None) -> pd.DataFrame:
    """:data:`PAPER_TABLES` as a DataFrame (one paper's rows if ``paper`` is given)."""
    table = pd.DataFrame([asdict(number) for number in PAPER_TABLES])
    if paper is None:
        return table
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; expected one of {PAPERS}")
    return table[table["paper"] == paper].reset_index(drop=True)


def compare(df_ours: pd.DataFrame, paper: str, scale: float = 100.0) -> pd.DataFrame:
    """Our runs beside a paper's numbers, one row per paper number and selection of ours.

    Ours are pooled over folds and seeds per (experiment, variant, dataset, protocol,
    selection) and matched to the paper on (experiment, variant, dataset, metric). Our
    test-selected runs are compared only with the paper's test-selected numbers; our
    validation-selected runs with every paper number. Runs that a paper prints in several
    tables fill each of them (:func:`share_runs`; ``shared_from`` and ``n_shared`` say where
    and how many, :func:`shared_sources`). A paper number without a run of ours keeps NaN in
    ``ours``. Ours are multiplied by ``scale`` (percent, as the papers print); ``difference =
    ours - theirs``.
    """
    theirs = paper_tables(paper).rename(
        columns={"value": "theirs", "selection": "their_selection", "protocol": "their_protocol"}
    )
    ours = share_runs(df_ours[df_ours["paper"] == paper], theirs)
    keys = [k for k in RUN_KEYS if k != "paper"]
    summaries = [
        summarise(ours, by=keys, metric=metric)
        .join(shared_sources(ours, by=keys, metric=metric))
        .reset_index()
        .assign(metric=metric)
        for metric in theirs["metric"].unique()
        if not ours.empty and f"metrics.{metric}" in ours.columns
    ]
    empty = pd.DataFrame(columns=[*keys, "mean", "std", "n", "shared_from", "n_shared", "metric"])
    ours_long = pd.concat(summaries or [empty], ignore_index=True)
    ours_long = ours_long[ours_long["n"] > 0]
    merged = theirs.merge(ours_long, on=["experiment", "variant", "dataset", "metric"], how="left")
    merged = merged[~((merged["selection"] == "test") & (merged["their_selection"] != "test"))]
    merged = merged.assign(
        ours=merged["mean"].astype(float) * scale,
        ours_std=merged["std"].astype(float) * scale,
    )
    merged["difference"] = merged["ours"] - merged["theirs"]
    columns = [
        "experiment",
        "variant",
        "dataset",
        "metric",
        "selection",
        "protocol",
        "n",
        "ours",
        "ours_std",
        "theirs",
        "difference",
        "their_selection",
        "their_protocol",
        "source",
        "note",
        "shared_from",
        "n_shared",
    ]
    return merged[columns].reset_index(drop=True)


def _rows(
    context: Mapping[str, str],
    experiment: str,
    dataset: str,
    source: str,
    rows: Sequence[tuple],
    metric: str = "accuracy",
) -> list[PaperNumber]:
    """One table's numbers. ``context`` holds ``paper``, ``protocol`` and optionally
    ``selection`` and ``note``; ``rows`` are ``(variant, value)`` or ``(variant, value, note)``.
    """
    found = []
    for variant, value, *row_note in rows:
        note = "; ".join(n for n in (context.get("note", ""), *row_note) if n)
        found.append(
            PaperNumber(
                paper=context["paper"],
                experiment=experiment,
                variant=variant,
                dataset=dataset,
                metric=metric,
                value=value,
                source=source,
                protocol=context["protocol"],
                selection=context.get("selection", "unknown"),
                note=note,
            )
        )
    return found


def _per_au(
    context: Mapping[str, str],
    dataset: str,
    metric: str,
    source: str,
    aus: Sequence[int],
    columns: Mapping[str, Sequence[float]],
) -> list[PaperNumber]:
    """A per-AU table of Rashid & Lee: per variant, one value per AU, then the "Avg" row."""
    found = []
    for variant, values in columns.items():
        names = [f"{metric}.AU{au}" for au in aus] + [f"{metric}_mean"]
        if len(values) != len(names):
            raise ValueError(f"{source}, {variant}: {len(values)} values for {len(names)} cells")
        for name, value in zip(names, values, strict=True):
            found += _rows(context, "au_detection", dataset, source, [(variant, value)], name)
    return found


_E2 = {
    "paper": "e2capsnet",
    "protocol": "RAF-DB basic, 7 classes, official train/test",
    "selection": "test",
    "note": "the paper does not say how the model was chosen; the authors' code "
    "(ShanCao18/E2-Capsnet) reports the best test accuracy over its 300 epochs",
}
_AU_NOTE = (
    "ours: 96x96 capsule net from scratch; ours_vgg / ours_vggf: VGG16 base pretrained on "
    "ImageNet / VGG-Face ('external data'); fixed schedules, no model selection stated"
)
_BP4D = {
    "paper": "au_capsules",
    "protocol": "BP4D, 3-fold subject-independent CV, 12 AUs, results collated across folds",
    "selection": "last",
    "note": _AU_NOTE,
}
_DISFA = {
    **_BP4D,
    "protocol": "DISFA, 3-fold subject-independent CV, 8 AUs, fine-tuned from BP4D, collated",
}
_CKPLUS_RASHID = {"paper": "au_capsules", "protocol": "CK+, 8 classes, 10-fold CV, fold mean"}
_BP4D_AUS = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
_DISFA_AUS = (1, 2, 4, 6, 9, 12, 25, 26)
_LI = {
    "paper": "lbp_attention",
    "protocol": "FER2013, train 28,709 / test 3,589 (public or private test not stated)",
}
_LI_FOLDS = "5-fold CV (subject independence not stated)"
_LI_BENCHMARK = [  # dataset, source, protocol, (full, no_lbp, no_attention)
    ("fer2013", "Table 4", _LI["protocol"], (75.82, 67.73, 73.96)),
    ("ckplus", "Table 5", f"CK+, last 3 frames, 6 classes, {_LI_FOLDS}", (98.68, 97.53, 97.10)),
    (
        "oulu_casia",
        "Table 6, Sec. 4.2.3",
        f"Oulu-CASIA, last 3 frames, 6 classes, {_LI_FOLDS}",
        (94.63, 93.52, 91.17),
    ),
    ("jaffe", "Table 7", f"JAFFE, 213 images, 7 classes, {_LI_FOLDS}", (98.52, 96.53, 95.12)),
]
_LIU = {
    "paper": "capsule_lstm",
    "protocol": "MMI, 208 sequences of 6 basic emotions, 16 peak frames each; split not stated",
}
_MEEN = {
    "paper": "feature_attention",
    "protocol": "FER2013, train / val / test 28,709 (printed 28,798) / 3,589 / 3,589",
    "note": "how the validation set was used is not stated",
}

#: The papers' own numbers (not the baselines they cite), in percent as printed. The tables
#: of the text copies are garbled in places: every number here was checked against the
#: paper's own claims in the text (e.g. "outperforms AVGGnet by 5.95%") or against its
#: table's average row; what could not be checked is left out and said so in a ``note``.
PAPER_TABLES: tuple[PaperNumber, ...] = tuple(
    # E2-Capsnet (Cao, Yao, An)
    _rows(
        _E2,
        "ablation",
        "rafdb",
        "Table 1",
        [
            ("vgg16", 78.14, "VGG16 from scratch"),
            ("capsnet", 76.12, "Sabour et al.'s capsule network"),
            ("avggnet", 79.29, "VGG16 + AU attention"),
            ("rccnet", 84.78, "VGG16 convolutions + capsules, no attention"),
            ("e2capsnet", 85.24),
        ],
    )
    + _rows(_E2, "benchmark", "rafdb", "Table 2", [("e2capsnet", 85.24)])
    + _rows(
        {**_E2, "protocol": "EmotioNet, split not stated"},
        "benchmark",
        "emotionet",
        "Table 2",
        [("e2capsnet", 55.91)],
    )
    # Facial Action Unit Detection with Capsules (Rashid & Lee)
    + _per_au(
        _BP4D,
        "bp4d",
        "f1",
        "Table 1 (F1-frame)",
        _BP4D_AUS,
        {
            "ours": [46.8, 29.1, 52.9, 75.3, 77.6, 82.4, 85, 65.7, 33.7, 60.6, 36.9, 43.1, 57.4],
            "ours_vgg": [46.3, 41.6, 50.6, 77, 75.7, 82.5, 85.7, 63.1, 37.3, 64.6, 40, 50.4, 59.6],
            "ours_vggf": [
                47.3,
                39.9,
                52.8,
                77.9,
                79.9,
                84,
                88.1,
                67.2,
                49.2,
                65.4,
                47.7,
                55.1,
                62.9,
            ],
        },
    )
    + _per_au(
        _BP4D,
        "bp4d",
        "auc",
        "Table 2 (left)",
        _BP4D_AUS,
        {
            "ours": [65.7, 56.0, 70.2, 71.3, 60.6, 70.8, 74.6, 56.7, 59.4, 66.1, 61.6, 67.6, 65.0],
            "ours_vgg": [
                65.3,
                64.8,
                70,
                73.9,
                62.4,
                68.3,
                80.8,
                55.8,
                61.5,
                69.7,
                64.4,
                73.9,
                67.6,
            ],
            "ours_vggf": [
                66.1,
                63.7,
                71.8,
                73.7,
                68.5,
                70.1,
                80.8,
                57.5,
                71.2,
                71,
                69.6,
                77.4,
                70.1,
            ],
        },
    )
    + _per_au(
        _DISFA,
        "disfa",
        "auc",
        "Table 2 (right)",
        _DISFA_AUS,
        {
            "ours": [58.2, 61.4, 72.4, 64.9, 66.1, 76.1, 75.6, 73.2, 68.5],
            "ours_vggf": [67.6, 70.0, 81.2, 81.9, 76.0, 85.5, 85.7, 72.7, 77.6],
        },
    )
    + _per_au(
        _DISFA,
        "disfa",
        "f1",
        "Table 3 (right, F1-frame)",
        _DISFA_AUS,
        {"ours_vggf": [28.7, 29, 64.5, 58.6, 51.2, 72.4, 81.6, 54.5, 55.1]},
    )
    + _rows(
        _DISFA,
        "au_detection",
        "disfa",
        "Table 3 (left, F1-frame)",
        [
            (
                "ours",
                42.3,
                "the per-AU values of this column are garbled in the text copy (they do not "
                "average to 42.3) and are left out; the mean agrees with the text (15.6 "
                "points above DRML's 26.7)",
            )
        ],
        metric="f1_mean",
    )
    + _rows(
        {**_CKPLUS_RASHID, "selection": "last"},
        "emotion",
        "ckplus",
        "Table 4 (left)",
        [("ours", 93.7, "the 96x96 capsule net; the authors' code evaluates the last epoch")],
    )
    + _rows(
        {**_CKPLUS_RASHID, "selection": "test"},
        "emotion",
        "ckplus",
        "Table 4 (left), 'Ours-Max'",
        [("ours", 96.2, "'Ours-Max': the best test accuracy reached during training")],
    )
    # Attention Mechanism-based CNN for FER (Li, Jin, Zhou, Kubota, Ju)
    + _rows(
        _LI,
        "lbp",
        "fer2013",
        "Table 1",
        [
            ("lbp_original", 72.56),
            ("lbp_uniform", 70.32),
            ("full", 75.82, "circle LBP, the paper's choice"),
            ("no_lbp", 67.73),
        ],
    )
    + _rows(
        _LI,
        "modules",
        "fer2013",
        "Table 2",
        [
            ("no_feature_extraction", 57.86),
            ("no_attention", 73.96),
            ("no_reconstruction", 74.25),
            ("full", 75.82),
        ],
    )
    + _rows(
        _LI,
        "dilation",
        "fer2013",
        "Table 3",
        [
            ("dilation_1", 74.83, "configuration A"),
            ("dilation_2", 73.91, "configuration B"),
            ("dilation_3", 75.52, "configuration C"),
            ("dilation_4", 74.31, "configuration D"),
            ("full", 75.82, "configuration E, dilation rates 2, 3, 4, 5"),
        ],
    )
    + [
        number
        for dataset, source, protocol, values in _LI_BENCHMARK
        for number in _rows(
            {**_LI, "protocol": protocol},
            "benchmark",
            dataset,
            source,
            list(zip(("full", "no_lbp", "no_attention"), values, strict=True)),
        )
    ]
    # An optimized Capsule-LSTM model (Liu et al.)
    + _rows(
        _LIU,
        "loss",
        "mmi",
        "Table 4.1",
        [
            ("lstm_margin_no_recon", 65.46, "capsule margin + LSTM margin"),
            ("lstm_margin", 68.30, "capsule margin + reconstruction + LSTM margin"),
            ("full", 72.11, "capsule margin + reconstruction + LSTM cross-entropy"),
            ("no_recon", 69.50, "capsule margin + LSTM cross-entropy"),
        ],
    )
    + _rows(_LIU, "benchmark", "mmi", "Table 4.2", [("full", 72.11)])
    + _rows(
        _LIU,
        "benchmark",
        "mmi",
        "Sec. 4.3 on Fig. 4.3",
        [("full", 95.0, "'reaches 95%' in the text; fear is only said to be below 50%")],
        metric="per_class_accuracy.happiness",
    )
    # Facial Emotion Recognition using Facial Features as an Attention Mechanism (Meen et al.)
    + _rows(
        _MEEN,
        "models",
        "fer2013",
        "Table 1",
        [
            ("vgg19", 72.61, "baseline"),
            ("model1_all", 72.9, "weighted dot product (Eq. 2)"),
            ("model1_averaging", 73.1, "weighted dot product (Eq. 2)"),
            ("model2_all", 73.08, "concatenation"),
            ("model2_averaging", 72.69, "weighted dot product"),
            ("model3_facial", 73.35, "simple dot product (Eq. 1)"),
            ("model3_emotion", 73.08, "simple dot product (Eq. 1)"),
            ("model3_combination", 72.97, "simple dot product (Eq. 1)"),
            ("model3_separately", 73.59, "simple dot product (Eq. 1); the best model"),
        ],
    )
)
