"""The package imports, reports its version, and its command line answers."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

import torch

import fernb


def test_version_is_the_installed_distribution_version() -> None:
    assert fernb.__version__ == version("fernb")


def test_env_command_prints_the_running_environment() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fernb", "env"], capture_output=True, text=True, check=True
    )
    summary = json.loads(result.stdout)
    assert summary["torch"] == torch.__version__
    assert summary["fernb"] == fernb.__version__
    assert summary["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_unknown_command_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fernb", "no-such-command"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
