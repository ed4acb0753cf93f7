"""Rashid & Lee's capsule networks: shapes, equal-size CNN, weighted margin loss, masking."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from fernb.data import FaceData
from fernb.data.splits import subject_kfold
from fernb.models.au_capsules import (
    AUCapsNet,
    AUConvNet,
    FoldRun,
    au_scores_from_record,
    au_table,
    balanced_reconstruction_weight,
    build_model,
    collate,
    cross_validate,
    load_data,
    make_task,
    one_step,
    recipe,
    resize_images,
    select_aus,
    variant_name,
)
from fernb.nn.capsules import margin_loss, reconstruction_loss
from fernb.nn.vgg import ImageNetNormalisation, StagedVGG
from fernb.tasks import CapsuleOutput

TINY = {"width": 0.125, "class_dim": 4, "decoder_hidden": (8,), "decoder_base": 8}


def test_paper_model_sizes() -> None:
    """'Ours' at 96 x 96: a 24 x 24 x 128 map, a 6 x 6 grid of 32 x 8D capsules (1152)."""
    model = build_model("capsules", 12, "ours", multi_label=True)
    assert model.feature_shape == (128, 24, 24)
    assert model.grid == (6, 6)
    assert tuple(model.classes.weight.shape) == (1152, 12, 32, 8)
    assert model.decoder.layers[-1].out_features == 32 * 32
    torch.manual_seed(0)
    out = model(torch.rand(2, 1, 96, 96))
    assert out.lengths.shape == (2, 12) and out.capsules.shape == (2, 12, 32)
    assert out.reconstruction.shape == (2, 1, 96, 96)
    assert model.primary_capsules(torch.rand(2, 1, 96, 96)).shape == (2, 32, 6, 6, 8)


def test_ours_vgg_starts_from_imagenet_weights_it_never_downloads(tmp_path, monkeypatch) -> None:
    """The paper's Ours-VGG fine-tunes ImageNet weights: without the local file it refuses to
    train from scratch silently; the narrowed cpu preset (which cannot use them) does not ask."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="never downloads weights"):
        build_model("capsules", 8, "ours_vgg")
    cpu = recipe("cpu", "ckplus48").overrides("ours_vgg")
    assert cpu["imagenet"] is False
    assert build_model("capsules", 8, "ours_vgg", **cpu).feature_shape == (128, 7, 7)


def test_ours_vgg_normalises_images_for_its_imagenet_weights(monkeypatch) -> None:
    monkeypatch.setattr(StagedVGG, "load_imagenet_weights", lambda self: None)  # no file
    for imagenet in (True, False):
        model = build_model("capsules", 8, "ours_vgg", width=1 / 16, imagenet=imagenet)
        assert isinstance(model.features[0], ImageNetNormalisation) == imagenet
    assert not any(
        isinstance(m, ImageNetNormalisation) for m in build_model("capsules", 8).modules()
    )


def test_vgg_model_sizes() -> None:
    """'Ours-VGG' at 224: VGG16 without its last pool gives 14 x 14, then a 6 x 6 grid."""
    model = build_model("capsules", 8, "ours_vgg", width=1 / 16, class_dim=4, imagenet=False)
    assert model.feature_shape == (32, 14, 14)
    assert model.grid == (6, 6)
    assert isinstance(model.features[-1], torch.nn.Dropout2d) and model.features[-1].p == 0.5
    assert model.decoder.layers[-1].out_features == 3 * 56 * 56  # 9408
    out = model(torch.rand(1, 3, 224, 224))
    assert out.reconstruction.shape == (1, 3, 224, 224)


def test_cnn_twin_has_as_many_class_weights_as_routing() -> None:
    capsules = build_model("capsules", 5, "ours", multi_label=True)
    cnn = build_model("cnn", 5, "ours")
    assert isinstance(cnn, AUConvNet)
    first_fc = cnn.head[1].weight
    assert first_fc.numel() == capsules.classes.weight.numel() == 1152 * 5 * 32 * 8
    assert cnn.conv.weight.shape == capsules.primary.conv.weight.shape
    logits = cnn(torch.rand(3, 1, 96, 96))
    assert logits.shape == (3, 5)
    assert cnn.conv_units(torch.rand(1, 1, 96, 96)).shape == (1, 256, 6, 6)


