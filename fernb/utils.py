"""Small shared helpers: seeding, device choice, the book's plot style, atomic files."""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "FILE_MODE",
    "atomic_file",
    "choose_device",
    "cpu_name",
    "device_label",
    "environment_summary",
    "git_commit",
    "machine_summary",
    "markdown_table",
    "seed_everything",
    "set_cpu_threads",
    "set_plot_style",
    "source_commit",
    "write_json_atomic",
]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    With ``deterministic=True`` torch is also told to use deterministic kernels only
    (``torch.use_deterministic_algorithms``), cuDNN autotuning is switched off and
    ``CUBLAS_WORKSPACE_CONFIG`` is set, so that two runs with the same seed give the same
    numbers on the same machine at some cost in speed. Operations that have no deterministic
    implementation then raise instead of silently differing.
    """
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - notebooks and third-party code use the global state
    torch.manual_seed(seed)  # seeds every CUDA device too
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def choose_device(device: str = "auto") -> torch.device:
    """Return the torch device a notebook asked for.

    ``"auto"`` picks CUDA when it is available and the CPU otherwise. An explicit
    ``"cuda"`` (or ``"cuda:N"``) on a machine without one raises, rather than quietly
    training a GPU-sized experiment on the CPU.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={device!r} was asked for, but torch sees no CUDA device on this "
                "machine; pass device='cpu' (or 'auto') to run here"
            )
        index = chosen.index or 0
        if index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device={device!r} was asked for, but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible"
            )
    return chosen


def set_cpu_threads(threads: int | None, device: torch.device | str) -> int:
    """Pin the threads torch computes with on the CPU, for a run on ``device``.

    On the CPU, ``threads`` intra-op threads (``torch.set_num_threads``); None leaves the
    count as it is (torch's default: one per core). The count changes how floating-point
    sums are split and rounded, so the same seed on the same machine can train another
    network with another count: the book's recorded CPU runs use 1, which is also fastest
    for its small models on a shared CPU. On another device the CPU only prepares batches,
    and the count is left as it is. Returns the number of threads torch uses afterwards
    (what run records note as ``machine.cpu_threads``).
    """
    if threads is not None and threads < 1:
        raise ValueError(
            f"cpu_threads must be at least 1 (or None for torch's default), got {threads}"
        )
    if threads is not None and torch.device(device).type == "cpu":
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in ``/proc/cpuinfo``; empty where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_model() -> str | None:
    """The CPU's family, model and stepping numbers (``/proc/cpuinfo``, x86), e.g. ``"family
    25 model 17 stepping 1"`` for AMD's Zen 4: the processor generation that a generic model
    name such as ``"AMD EPYC"`` hides; None where they are not listed."""
    info = _cpuinfo()
    keys = ("cpu family", "model", "stepping")
    if not all(key in info for key in keys):
        return None
    return "family {} model {} stepping {}".format(*(info[key] for key in keys))


def device_label(device: torch.device | str) -> str:
    """The device as a run record names it: ``"cpu"``, or ``"cuda:0 (NVIDIA H200)"``."""
    device = torch.device(device)
    if device.type != "cuda":
        return str(device)
    return f"{device} ({torch.cuda.get_device_name(device)})"


def set_plot_style() -> None:
    """Apply the book's matplotlib style: seaborn's paper context, readable sizes."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "figure.figsize": (6.4, 4.0),
            "axes.titlesize": "medium",
            "image.cmap": "viridis",
        }
    )


#: Tracked files that runs write rather than run (git pathspecs from the top of the
#: checkout): executed notebooks and the records and figures they leave. Changes to them do
#: not make the code dirty, so one checkout can record one run after another.
RECORDED_OUTPUTS: tuple[str, ...] = (
    ":(top,exclude)book/runs",
    ":(top,exclude,glob)book/results/**/*.json",
    ":(top,exclude,glob)book/results/**/*.png",
)


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown (CommonMark pipe) table, its index the first column; a ``|``
    in a cell is escaped. What :func:`pandas.DataFrame.to_markdown` gives, without its
    ``tabulate`` dependency."""

    def row(cells: Iterable[object]) -> str:
        return "| " + " | ".join(str(cell).replace("|", r"\|") for cell in cells) + " |"

    lines = [row([frame.index.name or "", *frame.columns]), row(["---"] * (frame.shape[1] + 1))]
    lines += [
        row([index, *values]) for index, values in zip(frame.index, frame.values, strict=True)
    ]
    return "\n".join(lines)


def git_commit(path: Path | str | None = None) -> str | None:
    """Return the commit checked out at ``path`` (default: the fernb source tree).

    A ``+dirty`` suffix marks uncommitted changes to tracked files other than
    :data:`RECORDED_OUTPUTS`, that is, code that no commit holds. Returns ``None`` outside
    a git work tree or where git is not installed.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", *RECORDED_OUTPUTS],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}+dirty" if dirty else commit


#: Names the commit of a copy of the source made without its git repository (the working
#: tree sent to a lent GPU machine); read only where git itself cannot say.
COMMIT_VARIABLE = "FERNB_COMMIT"


def source_commit() -> str | None:
    """The commit of the fernb source: :func:`git_commit`'s, else the value of the
    ``FERNB_COMMIT`` environment variable, else None."""
    return git_commit() or os.environ.get(COMMIT_VARIABLE) or None


def machine_summary() -> dict[str, Any]:
    """The host a process runs on, as far as its numbers can depend on it: the CPU (its name,
    generation, and the instruction set torch's kernels dispatch to) and the threads torch
    uses (their kernels and reduction order), the OS, and the versions of Python, torch and
    NumPy. The same code and seed on another machine may train to other weights; two records
    that differ here may differ for that reason alone."""
    return {
        "cpu": cpu_name(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }


def environment_summary(device: str = "auto") -> dict[str, Any]:
    """Describe where a run happens: the machine (:func:`machine_summary`), the device and
    its name, and the fernb version and commit."""
    from fernb import __version__

    chosen = choose_device(device)
    return {
        "fernb": __version__,
        "commit": source_commit(),
        **machine_summary(),
        "cuda": torch.version.cuda,
        "device": str(chosen),
        "device_name": (
            torch.cuda.get_device_name(chosen) if chosen.type == "cuda" else cpu_name()
        ),
    }


#: Permissions of a file written by :func:`atomic_file` (rw-r--r--): what ``open()`` gives
#: under the usual umask 022, where :mod:`tempfile` would leave it readable by its owner only.
FILE_MODE = 0o644


@contextmanager
def atomic_file(path: Path | str, overwrite: bool = True) -> Iterator[IO[bytes]]:
    """A binary file to write that appears at ``path`` whole or not at all.

    The writes go to a temporary file in the same folder; when the ``with`` block ends
    normally it is flushed to disk, given :data:`FILE_MODE` and moved into place, so a
    reader (or a run interrupted mid-write) sees the old file or the new one, never half of
    one. If the block raises, the temporary file is removed and ``path`` is left as it was.
    Without ``overwrite`` the move is a hard link, which raises :class:`FileExistsError` if
    ``path`` exists, even when another process took it meanwhile.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        try:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), FILE_MODE)
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    try:
        if overwrite:
            os.replace(handle.name, path)
        else:
            os.link(handle.name, path)
    finally:
        if os.path.exists(handle.name):
            os.unlink(handle.name)


def write_json_atomic(path: Path | str, data: Any, overwrite: bool = True) -> Path:
    """Write ``data`` as JSON (finite numbers only) to ``path`` with :func:`atomic_file`."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    with atomic_file(path, overwrite=overwrite) as handle:
        handle.write(text.encode())
    return Path(path)
