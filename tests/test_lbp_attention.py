"""Li et al.'s attention CNN with LBP: module shapes, the mask, dense connectivity, switches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fernb.models.lbp_attention as lbp_attention
from fernb.data import FaceData, load
from fernb.data.splits import LeakageWarning
from fernb.face.lbp import lbp_image
from fernb.models.lbp_attention import (
    DILATION_CONFIGS,
    PRESETS,
    TABLES,
    VARIANTS,
    AttentionModule,
    DenseAtrousBlock,
    FeatureStream,
    LBPAttentionNet,
    band_means,
    beside_paper,
    build,
    protocol_name,
    protocol_splits,
    record_name,
    train_and_test,
)
from fernb.nn.vgg import ImageNetNormalisation, StagedVGG
from fernb.results import RunRecord, paper_tables

WIDTH = 1 / 16  # 4 reduced channels, VGG widths 4 to 32: fast on the CPU
C = 4


def _count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def _net(**switches) -> LBPAttentionNet:
    torch.manual_seed(0)
    return LBPAttentionNet(7, width=WIDTH, **switches)


def test_feature_stream_is_vgg16_first_ten_convs_and_three_1x1_reductions() -> None:
    stream = FeatureStream(1, C, width=WIDTH)
    convs = _convs(stream)
    assert [c.kernel_size for c in convs] == [(3, 3)] * 10 + [(1, 1)] * 3
    # VGG16 widths 64 64 128 128 256 256 256 512 512 512, / 16, then 1 x 1 x 64 / 16
    assert [c.out_channels for c in convs] == [4, 4, 8, 8, 16, 16, 16, 32, 32, 32, 4, 4, 4]
    assert sum(isinstance(m, nn.MaxPool2d) for m in stream.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in stream.modules()) == 13
    assert stream(torch.rand(2, 1, 48, 40)).shape == (2, C, 6, 5)
    stem = FeatureStream(1, C, vgg=False)
    assert len(_convs(stem)) == 1
    assert stem(torch.rand(2, 1, 48, 40)).shape == (2, C, 6, 5)


def test_feature_stream_normalises_images_only_for_imagenet_weights(monkeypatch) -> None:
    monkeypatch.setattr(StagedVGG, "load_imagenet_weights", lambda self: None)  # no file
    for imagenet in (True, False):
        stream = FeatureStream(1, C, width=WIDTH, imagenet=imagenet)
        assert isinstance(stream.layers[0], ImageNetNormalisation) == imagenet
        assert len(_convs(stream)) == 13


def test_attention_mask_is_a_sigmoid_in_0_1_and_multiplies_the_trunk() -> None:
    torch.manual_seed(0)
    module = AttentionModule(C).eval()
    fused = 3 * torch.randn(3, C, 6, 6)
    refined, trunk, mask = module(fused)
    assert refined.shape == trunk.shape == mask.shape == (3, C, 6, 6)
    assert mask.min() > 0 and mask.max() < 1
    torch.testing.assert_close(refined, trunk * mask)
    last = module.mask[-2]
    assert isinstance(module.mask[-1], nn.Sigmoid) and last.kernel_size == (1, 1)
    # Eq. 2: F_m = sigmoid(W * f_m + b), with f_m the mask branch's input to its last conv
    f_m = module.mask[:-2](fused)
    torch.testing.assert_close(mask, torch.sigmoid(last(f_m)))


def test_dense_atrous_layers_read_every_earlier_output_and_f1() -> None:
    block = DenseAtrousBlock(C, DILATION_CONFIGS["E"]).eval()
    convs = _convs(block)
    assert [c.in_channels for c in convs] == [2 * C, 3 * C, 4 * C, 5 * C]
    assert [c.dilation for c in convs] == [(2, 2), (3, 3), (4, 4), (5, 5)]
    assert [c.padding for c in convs] == [(2, 2), (3, 3), (4, 4), (5, 5)]
    inputs, outputs = [], []

    def record(_: nn.Module, args: tuple[torch.Tensor], out: torch.Tensor) -> None:
        inputs.append(args[0])
        outputs.append(out)

    for layer in block.layers:
        layer.register_forward_hook(record)
    x, f1, f3 = torch.randn(2, C, 7, 7), torch.randn(2, C, 7, 7), torch.randn(2, C, 7, 7)
    result = block(x, f1, f3)
    for k, given in enumerate(inputs):
        torch.testing.assert_close(given, torch.cat([x, *outputs[:k], f1], dim=1))
    torch.testing.assert_close(result, outputs[-1] + f3)


@pytest.mark.parametrize(("config", "rates"), sorted(DILATION_CONFIGS.items()))
def test_dilation_configurations(config: str, rates: tuple[int, ...]) -> None:
    model = _net(dilations=config)
    assert [c.dilation[0] for c in _convs(model.reconstruction)] == list(rates)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 7)


def test_full_network_shapes_and_fusion() -> None:
    model = _net().eval()
    images = torch.rand(3, 1, 48, 48)
    maps = model.features(images)
    for name in ("f1", "f2", "f3", "f_p", "f_m", "f_refine", "out"):
        assert maps[name].shape == (3, C, 6, 6), name
    torch.testing.assert_close(maps["f3"], maps["f1"] + maps["f2"])
    torch.testing.assert_close(maps["f_refine"], maps["f_p"] * maps["f_m"])
    assert model(images).shape == (3, 7)
    resized = _net(input_size=64).eval()
    assert resized.features(images)["out"].shape == (3, C, 8, 8)


def test_lbp_stream_reads_the_lbp_image_of_the_8_bit_picture() -> None:
    pixels = torch.randint(0, 256, (2, 1, 20, 20), dtype=torch.uint8)
    for variant in ("original", "circular", "uniform"):
        model = _net(lbp=variant)
        torch.testing.assert_close(
            model.lbp_images(pixels.float() / 255), lbp_image(pixels, variant), rtol=0, atol=0
        )
    rgb = torch.rand(2, 3, 20, 20)
    luma = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None]
    model = LBPAttentionNet(7, in_channels=3, width=WIDTH)
    torch.testing.assert_close(
        model.lbp_images(rgb), lbp_image((luma * 255).round(), "circular"), rtol=0, atol=0
    )


def test_without_lbp_removes_the_second_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    full, ablated = _net(), _net(lbp="none")
    assert ablated.lbp_stream is None
    assert _count(full) - _count(ablated) == _count(full.lbp_stream)

    def refuse(*args, **kwargs):
        raise AssertionError("an LBP image was computed")

    monkeypatch.setattr(lbp_attention, "lbp_image", refuse)
    maps = ablated.eval().features(torch.rand(2, 1, 32, 32))
    assert maps["f2"] is None
    torch.testing.assert_close(maps["f3"], maps["f1"])
    with pytest.raises(ValueError, match="no LBP stream"):
        ablated.lbp_images(torch.rand(1, 1, 8, 8))


def test_without_attention_removes_the_module() -> None:
    full, ablated = _net(), _net(attention=False)
    assert ablated.attention is None
    assert _count(full) - _count(ablated) == _count(AttentionModule(C))
    maps = ablated.eval().features(torch.rand(2, 1, 32, 32))
    assert maps["f_m"] is None and maps["f_refine"] is maps["f3"]
    with pytest.raises(ValueError, match="no attention module"):
        ablated.attention_maps(torch.rand(1, 1, 32, 32))


def test_without_reconstruction_removes_the_dense_block() -> None:
    full, ablated = _net(), _net(reconstruction=False)
    assert ablated.reconstruction is None
    assert _count(full) - _count(ablated) == _count(DenseAtrousBlock(C, (2, 3, 4, 5)))
    maps = ablated.eval().features(torch.rand(2, 1, 32, 32))
    assert maps["out"] is maps["f_refine"]


def test_without_feature_extraction_leaves_one_conv_per_stream() -> None:
    ablated = _net(feature_extraction=False)
    assert len(_convs(ablated.raw_stream)) == len(_convs(ablated.lbp_stream)) == 1
    assert ablated.features(torch.rand(2, 1, 32, 32))["f1"].shape == (2, C, 4, 4)


def test_attention_maps_are_image_sized_and_keep_the_mode() -> None:
    model = _net().train()
    maps = model.attention_maps(torch.rand(5, 1, 32, 32), batch_size=2)
    assert maps.shape == (5, 32, 32)
    assert maps.min() > 0 and maps.max() < 1
    assert model.training


def test_variants_and_tables_match_the_paper_and_build() -> None:
    theirs = paper_tables("lbp_attention")
    for table, variants in TABLES.items():
        assert sorted(theirs.loc[theirs["experiment"] == table, "variant"].unique()) == sorted(
            variants
        )
    for variant in VARIANTS:
        assert build(variant, 6, "cpu", width=WIDTH)(torch.rand(2, 1, 24, 24)).shape == (2, 6)


def test_presets() -> None:
    paper = PRESETS["paper"]
    assert (paper.input_size, paper.batch_size, paper.lr, paper.width) == (256, 40, 1e-6, 1.0)
    config = PRESETS["cpu"].config(3, seed=5)
    assert (config.epochs, config.batch_size, config.lr, config.seed) == (3, 32, 2e-3, 5)
    assert build("full", 7, "paper", width=WIDTH).input_size == 256


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lbp": "lbp"}, "lbp must be one of"),
        ({"dilations": "F"}, "dilations must be one of"),
        ({"dilations": (1, 2, 3)}, "four integers"),
        ({"dilations": (1, 2, 3, 0)}, "four integers"),
        ({"in_channels": 2}, "in_channels must be 1 or 3"),
        ({"input_size": 4}, "input_size must be at least 8"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LBPAttentionNet(7, width=WIDTH, **kwargs)


def test_build_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown variant 'no_lbps'"):
        build("no_lbps", 7)
    with pytest.raises(ValueError, match="unknown preset 'gpu'"):
        build("full", 7, "gpu")


def _faces(subjects: int = 10, per_subject: int = 6, split: np.ndarray | None = None) -> FaceData:
    n = subjects * per_subject
    return FaceData(
        images=np.zeros((n, 8, 8), np.uint8),
        labels=np.arange(n) % 3,
        classes=["anger", "happiness", "sadness"],
        subjects=np.repeat([f"s{i}" for i in range(subjects)], per_subject),
        split=np.full(n, "") if split is None else split,
        name="toy",
    )


def test_subject_folds_keep_people_apart_and_cover_everything() -> None:
    data = _faces()
    splits = protocol_splits(data, "subject_kfold", folds=5, seed=1, val_fraction=0.2)
    assert [s.fold for s in splits] == [0, 1, 2, 3, 4]
    tests = np.concatenate([s.test for s in splits])
    assert sorted(tests.tolist()) == list(range(len(data)))
    for s in splits:
        parts = [set(data.subjects[idx]) for idx in (s.train, s.val, s.test)]
        assert all(parts) and not (
            parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2]
        )
        assert len(s.train) + len(s.val) + len(s.test) == len(data)
    assert "5-fold subject-independent" in protocol_name(data, "subject_kfold")


def test_image_folds_warn_about_leaking_subjects() -> None:
    data = _faces()
    with pytest.warns(LeakageWarning):
        splits = protocol_splits(data, "image_kfold", folds=5)
    assert any(set(data.subjects[s.train]) & set(data.subjects[s.test]) for s in splits)
    assert "per-image" in protocol_name(data, "image_kfold")


def test_official_split_takes_val_from_train_when_missing() -> None:
    data = _faces(split=np.where(np.arange(60) < 42, "train", "test"))
    (split,) = protocol_splits(data, "official", val_fraction=0.2)
    assert split.fold is None and split.test.tolist() == list(range(42, 60))
    assert sorted([*split.train, *split.val]) == list(range(42))
    assert not set(data.subjects[split.train]) & set(data.subjects[split.val])
    with pytest.raises(ValueError, match="protocol must be one of"):
        protocol_splits(data, "random")


def test_band_means_by_hand() -> None:
    maps = np.arange(2 * 4 * 3, dtype=float).reshape(2, 4, 3)  # rows centred at 1/8 .. 7/8
    means = band_means(maps, {"top": (0.0, 0.5), "row2": (0.5, 0.7)})
    np.testing.assert_allclose(means["top"], [2.5, 14.5])  # rows 0-1: 0..5 and 12..17
    np.testing.assert_allclose(means["row2"], [7.0, 19.0])  # row 2 only: 6..8 and 18..20
    with pytest.raises(ValueError, match="holds no row"):
        band_means(maps, {"thin": (0.0, 0.1)})


def test_train_and_test_selects_on_val_and_records_the_test_split() -> None:
    data = load("synthetic", n_subjects=6, samples_per_subject=8, size=24, seed=3)
    split = protocol_splits(data, "subject_kfold", folds=3, val_fraction=0.25)[0]
    config = PRESETS["cpu"].config(2, batch_size=8, progress=False, device="cpu", seed=1)
    run = train_and_test(data, split, "no_attention", config, width=WIDTH)
    assert run.model.attention is None and run.fold == 0
    assert list(run.history["epoch"]) == [1, 2] and run.best_epoch in (1, 2)
    best = run.history.loc[run.history["epoch"] == run.best_epoch, "val_accuracy"].item()
    assert run.val_accuracy == best == run.history["val_accuracy"].max()
    assert run.test.targets.tolist() == data.labels[split.test].tolist()
    record = run.record(data, "benchmark", "toy protocol", seed=1, epochs=2, device="cpu")
    predicted = run.test.scores.argmax(axis=1)
    assert record.metrics["accuracy"] == pytest.approx(np.mean(predicted == run.test.targets))
    assert record.metrics["val_accuracy"] == run.val_accuracy
    assert (record.paper, record.variant, record.dataset, record.fold) == (
        "lbp_attention",
        "no_attention",
        "synthetic",
        0,
    )


def _record(dataset: str, variant: str, accuracy: float, fold: int) -> RunRecord:
    return RunRecord(
        paper="lbp_attention", experiment="benchmark", variant=variant, dataset=dataset,
        protocol="p", fold=fold, seed=0, epochs=1, selection="val",
        metrics={"accuracy": accuracy}, device="cpu", wall_time_s=1.0,
    )  # fmt: skip


def test_beside_paper_maps_ckplus48_to_the_papers_ckplus() -> None:
    records = [_record("ckplus48", "full", 0.9, 0), _record("ckplus48", "full", 0.8, 1)]
    table = beside_paper(records).set_index(["dataset", "variant"])
    assert table.loc[("ckplus", "full"), "theirs"] == 98.68
    assert table.loc[("ckplus", "full"), "ours"] == pytest.approx(85.0)
    assert table.loc[("ckplus", "full"), "n"] == 2
    assert np.isnan(table.loc[("fer2013", "full"), "ours"]).all()
    assert beside_paper([])["ours"].isna().all()


def test_record_names_keep_protocols_apart() -> None:
    record = _record("ckplus48", "full", 0.9, 3)
    assert record_name(record, "image_kfold") == (
        "benchmark_full_ckplus48_image_kfold_fold-3_seed-0_val-selected"
    )
    assert record_name(record, "subject_kfold") != record_name(record, "image_kfold")
    with pytest.raises(ValueError, match="protocol must be one of"):
        record_name(record, "random")
