"""Training-speed arithmetic (fernb.speed) and one end-to-end run of the speed benchmark."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from fernb import speed
from fernb.utils import write_json_atomic


def test_forward_flops_count_a_convolution_and_a_linear_layer_by_hand() -> None:
    # conv 2 -> 3 channels, 3 x 3 kernel on 5 x 5: 27 outputs of 18 multiply-adds each;
    # linear 27 -> 4: 4 outputs of 27 multiply-adds each; a multiply-add is 2 FLOPs
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 4))
    flops = speed.forward_flops(model, torch.randn(5, 2, 5, 5))
    assert flops == 2 * (27 * 18 + 4 * 27)
    assert model.training  # the mode is restored


def test_forward_flops_are_per_image_and_pass_keyword_inputs() -> None:
    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(10, 7)

        def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
            return self.linear(x * gate)

    model = Gated().eval()
    assert speed.forward_flops(model, torch.randn(3, 10), gate=torch.ones(3, 10)) == 2 * 10 * 7
    assert not model.training


def test_achieved_rate_counts_three_forward_passes_per_training_image() -> None:
    assert speed.achieved_tflops(1e9, 1000) == pytest.approx(3.0)
    assert speed.achieved_tflops(1e9, 1000, passes=1) == pytest.approx(1.0)
    assert speed.peak_fraction(3.0, 989.0) == pytest.approx(3.0 / 989.0)
    assert speed.peak_fraction(3.0, None) is None


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("nvidia a100-pcie-40gb", 312.0),
        ("NVIDIA GeForce RTX 4090", None),
        ("AMD EPYC", None),
    ],
)
def test_peak_lookup_by_device_name(name: str, peak: float | None) -> None:
    assert speed.peak_bf16_tflops(name) == peak


def test_schedule_estimate_adds_training_and_ten_crop_evaluation() -> None:
    schedule = speed.Schedule("toy", "2 epochs", epochs=2, train_images=100, test_images=10,
                        val_images=5)  # fmt: skip
    estimate = schedule.estimate(train_rate=50.0, eval_rate=4.0)
    assert estimate["train_s"] == pytest.approx(2 * 100 / 50)
    assert estimate["eval_s"] == pytest.approx((2 * 5 + 10) / 4)
    assert estimate["total_s"] == pytest.approx(9.0)
    assert estimate["goal_s"] == speed.GOAL_SECONDS
    assert estimate["meets_goal"]


def test_fer2013_schedules_hold_its_image_counts_and_the_five_minute_goal() -> None:
    goal, chapter = speed.FER2013_SCHEDULES
    # 250 epochs of 28,709 images in 200 s and 7,178 ten-crop test images in 50 s: 250 s
    train_rate, eval_rate = 250 * 28_709 / 200, 7_178 / 50
    assert goal.estimate(train_rate, eval_rate)["total_s"] == pytest.approx(250.0)
    assert goal.estimate(train_rate, eval_rate)["meets_goal"]
    assert not goal.estimate(train_rate / 2, eval_rate)["meets_goal"]  # 450 s
    # the chapter also selects on the 3,589 PublicTest images after each epoch
    assert chapter.estimate(train_rate, eval_rate)["eval_s"] == pytest.approx(
        (250 * 3_589 + 3_589) / eval_rate
    )


@pytest.mark.parametrize(
    ("rate", "shown"), [(23456.7, "23,457"), (100.0, "100"), (8.3857, "8.39"), (0.26303, "0.263")]
)
def test_format_rate_keeps_three_significant_digits_below_100(rate: float, shown: str) -> None:
    assert speed.format_rate(rate) == shown


def _record(fraction: float | None) -> dict:
    pipeline = {"precision": "fp32", "achieved_tflops": 0.5, "fraction_of_peak": fraction}
    schedules = {"goal": {"total_s": 600.0}}
    return {
        "device_name": "GPU X",
        "models": {
            "vgg19": {
                "batch_size": 128,
                "forward_flops_per_image": 2e9,
                "pipelines": {
                    "dataloader": pipeline | {"images_per_s": 100.0, "schedules": schedules},
                    "fernb": pipeline | {"images_per_s": 400.0},
                },
            }
        },
    }


def test_measurement_table_has_a_row_per_pipeline_with_its_ratio(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "train_speed-x.json", _record(None))
    write_json_atomic(tmp_path / "other.json", {"not": "a measurement"})
    table = speed.measurement_table(speed.read_measurements(tmp_path))
    assert list(table["pipeline"]) == ["dataloader", "fernb"]
    assert list(table["ratio"]) == [1.0, 4.0]
    assert list(table["forward_gflops"]) == [2.0, 2.0]
    assert table["fraction_of_peak"].isna().all()
    assert table["schedule_goal_s"].iloc[0] == 600.0
    assert set(table["file"]) == {"train_speed-x.json"}
    assert speed.measurement_table([]).empty


def _benchmark_script(name: str = "train_speed") -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_both_pipelines_of_both_models_on_the_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "train_speed-cpu.json"
    options = (
        "--device cpu --threads 1 --width 0.0625 --steps 2 --warmup-steps 1 --batch-size 2 "
        "--synthetic-images 14 --workers 0 --eval-images 2 --eval-batch-size 2"
    )
    argv = [*options.split(), "--out", str(out)]
    threads = torch.get_num_threads()
    try:
        record = _benchmark_script().main(argv)
    finally:
        torch.set_num_threads(threads)  # --threads set it for the whole process

    assert json.loads(out.read_text()) == record
    assert {"date", "device_name", "environment", "options", "models"} <= set(record)
    assert record["environment"]["torch"] == torch.__version__
    assert "commit" in record["environment"]
    assert record["options"]["steps"] == 2 and record["peak_bf16_tflops"] is None
    for result in record["models"].values():
        assert result["batch_size"] == 2 and result["forward_flops_per_image"] > 0
        assert set(result["pipelines"]) == {"dataloader", "fernb"}
        for figures in result["pipelines"].values():
            assert figures["images_per_s"] > 0 and figures["fraction_of_peak"] is None
            assert figures["precision"] == "fp32"  # fit trains in fp32 on the CPU
        rates = [figures["images_per_s"] for figures in result["pipelines"].values()]
        assert result["ratio"] == pytest.approx(rates[1] / rates[0])
    assert record["models"]["e2capsnet"]["input"] == "1 x 224 x 224"
    vgg = record["models"]["vgg19"]["pipelines"]["fernb"]
    assert set(vgg["schedules"]) == {"goal", "chapter"} and vgg["eval_images_per_s"] > 0
    assert "schedules" not in record["models"]["e2capsnet"]["pipelines"]["fernb"]
    assert "images_per_s" in capsys.readouterr().out


def test_synthetic_benchmark_records_every_run_and_the_best(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "synthetic_throughput-cpu.json"
    argv = ["--size", "32", "--images", "80", "--repeats", "2", "--out", str(out)]
    record = _benchmark_script("synthetic_throughput").main(argv)

    assert json.loads(out.read_text()) == record
    assert record["images"] == 80 and record["options"]["size"] == 32
    assert len(record["images_per_s_runs"]) == 2 and min(record["images_per_s_runs"]) > 0
    assert record["images_per_s"] == max(record["images_per_s_runs"])
    assert record["environment"]["device"] == "cpu" and "commit" in record["environment"]
    assert record["load_average_1min"] >= 0
    assert f"{record['images_per_s']:,.0f} images/s (best of 2)" in capsys.readouterr().out
