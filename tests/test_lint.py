"""The code base is ruff-clean (lint rules and formatting in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_is_clean(repo_root: Path, command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, str(repo_root)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
