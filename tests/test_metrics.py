"""Expression and AU metrics against scikit-learn and hand-computed cases."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from fernb.metrics import (
    accuracy,
    aggregate,
    au_auc,
    au_f1,
    au_metrics,
    confusion_matrix,
    expression_metrics,
    macro_f1,
    mean_au_f1,
    paired_differences,
    per_class_accuracy,
    row_normalise,
)


def _classification(n: int = 200, classes: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    scores = rng.normal(size=(n, classes))
    scores[np.arange(n), labels] += 1.0  # better than chance, far from perfect
    return labels, scores


def _au_problem(n: int = 300, k: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, k)) < np.linspace(0.1, 0.6, k)).astype(np.float64)
    scores = np.clip(0.35 * targets + rng.random((n, k)) * 0.7, 0, 1)
    targets[rng.random((n, k)) < 0.1] = np.nan  # unknown entries, as in CK+
    return targets, scores


def test_accuracy_takes_labels_or_scores_as_arrays_or_tensors() -> None:
    labels, scores = _classification()
    expected = skm.accuracy_score(labels, scores.argmax(1))
    assert accuracy(labels, scores) == pytest.approx(expected)
    assert accuracy(labels, scores.argmax(1)) == pytest.approx(expected)
    assert accuracy(torch.from_numpy(labels), torch.from_numpy(scores)) == pytest.approx(expected)
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75


def test_macro_f1_matches_sklearn_from_labels_scores_and_tensors() -> None:
    labels, scores = _classification()
    expected = skm.f1_score(labels, scores.argmax(axis=1), average="macro")
    assert macro_f1(labels, scores) == pytest.approx(expected)
    assert macro_f1(torch.from_numpy(labels), torch.from_numpy(scores)) == pytest.approx(expected)
    assert macro_f1(labels, scores.argmax(axis=1), n_classes=5) == pytest.approx(expected)


def test_macro_f1_by_hand_leaves_out_classes_never_seen() -> None:
    labels = [0, 0, 1, 1, 2, 2]
    predicted = [0, 1, 1, 1, 3, 0]
    # F1: class 0 2/4, class 1 4/5, class 2 (never predicted) 0, class 3 (only predicted) 0;
    # class 4 is neither a label nor a prediction: left out, as scikit-learn does
    assert macro_f1(labels, predicted, n_classes=5) == pytest.approx((0.5 + 0.8) / 4)
    assert macro_f1(labels, predicted) == pytest.approx(
        skm.f1_score(labels, predicted, average="macro")
    )
    with pytest.raises(ValueError, match="imply 4 classes"):
        macro_f1(labels, predicted, n_classes=3)


def test_per_class_accuracy_is_recall_and_nan_for_absent_classes() -> None:
    labels, scores = _classification()
    expected = skm.recall_score(labels, scores.argmax(1), average=None)
    np.testing.assert_allclose(per_class_accuracy(labels, scores), expected)
    # class 0: 1 of 2 right; class 1: 1 of 1; class 2 has no images
    np.testing.assert_array_equal(
        per_class_accuracy([0, 0, 1], [0, 1, 1], n_classes=3), [0.5, 1.0, np.nan]
    )


def test_confusion_matrix_raw_and_row_normalised() -> None:
    labels, scores = _classification()
    predicted = scores.argmax(1)
    np.testing.assert_array_equal(
        confusion_matrix(labels, scores), skm.confusion_matrix(labels, predicted)
    )
    shares = confusion_matrix(labels, scores, normalise=True)
    np.testing.assert_allclose(shares, skm.confusion_matrix(labels, predicted, normalize="true"))
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.diag(shares), per_class_accuracy(labels, scores))


def test_a_class_without_images_has_an_undefined_row() -> None:
    matrix = confusion_matrix([0, 0, 2], [0, 2, 2], n_classes=3)
    np.testing.assert_array_equal(matrix, [[1, 0, 1], [0, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(
        row_normalise(matrix), [[0.5, 0, 0.5], [np.nan, np.nan, np.nan], [0, 0, 1]]
    )


def test_unlabelled_images_are_refused() -> None:
    with pytest.raises(ValueError, match="unlabelled"):
        accuracy([0, -1, 1], [0, 1, 1])


def test_au_f1_matches_sklearn_on_the_known_entries() -> None:
    targets, scores = _au_problem()
    expected = []
    for k in range(targets.shape[1]):
        known = ~np.isnan(targets[:, k])
        expected.append(skm.f1_score(targets[known, k], scores[known, k] >= 0.5))
    np.testing.assert_allclose(au_f1(targets, scores), expected)
    np.testing.assert_allclose(au_f1(torch.tensor(targets), torch.tensor(scores)), expected)
    assert mean_au_f1(targets, scores) == pytest.approx(np.mean(expected))


def test_au_f1_by_hand_with_threshold_and_intensity_targets() -> None:
    # AU intensities 0-5; present at >= 2: truth = [1, 1, 1, 0, 0, nan -> left out]
    intensity = np.array([[3.0], [2.0], [5.0], [1.0], [0.0], [np.nan]])
    scores = np.array([[0.9], [0.2], [0.7], [0.8], [0.1], [0.9]])
    # threshold 0.6: predicted [1, 0, 1, 1, 0]: TP 2, FN 1, FP 1 -> F1 = 4 / 6
    np.testing.assert_allclose(au_f1(intensity, scores, threshold=0.6, present_at=2), [4 / 6])
    # threshold 0.1: all five predicted: TP 3, FP 2 -> F1 = 6 / 8
    np.testing.assert_allclose(au_f1(intensity, scores, threshold=0.1, present_at=2), [6 / 8])


def test_au_f1_of_an_au_never_present() -> None:
    targets = np.zeros((4, 2))
    scores = np.array([[0.1, 0.9], [0.2, 0.1], [0.3, 0.1], [0.0, 0.1]])
    # AU 0 never present, never predicted: 0 / 0 -> NaN, skipped by the mean;
    # AU 1 never present but once predicted: 2 TP / (2 TP + FP + FN) = 0 / 1 = 0
    np.testing.assert_array_equal(au_f1(targets, scores), [np.nan, 0.0])
    assert mean_au_f1(targets, scores) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        sklearn_default = skm.f1_score(targets[:, 0], scores[:, 0] >= 0.5)
    assert au_f1(targets, scores, zero_division=0.0)[0] == sklearn_default == 0.0


def test_au_auc_matches_sklearn_and_is_nan_where_undefined() -> None:
    targets, scores = _au_problem(seed=1)
    expected = []
    for k in range(targets.shape[1]):
        known = ~np.isnan(targets[:, k])
        expected.append(skm.roc_auc_score(targets[known, k], scores[known, k]))
    np.testing.assert_allclose(au_auc(targets, scores), expected)

    targets = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, np.nan], [0.0, 0.0]])
    scores = np.array([[0.9, 0.5], [0.1, 0.4], [0.8, 0.3], [0.2, 0.2]])
    with pytest.warns(UndefinedMetricWarning, match="AU column 1"):
        auc = au_auc(targets, scores)
    np.testing.assert_array_equal(auc, [1.0, np.nan])  # AU 0 ranked perfectly
    with pytest.warns(UndefinedMetricWarning, match="AU column 1"):
        assert au_auc(targets, 1 - scores)[0] == 0.0  # AU 0 ranked backwards


def test_record_dicts_leave_out_undefined_values() -> None:
    summary = expression_metrics([0, 0, 1], [0, 1, 1], ["anger", "fear", "surprise"])
    assert summary["accuracy"] == 2 / 3
    assert summary["per_class_accuracy"] == {"anger": 0.5, "fear": 1.0}  # no surprise faces

    targets = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    scores = np.array([[0.9, 0.1], [0.6, 0.2], [0.8, 0.3], [0.2, 0.4]])
    summary = au_metrics(targets, scores, ["AU1", "AU2"])
    assert summary == {
        "f1_mean": pytest.approx(0.8),  # AU1: TP 2, FP 1 -> 4 / 5; AU2 undefined
        "auc_mean": 1.0,
        "f1": {"AU1": pytest.approx(0.8)},
        "auc": {"AU1": 1.0},
    }


def test_expression_metrics_keep_the_confusion_of_every_class_by_hand() -> None:
    # true: anger, fear, fear, fear; predicted: anger, fear, anger, fear
    summary = expression_metrics([0, 1, 1, 1], [0, 1, 0, 1], ["anger", "fear", "surprise"])
    assert summary["confusion"] == {
        "anger": {"anger": 1, "fear": 0, "surprise": 0},
        "fear": {"anger": 1, "fear": 2, "surprise": 0},
        "surprise": {"anger": 0, "fear": 0, "surprise": 0},
    }
    assert summary["accuracy"] == 0.75
    assert summary["per_class_accuracy"] == {"anger": 1.0, "fear": pytest.approx(2 / 3)}


def test_aggregate_gives_mean_sample_std_and_count_per_group() -> None:
    runs = [
        {"variant": "a", "fold": f, "seed": s, "accuracy": acc, "f1": {"AU1": f1}}
        for f, s, acc, f1 in [(0, 0, 0.5, 0.1), (1, 0, 0.7, np.nan), (0, 1, 0.9, 0.3)]
    ] + [{"variant": "b", "fold": 0, "seed": 0, "accuracy": 0.4, "f1": {"AU1": 0.2}}]
    table = aggregate(runs, by=["variant"])
    assert sorted(table.columns.get_level_values(0).unique()) == ["accuracy", "f1.AU1"]
    a, b = table.loc["a"], table.loc["b"]
    assert a["accuracy", "mean"] == pytest.approx(0.7)
    assert a["accuracy", "std"] == pytest.approx(np.std([0.5, 0.7, 0.9], ddof=1))
    assert a["accuracy", "n"] == 3
    assert a["f1.AU1", "mean"] == pytest.approx(0.2) and a["f1.AU1", "n"] == 2
    assert b["accuracy", "n"] == 1 and np.isnan(b["accuracy", "std"])

    overall = aggregate(runs, metrics=["accuracy"])
    assert overall.loc["all", ("accuracy", "mean")] == pytest.approx(np.mean([0.5, 0.7, 0.9, 0.4]))


def _paired_table() -> pd.DataFrame:
    """Three configurations on folds 0-3 of seed 0; c did not run fold 3."""
    accuracy = {
        "a": [0.80, 0.70, 0.90, 0.80],
        "b": [0.60, 0.55, 0.72, 0.62],
        "c": [0.78, 0.72, 0.85, None],
    }
    rows = [
        {"variant": name, "fold": fold, "seed": 0, "accuracy": value}
        for name, values in accuracy.items()
        for fold, value in enumerate(values)
        if value is not None
    ]
    return pd.DataFrame(rows)


def test_paired_differences_against_the_best_by_hand() -> None:
    paired = paired_differences(_paired_table(), by="variant", metric="accuracy")
    assert paired.index.tolist() == ["a", "c", "b"] and set(paired["against"]) == {"a"}
    # b - a = -.20 -.15 -.18 -.18: mean -.1775, sample variance .001275 / 3, t(.975, 3) = 3.1824
    half = 3.182446305284263 * np.sqrt(0.001275 / 3) / np.sqrt(4)
    b = paired.loc["b"]
    assert b["difference"] == pytest.approx(-0.1775) and b["n"] == 4 and b["ahead"] == 0
    assert (b["ci_low"], b["ci_high"]) == pytest.approx((-0.1775 - half, -0.1775 + half))
    assert b["clear"]
    # c - a on folds 0-2 only = -.02 .02 -.05: one pair ahead, an interval across 0
    c = paired.loc["c"]
    assert c["difference"] == pytest.approx(-1 / 60) and c["n"] == 3 and c["ahead"] == 1
    assert not c["clear"]
    a = paired.loc["a"]
    assert a["difference"] == 0 and a["ahead"] == 0 and not a["clear"]


def test_paired_differences_match_scipy_paired_t() -> None:
    table = _paired_table()
    paired = paired_differences(table, by="variant", metric="accuracy", against="b")
    wide = table.pivot(index="fold", columns="variant", values="accuracy").dropna()
    reference = stats.ttest_rel(wide["c"], wide["b"]).confidence_interval(0.95)
    c = paired.loc["c"]
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((reference.low, reference.high))
    assert c["clear"] and c["ahead"] == 3 and set(paired["against"]) == {"b"}


def test_paired_differences_pair_an_official_split_by_seed() -> None:
    """Runs without a fold (one official split) pair on the seed alone."""
    table = pd.DataFrame(
        {
            "variant": ["full", "full", "no_lbp", "no_lbp"],
            "fold": [None, None, None, None],
            "seed": [0, 1, 0, 1],
            "accuracy": [0.5, 0.6, 0.55, 0.58],
        }
    )
    paired = paired_differences(table, by="variant", metric="accuracy", against="full")
    assert paired.loc["no_lbp", "difference"] == pytest.approx(0.015)
    assert paired.loc["no_lbp", "n"] == 2 and paired.loc["no_lbp", "ahead"] == 1
    assert paired.loc["full", "difference"] == 0 and not paired.loc["full", "clear"]


def test_paired_differences_refuse_mixed_runs_and_an_unknown_reference() -> None:
    table = _paired_table()
    with pytest.raises(ValueError, match="one dataset and protocol"):
        paired_differences(pd.concat([table, table]), by="variant", metric="accuracy")
    with pytest.raises(ValueError, match="'z'"):
        paired_differences(table, by="variant", metric="accuracy", against="z")