def test_bad_configurations_raise() -> None:
    with pytest.raises(ValueError, match="head must be"):
        build_model("transformer", 3)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("capsules", 3, "resnet")
    with pytest.raises(ValueError, match="smaller than the primary kernel"):
        build_model("capsules", 3, input_size=16)
    with pytest.raises(ValueError, match="length_softmax"):
        build_model("capsules", 3, multi_label=True, length_softmax=True)
    model = build_model("capsules", 3, input_size=48, **TINY)
    with pytest.raises(ValueError, match=r"expected images \(N, 1, 48, 48\)"):
        model(torch.rand(1, 1, 40, 40))
    with pytest.raises(ValueError, match="unknown preset"):
        recipe("gpu", "ckplus48")


def test_recipes() -> None:
    assert recipe("paper", "bp4d").lr == 1e-4 and recipe("paper", "bp4d").epochs == 10
    assert recipe("paper", "ckplus48").epochs == 600
    assert recipe("cpu", "synthetic", epochs=7).epochs == 7
    assert recipe("cpu", "synthetic").input_size("ours") == 48
    assert recipe("cpu", "synthetic").input_size("ours_vgg") == 112
    assert recipe("paper", "bp4d").input_size("ours_vgg") == 224
    assert recipe("paper", "bp4d").overrides("ours") == {}
    with pytest.raises(ValueError, match="unknown architecture"):
        recipe("cpu", "bp4d").overrides("resnet")
    # every preset builds both networks (here without ImageNet weights, which are not local)
    for preset in ("cpu", "paper"):
        for name in ("ours", "ours_vgg"):
            overrides = {**recipe(preset, "x").overrides(name), "imagenet": False}
            model = build_model("capsules", 2, name, **overrides)
            assert model.grid[0] >= 3
    assert variant_name("ours", "capsules", "paper") == "ours"
    assert variant_name("ours_vgg", "cnn", "cpu") == "cnn_vgg_cpu"


def test_weighted_margin_loss_weights_are_inverse_training_frequencies() -> None:
    # AU A present in 3 of 4 images, B in 1 (the NaN counts as absent), C in 2
    aus = np.array([[2, 0, 1], [1, math.nan, 0], [3, 4, 1], [0, 0, 0]], dtype=np.float32)
    task = make_task("au", "capsules", aus)
    inverse = np.array([1 / 3, 1 / 1, 1 / 2])
    np.testing.assert_allclose(task.class_weights, inverse / inverse.sum())
    assert task.multi_label and task.reduction == "mean"
    lengths = torch.tensor([[0.5, 0.2, 0.95]])
    batch = {"image": torch.zeros(1, 1, 2, 2), "aus": torch.tensor([[1.0, 0.0, 2.0]])}
    out = CapsuleOutput(lengths, torch.zeros(1, 3, 4), None)
    task.recon_weight = 0.0
    w = task.class_weights
    expected = w[0] * (0.9 - 0.5) ** 2 + w[1] * 0.5 * (0.2 - 0.1) ** 2 + w[2] * 0.0
    assert float(task.loss(out, batch)) == pytest.approx(expected)


def test_make_task_choices() -> None:
    assert make_task("au", "cnn").__class__.__name__ == "MultiLabelTask"
    assert make_task("emotion", "cnn").__class__.__name__ == "Classification"
    assert not make_task("emotion", "capsules").multi_label
    with pytest.raises(ValueError, match="train_aus"):
        make_task("au", "capsules")
    with pytest.raises(ValueError, match="never occur"):
        make_task("au", "capsules", np.array([[1.0, 0.0], [2.0, 0.0]]))


def _tiny_capsnet(n: int = 4, **kwargs) -> AUCapsNet:
    torch.manual_seed(0)
    return build_model("capsules", n, "ours", input_size=48, **TINY, **kwargs)


def test_multi_label_reconstruction_keeps_every_present_au() -> None:
    model = _tiny_capsnet(multi_label=True).eval()
    images = torch.rand(2, 1, 48, 48)
    targets = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    capsules = model.class_capsules(images)
    masked = model.mask(capsules, targets)
    kept = masked.norm(dim=-1) > 0
    assert kept.tolist() == targets.bool().tolist()
    torch.testing.assert_close(masked[0, 2], capsules[0, 2])
    out = model(images, targets)
    torch.testing.assert_close(out.reconstruction, model.decode(capsules * targets[..., None]))


def test_prediction_masks_by_threshold_or_longest() -> None:
    multi = _tiny_capsnet(multi_label=True)
    capsules = torch.zeros(1, 4, 4)
    capsules[0, :, 0] = torch.tensor([0.7, 0.2, 0.55, 0.4])
    assert (multi.mask(capsules).norm(dim=-1) > 0).tolist() == [[True, False, True, False]]
    single = _tiny_capsnet()
    assert (single.mask(capsules).norm(dim=-1) > 0).tolist() == [[True, False, False, False]]
    emotion = single.mask(capsules, torch.tensor([3]))
    assert (emotion.norm(dim=-1) > 0).tolist() == [[False, False, False, True]]


