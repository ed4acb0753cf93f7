"""The reproduction scoreboard: every number of the papers' tables beside ours, with a verdict.

:func:`scoreboard` matches each :class:`~fernb.results.PaperNumber` with the run records
(:func:`fernb.results.read_records`) of the same paper, experiment, variant and metric, on
the paper's own dataset or on one that holds the same images
(:data:`fernb.results.SAME_DATA`), and gives it a status:

=====================  ======================================================================
status                 meaning
=====================  ======================================================================
``reproduced``         our validation-selected mean is within ``tolerance`` points of theirs
``missed``             ours is more than ``tolerance`` points below theirs
``above``              ours is more than ``tolerance`` points above theirs (also a failure
                       to reproduce: usually a different protocol)
``owed``               the dataset is here, no run of this cell is recorded yet
``not runnable here``  the paper's dataset is not available to this project (its loader
                       is ready for readers who have it)
=====================  ======================================================================

A number without a run on its own data may show our runs of the same configuration on the
stand-in dataset (:data:`STAND_IN`): for orientation, not a reproduction, so with no gap.
"""

from __future__ import annotations

import pandas as pd

from fernb.results import SAME_DATA, paper_tables, share_runs, shared_sources, summarise

__all__ = ["AVAILABLE", "STAND_IN", "STATUSES", "scoreboard", "status_counts"]

#: Datasets this project holds (``../shared/datasets`` in the development workspace).
AVAILABLE: frozenset[str] = frozenset({"fer2013", "ckplus48", "synthetic"})
#: The real dataset every chapter falls back on where the paper's data is not here.
STAND_IN = "ckplus48"
STATUSES: tuple[str, ...] = ("reproduced", "missed", "above", "owed", "not runnable here")

_KEYS = ["paper", "experiment", "variant", "metric"]


