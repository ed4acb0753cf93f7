"""Seeding, device choice and the environment summary."""

from __future__ import annotations

import json
import math
import platform
import random
import re
import stat
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from markdown_it import MarkdownIt

from fernb.utils import (
    FILE_MODE,
    atomic_file,
    choose_device,
    cpu_model,
    cpu_name,
    device_label,
    environment_summary,
    git_commit,
    machine_summary,
    markdown_table,
    seed_everything,
    set_cpu_threads,
    source_commit,
    write_json_atomic,
)


def _draw() -> tuple[float, np.ndarray, torch.Tensor]:
    return random.random(), np.random.rand(4), torch.randn(4)  # noqa: NPY002


@pytest.fixture(autouse=True)
def _restore_determinism():
    yield
    seed_everything(0, deterministic=False)


def test_same_seed_gives_the_same_draws_in_every_library() -> None:
    seed_everything(123)
    first = _draw()
    seed_everything(123)
    second = _draw()
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    assert torch.equal(first[2], second[2])


def test_different_seeds_give_different_draws() -> None:
    seed_everything(1)
    first = _draw()
    seed_everything(2)
    second = _draw()
    assert first[0] != second[0]
    assert not np.array_equal(first[1], second[1])
    assert not torch.equal(first[2], second[2])


def test_deterministic_switch_reaches_torch() -> None:
    seed_everything(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark
    seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_out_of_range_is_rejected(seed: int) -> None:
    with pytest.raises(ValueError, match="seed"):
        seed_everything(seed)


def test_auto_device_follows_cuda_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto") == torch.device("cuda")


def test_explicit_cuda_without_a_gpu_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="device='cpu'"):
        choose_device("cuda")


def test_cuda_index_beyond_the_visible_devices_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert choose_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(RuntimeError, match="only 1"):
        choose_device("cuda:1")


def test_cpu_is_always_available() -> None:
    assert choose_device("cpu") == torch.device("cpu")