def test_length_softmax_scores() -> None:
    model = _tiny_capsnet(length_softmax=True).eval()
    out = model(torch.rand(3, 1, 48, 48))
    lengths = out.capsules.norm(dim=-1)
    torch.testing.assert_close(out.lengths, lengths.softmax(dim=-1))
    torch.testing.assert_close(out.lengths.sum(dim=1), torch.ones(3))


def test_balanced_reconstruction_weight_equalises_the_two_losses() -> None:
    model = _tiny_capsnet(multi_label=True)
    aus = torch.tensor([[2.0, 0, 1, 0], [0, 1, 0, 3], [1, 1, 0, 0]])
    batch = {"image": torch.rand(3, 1, 48, 48), "aus": aus}
    task = make_task("au", "capsules", aus.numpy())
    alpha = balanced_reconstruction_weight(model, batch, task)
    model.train()
    with torch.no_grad():
        out = model(batch["image"], (aus >= 1).float())
        margin = margin_loss(out.lengths, (aus >= 1).float(), class_weights=task.class_weights)
        recon = reconstruction_loss(out.reconstruction, batch["image"], "mean", weight=1.0)
    assert alpha * recon.item() == pytest.approx(margin.item(), rel=1e-5)
    task.recon_weight = alpha  # then both terms weigh the same: the loss is twice the margin
    with torch.no_grad():
        total = task.loss(task.forward(model, batch), batch)
    assert total.item() == pytest.approx(2 * margin.item(), rel=1e-5)


def _faces(n_subjects: int = 6, per_subject: int = 3, size: int = 48) -> FaceData:
    rng = np.random.default_rng(0)
    n = n_subjects * per_subject
    aus = np.tile(np.eye(3, dtype=np.float32)[[0, 1, 2]], (n_subjects, 1))[:n] * 2
    aus[::4, 0] = np.nan
    return FaceData(
        images=rng.integers(0, 256, (n, size, size), dtype=np.uint8),
        labels=np.arange(n) % 3,
        classes=["anger", "happiness", "surprise"],
        subjects=np.repeat([f"P{i}" for i in range(n_subjects)], per_subject),
        split=np.full(n, ""),
        aus=aus,
        au_names=["AU1", "AU2", "AU12"],
        landmarks=np.full((n, 68, 2), 23.5, dtype=np.float32),
        name="synthetic",
    )


def test_resize_images_scales_landmarks_with_pixel_centres() -> None:
    data = _faces(size=48)
    bigger = resize_images(data, 96)
    assert bigger.images.shape == (len(data), 96, 96) and bigger.images.dtype == np.uint8
    np.testing.assert_allclose(bigger.landmarks, 47.5)  # the centre stays the centre
    assert resize_images(data, 48) is data
    flat = FaceData(
        images=np.full((2, 4, 4, 3), 77, np.uint8), labels=[0, 0], classes=["anger"],
        subjects=["a", "b"], split=["", ""],
    )  # fmt: skip
    assert (resize_images(flat, 8).images == 77).all()


def test_select_aus_by_rate_or_name() -> None:
    data = _faces()
    # rows cycle AU1, AU2, AU12 (intensity 2); AU1 is unknown in rows 0, 4, 8, 12, 16, so it
    # is present in 4 of its 13 known rows (0.31), AU2 and AU12 in 6 of 18 (0.33)
    assert select_aus(data, min_rate=0.32).au_names == ["AU2", "AU12"]
    assert select_aus(data, min_rate=0.30).au_names == ["AU1", "AU2", "AU12"]
    only = select_aus(data, ["AU12"])
    np.testing.assert_array_equal(only.aus[:, 0], data.aus[:, 2])
    with pytest.raises(ValueError, match="not among"):
        select_aus(data, ["AU99"])


def test_recipes_keep_every_au_of_bp4d_and_disfa() -> None:
    """DISFA's AU1, AU2, AU9 are present in ~5% of frames: the papers report them all."""
    data = _faces()  # 18 images
    aus = np.zeros_like(data.aus)
    aus[[0, 1, 2], [0, 1, 2]] = 2  # each AU present in 1 of 18 images (6%)
    rare = replace(data, aus=aus)
    for preset in ("cpu", "paper"):
        for dataset in ("bp4d", "disfa"):
            kept = select_aus(rare, min_rate=recipe(preset, dataset).min_au_rate).au_names
            assert kept == ["AU1", "AU2", "AU12"]
        with pytest.raises(ValueError, match="not among"):  # none left: no AU above 7%
            select_aus(rare, min_rate=recipe(preset, "ckplus48").min_au_rate)