def _ours(records: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean, std and count of each metric per configuration and our protocol (long form)."""
    by = ["paper", "experiment", "variant", "dataset", "protocol", "selection"]
    parts = []
    for metric in metrics:
        if records.empty or f"metrics.{metric}" not in records.columns:
            continue
        known = records.dropna(subset=[f"metrics.{metric}"])
        provenance = known.groupby(by).agg(
            epochs=("epochs", "max"),
            devices=("device", lambda d: ", ".join(sorted(set(d)))),
            records=("path", list),
            notebooks=("notebook", lambda n: sorted(set(n.dropna()))),
        )
        summary = summarise(known, by=by, metric=metric)
        summary = summary.join(shared_sources(known, by=by, metric=metric)).join(provenance)
        parts.append(summary.reset_index().assign(metric=metric))
    columns = [*by, "mean", "std", "n", "shared_from", "n_shared", "epochs", "devices"]
    columns += ["records", "notebooks", "metric"]
    ours = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return ours


def _paper_dataset(ours: pd.DataFrame) -> pd.Series:
    """The paper's name for each row's dataset (:data:`SAME_DATA`), or the dataset itself."""
    names = [
        SAME_DATA.get(p, {}).get(d, d) for p, d in zip(ours["paper"], ours["dataset"], strict=True)
    ]
    return pd.Series(names, index=ours.index, dtype=object)


def _runnable(paper: str, dataset: str, available: frozenset[str]) -> bool:
    """Whether the paper's ``dataset``, or a set of the same images, is here."""
    same = {theirs for ours, theirs in SAME_DATA.get(paper, {}).items() if ours in available}
    return dataset in available or dataset in same


def _verdict(gap: float, tolerance: float) -> str:
    if abs(gap) <= tolerance:
        return "reproduced"
    return "missed" if gap < 0 else "above"


def _tried(row: pd.Series) -> str:
    """What a row of ours is: how many runs, how long, where, under which protocol."""
    runs = f"{int(row['n'])} run{'s' if row['n'] > 1 else ''}"
    tried = f"{runs} of {int(row['epochs'])} epochs on {row['devices']}; {row['protocol']}"
    if row["n_shared"]:
        shared = f"experiment {row['shared_from']} (one network in both tables)"
        if row["n_shared"] == row["n"]:
            tried += f"; the same runs as {shared}"
        else:
            tried += f"; {int(row['n_shared'])} of them recorded for {shared}"
    return tried


_COLUMNS = [
    "paper",
    "source",
    "experiment",
    "variant",
    "dataset",
    "metric",
    "theirs",
    "their_selection",
    "ours",
    "ours_std",
    "n",
    "ours_test_selected",
    "gap",
    "status",
    "ours_dataset",
    "compared",
    "protocol",
    "tried",
    "their_protocol",
    "note",
    "records",
    "notebooks",
]


def scoreboard(
    records: pd.DataFrame,
    papers: pd.DataFrame | None = None,
    tolerance: float = 1.0,
    available: frozenset[str] = AVAILABLE,
) -> pd.DataFrame:
    """Every paper number beside our runs, one row per paper number and protocol of ours.

    ``records`` is :func:`fernb.results.read_records`' table; ``papers`` defaults to
    :func:`fernb.results.paper_tables`. ``ours`` is the mean of the validation-selected
    runs over folds and seeds, in percent (``ours_test_selected``: the same runs' best
    test epoch, where recorded). ``gap = ours - theirs`` in points, and the status, come
    from runs on the paper's own data (``compared``); a number without such runs shows our
    :data:`STAND_IN` runs of the same configuration, if any, with no gap. A run that the
    paper prints in several tables fills each (:func:`fernb.results.share_runs`).
    """
    papers = paper_tables() if papers is None else papers
    records = share_runs(records, papers)
    theirs = papers.rename(
        columns={"value": "theirs", "protocol": "their_protocol", "selection": "their_selection"}
    )
    ours = _ours(records, sorted(theirs["metric"].unique()))
    ours = ours.assign(paper_dataset=_paper_dataset(ours)).rename(
        columns={"dataset": "ours_dataset"}
    )
    test = ours[ours["selection"] == "test"][[*_KEYS, "ours_dataset", "protocol", "mean"]]
    val = ours[ours["selection"] == "val"].merge(
        test.rename(columns={"mean": "test_mean"}),
        on=[*_KEYS, "ours_dataset", "protocol"],
        how="left",
    )
    own = theirs.merge(
        val.rename(columns={"paper_dataset": "dataset"}), on=[*_KEYS, "dataset"], how="inner"
    ).assign(compared=True)
    open_cells = theirs.merge(own[[*_KEYS, "dataset"]], how="left", indicator=True)
    open_cells = open_cells[open_cells["_merge"] == "left_only"].drop(columns="_merge")
    # a chapter whose paper used the stand-in's images compares those runs, never borrows them
    stand_in = val[(val["ours_dataset"] == STAND_IN) & (val["paper_dataset"] == STAND_IN)]
    stand_in = stand_in.drop(columns="paper_dataset")
    borrowed = open_cells.merge(stand_in, on=_KEYS, how="left").assign(compared=False)
    rows = pd.concat([own, borrowed], ignore_index=True)

    rows["ours"] = rows["mean"].astype(float) * 100
    rows["ours_std"] = rows["std"].astype(float) * 100
    rows["ours_test_selected"] = rows["test_mean"].astype(float) * 100
    rows["gap"] = (rows["ours"] - rows["theirs"]).where(rows["compared"])
    rows["status"] = [
        _verdict(gap, tolerance)
        if compared
        else ("owed" if _runnable(paper, dataset, available) else "not runnable here")
        for compared, gap, paper, dataset in zip(
            rows["compared"], rows["gap"], rows["paper"], rows["dataset"], strict=True
        )
    ]
    has_run = rows["mean"].notna()
    rows["tried"] = ""
    rows.loc[has_run, "tried"] = rows[has_run].apply(_tried, axis=1)
    for column in ("records", "notebooks"):
        rows[column] = [v if isinstance(v, list) else [] for v in rows[column]]
    order = {name: k for k, name in enumerate(dict.fromkeys(theirs["paper"]))}
    rows = rows.assign(_order=rows["paper"].map(order))
    rows = rows.sort_values(["_order", "source", "dataset", "variant", "metric"], kind="stable")
    return rows.reset_index(drop=True)[_COLUMNS]


def status_counts(board: pd.DataFrame) -> pd.DataFrame:
    """Rows of the scoreboard per paper and status (a paper number compared under two of
    our protocols counts twice)."""
    counts = pd.crosstab(board["paper"], board["status"])
    return counts.reindex(columns=[s for s in STATUSES if s in counts.columns], fill_value=0)