@pytest.fixture
def _restore_torch_threads():
    """Give torch back the thread count it had before the test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("_restore_torch_threads")
def test_cpu_threads_are_pinned_for_a_cpu_run() -> None:
    torch.set_num_threads(2)
    assert set_cpu_threads(1, "cpu") == 1
    assert torch.get_num_threads() == machine_summary()["cpu_threads"] == 1
    assert set_cpu_threads(3, torch.device("cpu")) == torch.get_num_threads() == 3


@pytest.mark.usefixtures("_restore_torch_threads")
def test_cpu_threads_stay_as_they_are_for_none_or_another_device() -> None:
    torch.set_num_threads(2)
    assert set_cpu_threads(None, "cpu") == 2
    assert set_cpu_threads(1, "cuda") == 2
    assert set_cpu_threads(1, torch.device("cuda", 0)) == torch.get_num_threads() == 2


@pytest.mark.usefixtures("_restore_torch_threads")
@pytest.mark.parametrize("threads", [0, -2])
def test_cpu_threads_below_one_are_rejected(threads: int) -> None:
    torch.set_num_threads(2)
    with pytest.raises(ValueError, match="at least 1"):
        set_cpu_threads(threads, "cpu")
    assert torch.get_num_threads() == 2


def test_git_commit_matches_git(repo_root: Path) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True
    )
    if head.returncode != 0:  # a repository without commits has no HEAD
        assert git_commit(repo_root) is None
    else:
        assert git_commit(repo_root).removesuffix("+dirty") == head.stdout.strip()


def _git(where: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=where, check=True, capture_output=True)


def test_git_commit_is_dirty_for_changed_code_not_for_recorded_outputs(tmp_path: Path) -> None:
    """A checkout records run after run: the records and executed notebooks a run leaves
    (tracked files) must not make the next run's code look uncommitted; code changes must."""
    files = {
        "fernb/train.py": "x = 1\n",
        "book/chapter/training.ipynb": "{}\n",
        "book/runs/chapter/training-ckplus48.ipynb": "{}\n",
        "book/results/chapter/run_fold-0.json": "{}\n",
        "book/results/chapter/figures/sweep.png": "png\n",
        "book/results/scoreboard.ipynb": "{}\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    inside = tmp_path / "fernb"  # git_commit looks from the package folder
    for output in list(files)[2:5]:
        (tmp_path / output).write_text("changed by a run\n")
    assert git_commit(inside) == head
    for code in ("fernb/train.py", "book/chapter/training.ipynb", "book/results/scoreboard.ipynb"):
        original = (tmp_path / code).read_text()
        (tmp_path / code).write_text("changed by hand\n")
        assert git_commit(inside) == f"{head}+dirty", code
        (tmp_path / code).write_text(original)
    assert git_commit(inside) == head


def test_git_commit_outside_a_repository_is_none(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None


def test_source_commit_is_gits_else_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, repo_root: Path
) -> None:
    monkeypatch.setenv("FERNB_COMMIT", "abc123")
    assert source_commit() == git_commit(repo_root)  # git knows: the variable is not read
    monkeypatch.setattr("fernb.utils.git_commit", lambda: None)  # a copy without .git
    assert source_commit() == "abc123"
    monkeypatch.delenv("FERNB_COMMIT")
    assert source_commit() is None


def test_environment_summary_describes_the_chosen_device() -> None:
    summary = environment_summary("cpu")
    assert summary["device"] == "cpu"
    assert summary["torch"] == torch.__version__
    assert summary["cpu_threads"] == torch.get_num_threads()
    assert summary["device_name"] == cpu_name()
    assert machine_summary().items() <= summary.items()


def test_machine_summary_follows_the_thread_count_and_the_versions() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert machine_summary()["cpu_threads"] == 1
    finally:
        torch.set_num_threads(threads)
    summary = machine_summary()
    assert summary["python"] == platform.python_version()
    assert summary["numpy"] == np.__version__
    assert summary["cpu"] == cpu_name()
    assert summary["cpu_model"] == cpu_model()
    assert summary["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_cpu_name_reads_cpuinfo_or_falls_back_to_platform(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    first = "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: Test CPU @ 2.0GHz\n"
    second = "processor\t: 1\ncpu family\t: 6\nmodel\t\t: 85\nmodel name\t: Other CPU\n"
    cpuinfo.write_text(f"{first}stepping\t: 1\nflags\t: sse\n\n{second}stepping\t: 4\n")
    real_path = Path
    monkeypatch.setattr(
        "fernb.utils.Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p)
    )
    assert cpu_name() == "Test CPU @ 2.0GHz"  # the first processor's
    assert cpu_model() == "family 25 model 17 stepping 1"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU\n")  # no family numbers
    assert cpu_model() is None
    cpuinfo.unlink()  # unreadable: what platform knows
    monkeypatch.setattr("platform.processor", lambda: "")
    monkeypatch.setattr("platform.machine", lambda: "riscv64")
    assert cpu_name() == "riscv64"
    assert cpu_model() is None


def test_write_json_atomic_replaces_or_refuses_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2, "b": [1.5, None]})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1.5, None]}
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": math.nan})  # not JSON: the old file stays as it was
    with pytest.raises(FileExistsError):
        write_json_atomic(path, {"a": 3}, overwrite=False)
    assert json.loads(path.read_text())["a"] == 2
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]
    # readable by others, as a file written with open() under the usual umask 022 would be
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    write_json_atomic(tmp_path / "new.json", {}, overwrite=False)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644


def test_atomic_file_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "cache.npz"
    with atomic_file(path) as handle:
        np.savez(handle, x=np.arange(3))
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE == 0o644
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="interrupted"), atomic_file(path) as handle:
        handle.write(b"half a file")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == before  # the old file, not half of the new one
    assert [p.name for p in tmp_path.iterdir()] == ["cache.npz"]  # no temporary file left
    with np.load(path) as stored:
        np.testing.assert_array_equal(stored["x"], [0, 1, 2])


def test_device_label_names_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert device_label("cpu") == device_label(torch.device("cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"GPU of {device}")
    assert device_label("cuda:1") == "cuda:1 (GPU of cuda:1)"


def test_markdown_table_parses_back_to_the_frame() -> None:
    frame = pd.DataFrame(
        {"accuracy (%)": ["**80.8 ± 5.9**", "77.0"], "runs": [30, 3]},
        index=pd.Index(["E2-Capsnet", "a | b"], name="method"),
    )
    html = MarkdownIt("commonmark").enable("table").render(markdown_table(frame))
    cells = re.findall(r"<t[hd]>(.*?)</t[hd]>", html)
    assert cells == [
        *("method", "accuracy (%)", "runs"),
        *("E2-Capsnet", "<strong>80.8 ± 5.9</strong>", "30"),
        *("a | b", "77.0", "3"),
    ]