def test_cross_validate_tests_every_image_once_and_selects_on_validation(monkeypatch) -> None:
    from fernb.models import au_capsules

    tiny = au_capsules.Recipe({"ours": {"input_size": 32, **TINY}}, batch_size=8, epochs=2)
    monkeypatch.setitem(au_capsules.PRESETS, "tiny", {"posed": tiny, "frames": tiny})
    data = _faces(n_subjects=6, per_subject=3, size=32)
    folds = subject_kfold(data, 2, seed=0)
    runs = cross_validate(data, "au", "capsules", folds, preset="tiny", track_test=True)
    tested = np.sort(np.concatenate([run.test_index for run in runs]))
    np.testing.assert_array_equal(tested, np.arange(len(data)))
    for run in runs:
        assert run.fit.selection == "val" and run.fit.best_epoch in (1, 2)
        assert run.scores.shape == run.lengths.shape == (len(run.test_index), 3)
        assert run.recon_weight > 0 and run.test_selected["best_epoch"] in (1, 2)
        assert not run.model.training


def test_au_table_and_records_round_trip() -> None:
    scores = {
        "ours": {"f1": {"AU1": 0.5, "AU12": 0.2}, "f1_mean": 0.35, "auc": {"AU1": 0.6},
                 "auc_mean": 0.6},
        "cnn": {"f1": {"AU1": 0.4, "AU12": 0.3}, "f1_mean": 0.35, "auc": {"AU1": 0.7, "AU12": 0.5},
                "auc_mean": 0.6},
    }  # fmt: skip
    table = au_table(scores)
    assert table.index.tolist() == ["AU1", "AU12", "Avg"]
    assert table.columns.tolist() == [
        ("f1", "ours"),
        ("f1", "cnn"),
        ("auc", "ours"),
        ("auc", "cnn"),
    ]
    assert table.loc["AU12", ("f1", "cnn")] == pytest.approx(30.0)
    assert math.isnan(table.loc["AU12", ("auc", "ours")])
    row = pd.Series({
        "metrics.f1.AU1": 0.5, "metrics.f1.AU12": 0.2, "metrics.f1_mean": 0.35,
        "metrics.auc.AU1": 0.6, "metrics.auc.AU12": math.nan, "metrics.auc_mean": 0.6,
        "metrics.spearman.AU1": 0.9,
    })  # fmt: skip
    assert au_scores_from_record(row) == scores["ours"]


def test_collate_concatenates_folds_in_order() -> None:
    def run(fold, index, lengths):
        scores = np.full((len(index), 2), fold, dtype=float)
        return FoldRun(fold, None, None, np.array(index), scores, lengths)

    index, scores, lengths = collate(
        [run(0, [3, 1], np.zeros((2, 2))), run(1, [0], np.ones((1, 2)))]
    )
    assert index.tolist() == [3, 1, 0] and scores[:, 0].tolist() == [0, 0, 1]
    assert lengths.tolist() == [[0, 0], [0, 0], [1, 1]]
    assert collate([run(0, [2], None)])[2] is None


def test_load_data_resizes_and_names_unknown_datasets() -> None:
    data = load_data("synthetic", size=32, n_subjects=2, samples_per_subject=2)
    assert data.image_size == (32, 32)
    with pytest.raises(KeyError, match="unknown dataset 'affectnet'"):
        load_data("affectnet", "/nowhere")
    with pytest.raises(ValueError, match="needs root="):
        load_data("disfa")


def test_one_step_runs_forward_and_backward(monkeypatch) -> None:
    from fernb.models import au_capsules

    tiny = au_capsules.Recipe({"ours": {"input_size": 32, **TINY}}, batch_size=2)
    monkeypatch.setitem(au_capsules.PRESETS, "tiny", {"posed": tiny, "frames": tiny})
    data = _faces(n_subjects=2, per_subject=2, size=32)
    for kind, head in (("au", "capsules"), ("emotion", "cnn"), ("emotion", "capsules")):
        step = one_step(data, kind, head, "tiny", batch_size=3, softmax_lengths=True)
        assert step["input"] == (3, 1, 32, 32) and np.isfinite(step["loss"])
        assert step["parameters_with_gradient"] == step["parameters"]
