"""DISFA loader on a fixture tree: per-AU label files and an MJPG video per subject."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fernb.data import DatasetFormatError
from fernb.data.disfa import DISFA_AUS, load_disfa

INTENSITY = {1: [0, 2, 3, 1], 2: [0, 0, 0, 0], 4: [5, 1, 0, 2]}  # AU -> frames 1-4


def _write_disfa(root: Path, frames: int = 4, videos: int = 4) -> Path:
    """Two subjects, AUs 1, 2, 4 labelled for ``frames`` frames; videos hold ``videos``
    frames whose pixels are 40 x frame number (gray)."""
    for subject in ("SN001", "SN003"):
        folder = root / "ActionUnit_Labels" / subject
        folder.mkdir(parents=True)
        for au, values in INTENSITY.items():
            lines = [f"{f},{values[(f - 1) % 4]}" for f in range(1, frames + 1)]
            (folder / f"{subject}_au{au}.txt").write_text("\n".join(lines) + "\n")
        (root / "Videos_LeftCamera").mkdir(exist_ok=True)
        path = root / "Videos_LeftCamera" / f"LeftVideo{subject}_comp.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20, (16, 12))
        for f in range(1, videos + 1):
            writer.write(np.full((12, 16, 3), 40 * f, np.uint8))
        writer.release()
    return root


def test_disfa_reads_frames_and_occurrence(tmp_path: Path) -> None:
    data = load_disfa(_write_disfa(tmp_path), aus=(1, 2, 4))
    assert data.name == "disfa" and data.au_names == ["AU1", "AU2", "AU4"]
    assert data.subjects.tolist() == ["SN001"] * 4 + ["SN003"] * 4
    assert data.frame.tolist() == [1, 2, 3, 4] * 2
    # occurrence from intensity >= 2
    np.testing.assert_array_equal(data.aus[:4], [[0, 0, 1], [1, 0, 0], [1, 0, 0], [0, 0, 1]])
    assert data.images.shape == (8, 12, 16)
    np.testing.assert_allclose(data.images[:4].mean(axis=(1, 2)), [40, 80, 120, 160], atol=3)
    raw = load_disfa(tmp_path, aus=(4,), present_at=None, step=2, size=(6, 8), grayscale=False)
    assert raw.aus[:, 0].tolist() == [5, 0, 5, 0] and raw.frame.tolist() == [1, 3, 1, 3]
    assert raw.images.shape == (4, 6, 8, 3)


def test_disfa_labels_beyond_the_video_are_counted(tmp_path: Path) -> None:
    data = load_disfa(_write_disfa(tmp_path, frames=5, videos=4), aus=(1, 2, 4))
    assert len(data) == 8 and data.info["frames_without_video"] == {"SN001": 1, "SN003": 1}


def test_disfa_errors(tmp_path: Path) -> None:
    root = _write_disfa(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"SN001_au6\.txt does not exist"):
        load_disfa(root)  # the default AUs include 6, which the fixture lacks
    assert DISFA_AUS == (1, 2, 4, 6, 9, 12, 25, 26)
    with pytest.raises(ValueError, match="camera must be"):
        load_disfa(root, camera="middle")
    with pytest.raises(FileNotFoundError, match="Video\\(s\\)_RightCamera"):
        load_disfa(root, aus=(1,), camera="right")
    (root / "ActionUnit_Labels/SN001/SN001_au2.txt").write_text("1,0\n2,7\n")
    with pytest.raises(DatasetFormatError, match=r"SN001_au2\.txt:2: expected 'frame,intensity'"):
        load_disfa(root, aus=(1, 2))
    (root / "ActionUnit_Labels/SN001/SN001_au2.txt").write_text("1,0\n2,1\n")
    with pytest.raises(DatasetFormatError, match="the files must agree"):
        load_disfa(root, aus=(1, 2))
