"""SynthFACS: determinism, ground truth, sequences, caching, options."""

from __future__ import annotations

import stat
from dataclasses import asdict

import numpy as np
import pytest

from fernb.data import EMOTIONS, load, synthetic
from fernb.data.synthetic import (
    GENERATOR_VERSION,
    Nuisance,
    SynthConfig,
    generate,
    load_synthetic,
    sample_expression,
    sample_identity,
    synthesize,
)
from fernb.face.facs import AU_NAMES, PROTOTYPES, au_index
from fernb.face.render import Pose
from fernb.results import data_fields

SMALL = {"n_subjects": 3, "samples_per_subject": 8, "difficulty": 0.6}


def test_same_options_give_byte_identical_data() -> None:
    first, again = generate(SynthConfig(**SMALL)), generate(SynthConfig(**SMALL))
    for name in ("images", "labels", "aus", "landmarks", "subjects"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    other = generate(SynthConfig(**{**SMALL, "seed": 1}))
    assert not np.array_equal(first.images, other.images)


def test_more_subjects_and_samples_leave_the_first_ones_unchanged() -> None:
    small = generate(SynthConfig(**SMALL))
    large = generate(SynthConfig(n_subjects=5, samples_per_subject=12, difficulty=0.6))
    rows = [subject * 12 + sample for subject in range(3) for sample in range(8)]
    np.testing.assert_array_equal(large.images[rows], small.images)
    np.testing.assert_array_equal(large.aus[rows], small.aus)
    np.testing.assert_array_equal(large.subjects[rows], small.subjects)


def test_the_contract_is_filled() -> None:
    data = load("synthetic", **SMALL)
    n = 3 * 8
    assert data.images.shape == (n, 48, 48) and data.images.dtype == np.uint8
    assert data.classes == list(EMOTIONS)
    assert data.au_names == list(AU_NAMES) and data.aus.shape == (n, len(AU_NAMES))
    assert data.landmarks.shape == (n, 68, 2)
    assert sorted(set(data.subjects)) == ["P000", "P001", "P002"]
    assert set(data.split) == {""}
    assert data.sequence is None and data.frame is None
    # eight samples per subject cycle through the eight emotions once
    for subject in np.unique(data.subjects):
        assert sorted(data.labels[data.subjects == subject]) == list(range(8))


def test_classes_option_restricts_the_emotions() -> None:
    basic = tuple(e for e in EMOTIONS if e != "contempt")
    data = load("synthetic", n_subjects=2, samples_per_subject=7, classes=basic)
    assert data.classes == list(basic)
    assert np.bincount(data.labels).tolist() == [2] * 7


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_at_difficulty_zero_the_aus_are_the_prototype(emotion: str) -> None:
    rng = np.random.default_rng(0)
    for _ in range(10):
        sides = sample_expression(emotion, rng, difficulty=0.0)
        present = {AU_NAMES[k] for k in np.flatnonzero(sides.max(axis=0) > 0)}
        expected = set(PROTOTYPES[emotion])
        if emotion == "disgust":
            assert present in (expected, expected - {"AU9"} | {"AU10"})
        else:
            assert present == expected
        weights = {**PROTOTYPES[emotion], "AU10": PROTOTYPES["disgust"]["AU9"]}
        for au in present:  # apex >= 3, times the weight, times at least 0.8
            assert sides.max(axis=0)[au_index(au)] >= 3 * weights[au] * 0.8


def test_contempt_is_unilateral_and_other_emotions_symmetric() -> None:
    rng = np.random.default_rng(1)
    smirk = sample_expression("contempt", rng, difficulty=0.0)
    corner = au_index("AU12")
    assert sorted([smirk[0, corner] > 0, smirk[1, corner] > 0]) == [False, True]
    fear = sample_expression("fear", rng, difficulty=1.0)
    np.testing.assert_array_equal(fear[0], fear[1])


def test_difficulty_mixes_in_other_aus_and_drops_prototype_ones() -> None:
    rng = np.random.default_rng(2)
    fear = set(PROTOTYPES["fear"])
    draws = [sample_expression("fear", rng, 1.0).max(axis=0) for _ in range(300)]
    present = [{AU_NAMES[k] for k in np.flatnonzero(d > 0)} for d in draws]
    assert any(p - fear for p in present)  # an extra AU appeared
    assert any(fear - p for p in present)  # a prototype AU was dropped
    assert all(p & fear for p in present)  # at least one prototype AU stays


def test_difficulty_zero_has_no_nuisance() -> None:
    data = load("synthetic", n_subjects=2, samples_per_subject=8, difficulty=0.0, size=64)
    for row in (0, 5, 11):
        subject = int(data.subjects[row][1:])
        identity = sample_identity(0, subject)
        sides = np.array([data.aus[row]] * 2)
        if data.classes[data.labels[row]] == "contempt":
            continue  # one-sided: data.aus holds the max over sides
        image, landmarks = synthesize(identity, sides, size=64)
        np.testing.assert_array_equal(image, data.images[row])
        np.testing.assert_allclose(landmarks, data.landmarks[row], atol=1e-4)


def test_landmarks_scale_with_the_image_size() -> None:
    small = load("synthetic", **SMALL, size=48)
    large = load("synthetic", **SMALL, size=96)
    # pixel centres at integers: (p + 0.5) scales with the size
    np.testing.assert_allclose(large.landmarks + 0.5, 2 * (small.landmarks + 0.5), atol=1e-3)
    np.testing.assert_array_equal(small.aus, large.aus)
    assert large.images.shape[1:] == (96, 96)


def test_the_inner_face_stays_inside_the_image() -> None:
    """Brows, eyes, nose and mouth are always in the frame; like tight real crops (FER2013),
    the jaw line may leave it at high difficulty."""
    data = load("synthetic", n_subjects=6, samples_per_subject=8, difficulty=1.0)
    inner = data.landmarks[:, 17:]
    assert inner.min() > 0 and inner.max() < 47


def test_sequences_go_from_neutral_to_apex() -> None:
    data = load("synthetic", n_subjects=2, samples_per_subject=8, sequences=True, frames=16)
    assert len(data) == 2 * 8 * 16
    assert len(np.unique(data.sequence)) == 16
    for name in np.unique(data.sequence):
        clip = np.flatnonzero(data.sequence == name)
        np.testing.assert_array_equal(data.frame[clip], np.arange(16))
        assert len(set(data.labels[clip])) == 1 and len(set(data.subjects[clip])) == 1
        aus = data.aus[clip]
        np.testing.assert_array_equal(aus[0], 0)  # the clip starts neutral
        assert (np.diff(aus, axis=0) >= -1e-6).all()  # intensities only grow
        if data.classes[data.labels[clip[0]]] != "neutral":
            assert aus[-1].max() > 1 and not np.array_equal(
                data.images[clip[0]], data.images[clip[-1]]
            )


def test_the_apex_frame_has_the_still_images_intensities() -> None:
    stills = load("synthetic", **SMALL)
    clips = load("synthetic", **SMALL, sequences=True, frames=4)
    np.testing.assert_allclose(clips.aus[clips.frame == 3], stills.aus, atol=1e-6)
    np.testing.assert_array_equal(clips.labels[clips.frame == 3], stills.labels)


def test_noise_needs_a_generator() -> None:
    identity = sample_identity(0, 0)
    with pytest.raises(ValueError, match="rng"):
        synthesize(identity, np.zeros(len(AU_NAMES)), nuisance=Nuisance(noise=0.1))
    turned, _ = synthesize(identity, np.zeros(len(AU_NAMES)), nuisance=Nuisance(Pose(20)))
    straight, _ = synthesize(identity, np.zeros(len(AU_NAMES)))
    assert not np.array_equal(turned, straight)


def test_cache_is_written_once_and_read_back(tmp_path, monkeypatch) -> None:
    first = load_synthetic(tmp_path, **SMALL)
    files = list(tmp_path.glob("synthfacs-*.npz"))
    assert len(files) == 1 and first.info["cache"] == str(files[0])
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o644  # shared caches: readable by all

    def fail(config):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(synthetic, "generate", fail)
    cached = load_synthetic(tmp_path, **SMALL)
    for name in ("images", "labels", "aus", "landmarks", "subjects"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(first, name))
    assert cached.classes == first.classes and cached.au_names == first.au_names
    assert list(tmp_path.iterdir()) == files  # no temporary file left behind


def test_cache_key_changes_with_any_option() -> None:
    keys = {
        SynthConfig().key(),
        SynthConfig(size=96).key(),
        SynthConfig(difficulty=0.4).key(),
        SynthConfig(sequences=True).key(),
        SynthConfig(seed=3).key(),
    }
    assert len(keys) == 5


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"colour": True}, TypeError, "colour"),
        ({"difficulty": 1.5}, ValueError, "difficulty"),
        ({"classes": ("joy",)}, ValueError, "classes"),
        ({"n_subjects": 0}, ValueError, "n_subjects"),
        ({"sequences": True, "frames": 1}, ValueError, "frames"),
    ],
)
def test_bad_options_are_named(options: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        load_synthetic(**options)


def test_provenance_names_the_generator_and_survives_cache_and_subset(tmp_path) -> None:
    """Run records take ``provenance`` as their data_options: it must say how to remake the
    data, from a fresh generation, from the disk cache and after selecting rows."""
    config = SynthConfig(**SMALL)
    expected = {
        **asdict(config),
        "classes": list(config.classes),
        "generator_version": GENERATOR_VERSION,
    }
    fresh = load_synthetic(**SMALL)
    assert fresh.provenance == expected and expected["difficulty"] == SMALL["difficulty"]
    load_synthetic(tmp_path, **SMALL)
    assert load_synthetic(tmp_path, **SMALL).provenance == expected  # read from the cache
    assert fresh.subset(np.arange(3)).provenance == expected
    assert data_fields(fresh) == {"dataset": "synthetic", "data_options": expected}
