"""Metrics of the five papers: expression accuracy and action-unit F1 and AUC.

Who reports what:

- accuracy: every expression paper. E2-Capsnet on RAF-DB and EmotioNet; Li et al. on
  FER2013 and (mean over 5 folds) CK+, JAFFE and Oulu-CASIA; Capsule-LSTM on MMI; Meen et
  al. on FER2013; Rashid & Lee on CK+ (mean over 10 folds).
- per-class accuracy (recall of each class) and the confusion matrix: Capsule-LSTM's MMI
  confusion matrix and its per-class statements.
- macro-F1 (the unweighted mean of the per-class F1): none of the papers; the book's
  comparison of the methods under one protocol reports it beside accuracy, since CK+ and
  FER2013 are unbalanced.
- per-AU "F1-frame" and its mean over AUs: Rashid & Lee on BP4D (12 AUs) and DISFA (8 AUs),
  frames thresholded at 0.5.
- per-AU ROC AUC and its mean: Rashid & Lee on BP4D and DISFA.

Inputs are NumPy arrays or torch tensors. Expression labels are ints; predictions are ints
or N x C scores (their argmax is the prediction). AU targets are N x K occurrence (0/1) or
intensity matrices, NaN where unknown (CK+ codes some AUs without an intensity): unknown
entries are left out of that AU's metric only. All metrics are fractions in [0, 1].
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeAlias

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

__all__ = [
    "RUN_IDS",
    "accuracy",
    "aggregate",
    "au_auc",
    "au_f1",
    "au_metrics",
    "confusion_matrix",
    "expression_metrics",
    "macro_f1",
    "mean_au_f1",
    "paired_differences",
    "per_class_accuracy",
    "row_normalise",
]

#: Columns that identify a run rather than measure it; :func:`aggregate` never averages them.
RUN_IDS: tuple[str, ...] = ("fold", "seed")

#: What the metrics take: a NumPy array, a torch tensor (on any device) or nested sequences.
Values: TypeAlias = np.ndarray | torch.Tensor | Sequence


def _numpy(values: Values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _labels_and_predictions(
    labels: Values, predicted: Values
) -> tuple[np.ndarray, np.ndarray, int]:
    """Int labels, int predictions (the argmax of scores) and the number of classes implied:
    the number of score columns, else the largest label or prediction + 1."""
    labels = _numpy(labels).astype(np.int64)
    predicted = _numpy(predicted)
    n_scores = 0
    if predicted.ndim == 2:
        n_scores = predicted.shape[1]
        predicted = predicted.argmax(axis=1)
    predicted = predicted.astype(np.int64)
    if labels.ndim != 1 or labels.shape != predicted.shape:
        raise ValueError(
            f"labels ({labels.shape}) and predictions ({predicted.shape}) must be N and N "
            "(or N x C scores)"
        )
    if labels.size and min(labels.min(), predicted.min()) < 0:
        raise ValueError("labels and predictions must be >= 0; drop unlabelled (-1) images first")
    implied = max(n_scores, labels.max(initial=-1) + 1, predicted.max(initial=-1) + 1)
    return labels, predicted, int(implied)


def accuracy(labels: Values, predicted: Values) -> float:
    """Share of correct predictions, ``mean(predicted == labels)``."""
    labels, predicted, _ = _labels_and_predictions(labels, predicted)
    return float(skm.accuracy_score(labels, predicted))


def per_class_accuracy(
    labels: Values, predicted: Values, n_classes: int | None = None
) -> np.ndarray:
    """Recall of each class, ``TP_c / (number of images of class c)``; NaN for absent classes.

    ``n_classes`` defaults to the number of score columns, else the largest label + 1.
    """
    labels, predicted, implied = _labels_and_predictions(labels, predicted)
    return skm.recall_score(
        labels,
        predicted,
        labels=np.arange(n_classes or implied),
        average=None,
        zero_division=np.nan,
    )


def macro_f1(labels: Values, predicted: Values, n_classes: int | None = None) -> float:
    """Unweighted mean over classes of ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``.

    As scikit-learn's ``f1_score(average="macro")``, the mean is over the classes that occur
    among the labels or the predictions: a class with neither has ``0 / 0`` and is left out,
    and a class only predicted, or never predicted, counts with F1 = 0. ``n_classes`` (if
    given) is checked against the labels, predictions and score columns.
    """
    labels, predicted, implied = _labels_and_predictions(labels, predicted)
    if n_classes is not None and implied > n_classes:
        raise ValueError(f"labels, predictions or scores imply {implied} classes, not {n_classes}")
    if not labels.size:
        raise ValueError("macro-F1 of no predictions is undefined")
    occurring = np.union1d(labels, predicted)
    return float(skm.f1_score(labels, predicted, labels=occurring, average="macro"))


def row_normalise(matrix: Values) -> np.ndarray:
    """Divide each row by its sum (a confusion matrix's rows become recall shares).

    A row summing to 0 (a class with no images) becomes NaN: its shares are undefined.
    """
    matrix = _numpy(matrix).astype(np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, matrix / totals, np.nan)


def confusion_matrix(
    labels: Values, predicted: Values, n_classes: int | None = None, normalise: bool = False
) -> np.ndarray:
    """C x C counts, rows the true class and columns the predicted one.

    With ``normalise=True`` each row is divided by its total (:func:`row_normalise`), so the
    diagonal holds the per-class accuracy.
    """
    labels, predicted, implied = _labels_and_predictions(labels, predicted)
    counts = skm.confusion_matrix(labels, predicted, labels=np.arange(n_classes or implied))
    return row_normalise(counts) if normalise else counts


def _au_columns(
    targets: Values, scores: Values, present_at: float
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield, per AU, its known targets as 0/1 and the matching scores."""
    targets = _numpy(targets).astype(np.float64)
    scores = _numpy(scores).astype(np.float64)
    if targets.shape != scores.shape or targets.ndim != 2:
        raise ValueError(
            f"targets ({targets.shape}) and scores ({scores.shape}) must both be N x K"
        )
    for k in range(targets.shape[1]):
        known = ~np.isnan(targets[:, k])
        yield k, (targets[known, k] >= present_at).astype(np.int64), scores[known, k]


def _undefined(k: int, why: str) -> float:
    warnings.warn(f"AU column {k}: {why}; its metric is NaN", UndefinedMetricWarning, stacklevel=3)
    return np.nan


def au_f1(
    targets: Values,
    scores: Values,
    threshold: float = 0.5,
    present_at: float = 0.5,
    zero_division: float = np.nan,
) -> np.ndarray:
    """Per-AU binary F1 over frames, the AU papers' "F1-frame" (Rashid & Lee, Tables 1, 3).

    ``F1 = 2 TP / (2 TP + FP + FN)`` per AU, a frame being predicted positive when its score
    is ``>= threshold`` (capsule lengths or probabilities: 0.5) and truly positive when its
    target is ``>= present_at`` (0/1 occurrence: 0.5; DISFA intensity: usually 2). NaN
    targets are left out. An AU neither present nor predicted in any frame has ``0 / 0``:
    it gets ``zero_division`` (scikit-learn's argument; NaN here, so means skip it, where
    scikit-learn's default would count it as 0 with a warning). An AU without any known
    target is NaN, with an ``UndefinedMetricWarning``.
    """
    f1 = []
    for k, truth, score in _au_columns(targets, scores, present_at):
        if truth.size == 0:
            f1.append(_undefined(k, "no known target"))
            continue
        predicted = (score >= threshold).astype(np.int64)
        f1.append(skm.f1_score(truth, predicted, labels=[0, 1], zero_division=zero_division))
    return np.array(f1, dtype=np.float64)


def mean_au_f1(
    targets: Values, scores: Values, threshold: float = 0.5, present_at: float = 0.5
) -> float:
    """Mean of :func:`au_f1` over the AUs where it is defined (the papers' "Avg" row)."""
    return float(np.nanmean(au_f1(targets, scores, threshold, present_at)))


def au_auc(targets: Values, scores: Values, present_at: float = 0.5) -> np.ndarray:
    """Per-AU area under the ROC curve of the scores (Rashid & Lee, Table 2).

    NaN targets are left out. Where an AU's known targets are all positive or all negative
    the AUC is undefined: NaN, with an ``UndefinedMetricWarning`` naming the AU column.
    """
    auc = []
    for k, truth, score in _au_columns(targets, scores, present_at):
        if np.unique(truth).size < 2:
            auc.append(_undefined(k, "known targets hold fewer than two classes"))
            continue
        auc.append(skm.roc_auc_score(truth, score))
    return np.array(auc, dtype=np.float64)


def _defined(names: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(names, values, strict=True) if np.isfinite(v)}


def expression_metrics(labels: Values, predicted: Values, classes: Sequence[str]) -> dict:
    """What a run record stores for expression recognition.

    ``{"accuracy": ..., "per_class_accuracy": {class: ...}, "confusion": {true: {predicted:
    count}}}``: a class without test images has no per-class accuracy and is left out; the
    confusion counts (:func:`confusion_matrix`, rows the true class) cover every class.
    """
    matrix = confusion_matrix(labels, predicted, n_classes=len(classes))
    return {
        "accuracy": accuracy(labels, predicted),
        "per_class_accuracy": _defined(
            classes, per_class_accuracy(labels, predicted, n_classes=len(classes))
        ),
        "confusion": {
            true: {guess: int(matrix[i, j]) for j, guess in enumerate(classes)}
            for i, true in enumerate(classes)
        },
    }


def au_metrics(
    targets: Values,
    scores: Values,
    au_names: Sequence[str],
    threshold: float = 0.5,
    present_at: float = 0.5,
) -> dict:
    """What a run record stores for AU detection.

    ``{"f1_mean", "auc_mean", "f1": {AU: ...}, "auc": {AU: ...}}``; the means are over the
    AUs where the metric is defined, and undefined per-AU values are left out.
    """
    f1 = au_f1(targets, scores, threshold, present_at)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # NaN AUCs are left out below
        auc = au_auc(targets, scores, present_at)
    return {
        "f1_mean": float(np.nanmean(f1)),
        "auc_mean": float(np.nanmean(auc)),
        "f1": _defined(au_names, f1),
        "auc": _defined(au_names, auc),
    }


def aggregate(
    rows: Sequence[Mapping] | pd.DataFrame,
    metrics: Sequence[str] | None = None,
    by: Sequence[str] = (),
) -> pd.DataFrame:
    """Mean, standard deviation and count of each metric over runs (folds, seeds), per group.

    ``rows`` is a DataFrame or a list of (possibly nested) metric dicts, nested keys joined
    with ``"."``. ``metrics`` defaults to every numeric column except ``by`` and
    :data:`RUN_IDS`. The result has one row per group of ``by`` (one row, ``"all"``, without
    ``by``) and columns ``(metric, "mean" | "std" | "n")``: ``std`` is the sample standard
    deviation (``ddof=1``, NaN for a single run) and ``n`` counts the runs where the metric
    is known.
    """
    table = rows if isinstance(rows, pd.DataFrame) else pd.json_normalize(list(rows), sep=".")
    if metrics is None:
        numeric = table.select_dtypes("number").columns
        metrics = [c for c in numeric if c not in set(by) | set(RUN_IDS)]
    keys = list(by) or np.full(len(table), "all")
    grouped = table.groupby(keys, dropna=False, sort=True)[list(metrics)]
    return grouped.agg(["mean", "std", "count"]).rename(columns={"count": "n"}, level=1)


def paired_differences(
    table: pd.DataFrame,
    by: str,
    metric: str,
    against: str | None = None,
    pair_on: Sequence[str] = RUN_IDS,
    confidence: float = 0.95,
) -> pd.DataFrame:
    r"""Every configuration against a reference, on the runs (folds, seeds) both made.

    ``table`` has one row per run: ``by`` names the configuration (method, variant),
    ``pair_on`` the run (a missing fold, as on an official split, is one run per seed), and
    ``metric`` the value. ``against`` is the reference configuration, by default the one
    with the highest mean. For each configuration the paired differences are
    :math:`d_i = x_i - r_i` over the runs :math:`i` both made, and the t interval of their
    mean is :math:`\bar d \pm t_{(1+c)/2,\,n-1}\, s_d / \sqrt{n}` (Student's paired t).

    Returns one row per configuration, highest mean first, indexed by ``by``: ``mean`` (over
    all its runs), ``difference`` (:math:`\bar d`), ``ci_low`` and ``ci_high`` (NaN with
    fewer than 2 pairs), ``n`` (pairs), ``ahead`` (pairs with :math:`d_i > 0`), ``clear``
    (the interval excludes 0) and ``against``. Folds of one cross-validation share training
    data, so their differences are not independent and the interval is somewhat too narrow
    (Nadeau & Bengio, *Inference for the generalization error*, 2003): a difference that is
    not clear is not established, one that is clear is likely but not proven.
    """
    keys = list(pair_on)
    table = table.assign(**{k: table[k].fillna(-1) for k in keys})
    repeated = table.duplicated([*keys, by])
    if repeated.any():
        run = table.loc[repeated, [by, *keys]].iloc[0].to_dict()
        raise ValueError(
            f"two runs of {run}: compare the runs of one dataset and protocol at a time"
        )
    runs = table.pivot(index=keys, columns=by, values=metric)
    means = runs.mean()
    reference = means.idxmax() if against is None else against
    if reference not in runs:
        raise ValueError(f"no runs of {by} = {reference!r} to compare against")
    rows = {}
    for name in means.sort_values(ascending=False).index:
        differences = (runs[name] - runs[reference]).dropna()
        n = len(differences)
        centre = differences.mean()
        half = np.nan
        if n > 1:
            spread = differences.std(ddof=1) / np.sqrt(n)
            half = stats.t.ppf((1 + confidence) / 2, n - 1) * spread
        rows[name] = {
            "mean": means[name],
            "difference": centre,
            "ci_low": centre - half,
            "ci_high": centre + half,
            "n": n,
            "ahead": int((differences > 0).sum()),
            "clear": bool(centre - half > 0 or centre + half < 0),
        }
    result = pd.DataFrame.from_dict(rows, orient="index")
    result.index.name = by
    return result.assign(against=reference)
