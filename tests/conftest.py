"""Shared fixtures of the fernb test suite."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")  # tests draw figures without a display

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The root of the fernb repository (where _toc.yml and pyproject.toml live)."""
    return REPO_ROOT
