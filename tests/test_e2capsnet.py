"""E2-Capsnet and its ablation family (fernb.models.e2capsnet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import papermill
import pytest
import torch
import torch.nn.functional as F

from fernb.data import load
from fernb.data.facedata import FaceData
from fernb.models.e2capsnet import (
    PRESETS,
    VARIANTS,
    AsReleased,
    AttentionVGG,
    E2CapsNet,
    Split,
    build_model,
    experiment_splits,
    face_maps,
    flip_augmentation,
    make_task,
    prepare_split,
    run_records,
    train_variant,
)
from fernb.nn.capsules import margin_loss
from fernb.tasks import CapsuleOutput

CAPSULE_VARIANTS = [name for name, parts in VARIANTS.items() if parts.capsules]


def _batch(n: int = 4, size: int = 64, channels: int = 1, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(n, channels, size, size, generator=generator),
        "label": torch.arange(n) % 7,
        "maps": torch.rand(n, 1, 100, 100, generator=generator),
    }


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_output_shapes_at_the_cpu_preset(variant: str) -> None:
    torch.manual_seed(0)
    model = build_model(variant, "cpu", num_classes=7, in_channels=1).eval()
    batch = _batch()
    with torch.no_grad():
        out = model(batch["image"], maps=batch["maps"])
        features = model.embed(batch["image"], batch["maps"])
    if VARIANTS[variant].capsules:
        assert isinstance(out, CapsuleOutput)
        assert out.lengths.shape == (4, 7)
        assert out.capsules.shape == (4, 7, 16)
        assert out.reconstruction.shape == (4, 1, 64, 64)
        assert features.shape == (4, 7 * 16)
    else:
        assert out.shape == (4, 7)
        assert features.shape == (4, round(4096 * PRESETS["cpu"].width))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_output_shapes_at_the_paper_preset(variant: str) -> None:
    # the paper's sizes (224 x 224 RGB, VGG16 at full width): shapes on the meta device
    with torch.device("meta"):
        model = build_model(variant, "paper", num_classes=7, in_channels=3)
        images, maps = torch.empty(2, 3, 224, 224), torch.empty(2, 1, 100, 100)
        out = model(images, maps=maps)
        features = model.embed(images, maps)
    if VARIANTS[variant].capsules:
        assert out.lengths.shape == (2, 7)
        assert out.reconstruction.shape == (2, 3, 224, 224)
        assert features.shape == (2, 112)
    else:
        assert out.shape == (2, 7) and features.shape == (2, 4096)
    if VARIANTS[variant].vgg and VARIANTS[variant].capsules:
        # 512 x 7 x 7 -> 2 x 2 conv -> 256 x 6 x 6 = 32 types of 8D capsules at 6 x 6
        assert model.primary.conv.out_channels == 256
        assert model.primary.num_capsules(7, 7) == 32 * 6 * 6
        assert model.face_caps.weight.shape == (1152, 7, 16, 8)
        assert [layer.out_features for layer in model.decoder.layers[::2]] == [512, 1024, 150528]


def _twin_backbones(map_after_conv: bool) -> tuple[AttentionVGG, AttentionVGG]:
    torch.manual_seed(0)
    plain = AttentionVGG(in_channels=1, width=0.125, attention=False).eval()
    attended = AttentionVGG(1, 0.125, attention=True, map_after_conv=map_after_conv).eval()
    attended.vgg.load_state_dict(plain.vgg.state_dict())
    for conv in attended.enhance.values():  # make sure the enhancement is not negligible
        torch.nn.init.normal_(conv.weight, std=0.5)
    return plain, attended


@pytest.mark.parametrize("map_after_conv", [False, True])
def test_attention_changes_stages_3_and_4_only_when_the_map_is_nonzero(
    map_after_conv: bool,
) -> None:
    plain, attended = _twin_backbones(map_after_conv)
    images = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        reference = plain.forward_stages(images)
        silent = attended.forward_stages(images, torch.zeros(2, 1, 100, 100))
        active = attended.forward_stages(images, torch.ones(2, 1, 100, 100))
    for ref, out in zip(reference, silent, strict=True):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
    for stage in (0, 1):  # stages 1 and 2 come before any attention
        torch.testing.assert_close(active[stage], reference[stage], rtol=0, atol=0)
    for stage in (2, 3):
        assert (active[stage] - reference[stage]).abs().max() > 1e-3


def test_attention_adds_the_gated_parallel_conv_before_the_pool() -> None:
    # a map of 0.5 everywhere: stage 3 = pool(convs(x2) + P3(0.5 * x2)) (the paper's order)
    plain, attended = _twin_backbones(map_after_conv=False)
    images = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        x2 = plain.forward_stages(images)[1]
        stage3 = attended.vgg.stages["stage3"]
        expected = F.max_pool2d(stage3[:-1](x2) + attended.enhance["stage3"](0.5 * x2), 2)
        got = attended.forward_stages(images, torch.full((2, 1, 100, 100), 0.5))[2]
    torch.testing.assert_close(got, expected)


def test_attention_variants_need_maps_and_small_inputs_are_refused() -> None:
    model = build_model("e2capsnet", "cpu", in_channels=1)
    with pytest.raises(ValueError, match="maps"):
        model(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="64 x 64"):
        model(torch.rand(1, 1, 48, 48), maps=torch.rand(1, 1, 100, 100))
    with pytest.raises(ValueError, match="input_size >= 64"):
        E2CapsNet("rccnet", input_size=48, width=0.0625)
    with pytest.raises(ValueError, match="unknown variant"):
        build_model("resnet", "cpu")
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("vgg16", "gpu")


@pytest.mark.parametrize("variant", CAPSULE_VARIANTS)
def test_capsule_lengths_lie_in_the_unit_interval(variant: str) -> None:
    torch.manual_seed(0)
    model = build_model(variant, "cpu", in_channels=1)
    batch = _batch(n=6)
    for scale in (1.0, 100.0):  # at initialisation, and with long capsules
        with torch.no_grad():
            model.face_caps.weight.mul_(scale)
        out = model(batch["image"], maps=batch["maps"])
        assert torch.equal(out.lengths, out.capsules.norm(dim=-1))
        assert (out.lengths > 0).all() and (out.lengths < 1).all()
    assert out.lengths.max() > 0.9


def test_softmax_scores_switch_gives_probabilities_of_the_lengths() -> None:
    torch.manual_seed(0)
    model = build_model(
        "rccnet", "cpu", in_channels=1, as_released=AsReleased.only("softmax_scores")
    )
    out = model(_batch()["image"])
    torch.testing.assert_close(out.lengths, out.capsules.norm(dim=-1).softmax(dim=-1))
    torch.testing.assert_close(out.lengths.sum(dim=1), torch.ones(4))


def test_decoder_masks_the_target_in_training_and_the_prediction_if_released() -> None:
    images = _batch()["image"]
    for switches, same_as_predicted in (((), False), (("predicted_mask",), True)):
        torch.manual_seed(0)
        model = build_model("rccnet", "cpu", in_channels=1, as_released=AsReleased.only(*switches))
        model.eval()  # the same batch-norm statistics for both calls
        predicted = model(images).capsules.norm(dim=-1).argmax(dim=1)
        wrong = (predicted + 1) % 7
        with_targets = model(images, wrong).reconstruction
        without = model(images).reconstruction
        assert torch.equal(with_targets, without) == same_as_predicted


def test_input_axis_routing_switch_uses_the_released_axis_and_initialisation() -> None:
    paper = build_model("e2capsnet", "cpu", in_channels=1)
    released = build_model(
        "e2capsnet", "cpu", in_channels=1, as_released=AsReleased.only("input_axis_routing")
    )
    assert paper.face_caps.softmax_axis == "paper"
    assert released.face_caps.softmax_axis == "input"
    assert 0.005 < paper.face_caps.weight.std() < 0.02
    assert 0.9 < released.face_caps.weight.std() < 1.1


def test_losses_follow_equations_3_to_5_and_the_released_mean() -> None:
    torch.manual_seed(0)
    model = build_model("rccnet", "cpu", in_channels=1)
    batch = _batch()
    for released, weight in (
        (AsReleased(), 0.0005),
        (AsReleased.only("mean_reconstruction"), None),
    ):
        task = make_task("rccnet", released, batch_size=16)
        model.train()
        torch.manual_seed(1)
        out = task.forward(model, batch)
        loss = task.loss(out, batch)
        squared = (out.reconstruction - batch["image"]).pow(2).flatten(1)
        per_image = squared.sum(1) * 0.0005 if weight else squared.mean(1) * 0.0005 / 16
        margins = margin_loss(out.lengths, batch["label"], 0.9, 0.1, 0.5)
        torch.testing.assert_close(loss, margins + per_image.mean())
    assert type(make_task("vgg16")).__name__ == "E2Classification"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_few_training_steps_lower_the_loss_on_a_fixed_batch(variant: str) -> None:
    torch.manual_seed(0)
    model = build_model(variant, "cpu", in_channels=1)
    task = make_task(variant)
    batch = _batch(n=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout masks every time
        return task.loss(task.forward(model, batch), batch)

    before = loss().item()
    for _ in range(5):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.95 * before


def test_flip_switch_really_misaligns_map_and_image() -> None:
    # the image is its own map: aligned flipping keeps them equal, the released one mirrors
    pattern = torch.zeros(3, 1, 10, 10)
    pattern[:, :, 2:5, 1:3] = 1.0  # off-centre, so a flip changes it
    batch = {"image": pattern.clone(), "maps": pattern.clone(), "label": torch.zeros(3)}
    generator = torch.Generator().manual_seed(0)
    aligned = flip_augmentation(AsReleased(), probability=1.0)(batch, generator)
    released = flip_augmentation(AsReleased.only("unflipped_map"), 1.0)(batch, generator)
    assert torch.equal(aligned["image"], pattern.flip(-1))
    assert torch.equal(aligned["maps"], aligned["image"])
    assert torch.equal(released["image"], pattern.flip(-1))
    assert torch.equal(released["maps"], pattern)
    assert not torch.equal(released["maps"], released["image"])


def test_flip_switch_on_face_maps_leaves_the_attention_on_the_wrong_side() -> None:
    # posed, shifted faces (difficulty 1) are asymmetric, so mirroring them moves their map
    faces = load("synthetic", n_subjects=2, samples_per_subject=2, difficulty=1.0)
    maps, landmarks = face_maps(faces)
    mirrored = faces.subset(np.arange(4))
    mirrored.landmarks = landmarks.points.copy()
    mirrored.landmarks[..., 0] = faces.image_size[1] - 1 - mirrored.landmarks[..., 0]
    mirrored_maps, _ = face_maps(mirrored)
    batch = {"image": torch.from_numpy(faces.images[:, None]).float() / 255, "maps": maps}
    generator = torch.Generator().manual_seed(0)
    aligned = flip_augmentation(AsReleased(), 1.0)(batch, generator)["maps"]
    released = flip_augmentation(AsReleased.only("unflipped_map"), 1.0)(batch, generator)["maps"]
    # the map of the mirrored face is the mirrored map up to a shift of 2 to 3 columns at
    # 48 px (fernb.face.au_attention), much closer to it than the unflipped map the release keeps
    aligned_error = (aligned - mirrored_maps).abs().mean()
    released_error = (released - mirrored_maps).abs().mean()
    assert aligned_error < 0.6 * released_error


def test_face_maps_use_given_landmarks_and_quirks_switch() -> None:
    faces = load("synthetic", n_subjects=1, samples_per_subject=3)
    maps, landmarks = face_maps(faces)
    quirky, _ = face_maps(faces, AsReleased.only("map_quirks"))
    assert maps.shape == (3, 1, 100, 100) and maps.dtype == torch.float32
    assert landmarks.backend == "given" and landmarks.fallbacks == 0
    assert maps.max() == 1.0 and maps.min() == 0.0
    assert torch.equal(face_maps(faces, chunk=1)[0], maps)  # painted in chunks, the same
    # the release's half-open 14 x 14 window paints fewer pixels than the paper's 15 x 15
    assert 0 < (quirky > 0).sum() < (maps > 0).sum()


def _fake_official(train: int = 6, val: int = 3, test: int = 3) -> FaceData:
    n = train + val + test
    return FaceData(
        images=np.zeros((n, 48, 48), np.uint8),
        labels=np.arange(n) % 3,
        classes=["anger", "happiness", "sadness"],
        subjects=np.arange(n).astype(str),
        split=np.array(["train"] * train + ["val"] * val + ["test"] * test),
        name="fake",
    )


def test_experiment_splits_are_official_or_subject_independent() -> None:
    protocol, splits = experiment_splits(_fake_official())
    assert protocol.startswith("official") and len(splits) == 1
    assert splits[0].fold is None
    assert [len(splits[0].train), len(splits[0].val), len(splits[0].test)] == [6, 3, 3]
    no_val = _fake_official(train=16, val=0, test=4)  # RAF-DB: train and test only
    protocol, (split,) = experiment_splits(no_val, val_fraction=0.25)
    assert "val (model selection): 25% of the training subjects" in protocol
    assert [len(split.train), len(split.val)] == [12, 4]
    assert np.array_equal(np.sort(np.r_[split.train, split.val]), np.arange(16))
    assert np.array_equal(split.test, np.arange(16, 20))
    data = load("synthetic", n_subjects=10, samples_per_subject=8)
    protocol, splits = experiment_splits(data, folds=5, val_fraction=0.2)
    assert "5-fold subject-independent" in protocol and len(splits) == 5
    tested = np.concatenate([split.test for split in splits])
    assert np.array_equal(np.sort(tested), np.arange(len(data)))
    for split in splits:
        people = [set(data.subjects[index]) for index in (split.train, split.val, split.test)]
        assert not (people[0] & people[1] or people[0] & people[2] or people[1] & people[2])
        assert len(split.train) + len(split.val) + len(split.test) == len(data)


def test_prepare_split_resizes_to_the_input_size_and_keeps_the_maps() -> None:
    data = _fake_official()
    data.images[:, :, :24] = 200
    maps = torch.rand(len(data), 1, 100, 100)
    split = prepare_split(data, np.array([1, 4, 7]), 64, maps)
    assert split["image"].shape == (3, 1, 64, 64) and split["image"].dtype == torch.uint8
    assert (split["image"][..., :, :30] == 200).all() and (split["image"][..., :, 34:] == 0).all()
    assert torch.equal(split["maps"], maps[[1, 4, 7]])
    assert torch.equal(split["label"], torch.tensor([1, 1, 1]))


def test_as_released_switches_by_name() -> None:
    assert AsReleased().on() == () and AsReleased().suffix() == ""
    everything = AsReleased.only("all")
    assert everything.on() == AsReleased.names() and len(AsReleased.names()) == 8
    assert AsReleased.only("map_quirks", "test_selection").suffix() == "+map_quirks"
    with pytest.raises(ValueError, match="unknown as-released switch"):
        AsReleased.only("flip")


def test_train_variant_selects_on_val_and_records_both_selections() -> None:
    data = load("synthetic", n_subjects=6, samples_per_subject=8, classes=("anger", "happiness"))
    maps, _ = face_maps(data)
    _, splits = experiment_splits(data, folds=3)
    split = Split(0, splits[0].train, splits[0].val, splits[0].test)
    run = train_variant(
        "avggnet", data, split, maps, "cpu", epochs=2, device="cpu",
        as_released=AsReleased.only("test_selection"),
    )  # fmt: skip
    assert len(run.fit.history) == 2 and run.fit.selection == "val"
    assert 0 <= run.test_metrics["accuracy"] <= 1
    assert run.test_selected["best_epoch"] in (1, 2)
    val, test = run_records(run, "ablation", data, "3-fold", 0, 0, "cpu")
    assert (val.selection, test.selection) == ("val", "test")
    assert val.dataset == test.dataset == "synthetic"
    assert val.data_options == test.data_options == data.provenance
    assert val.data_options["n_subjects"] == 6
    assert val.variant == test.variant == "avggnet"
    assert val.metrics["accuracy"] == run.test_metrics["accuracy"]
    # the best test accuracy over the epochs bounds that of the val-selected epoch
    assert test.metrics["accuracy"] >= val.metrics["accuracy"]
    with pytest.raises(ValueError, match="needs attention maps"):
        train_variant("e2capsnet", data, split, None, "cpu", epochs=1)


def test_a_checkpointed_run_is_read_back_not_trained_again(tmp_path, monkeypatch) -> None:
    data = load("synthetic", n_subjects=6, samples_per_subject=4, classes=("anger", "happiness"))
    _, splits = experiment_splits(data, folds=3)
    first = train_variant("vgg16", data, splits[0], None, "cpu", 2, checkpoint_root=tmp_path)
    folders = list(tmp_path.glob("synthetic/vgg16/64px-w0.0625_fold-0_seed-0_epochs-2"))
    assert len(folders) == 1 and (folders[0] / "best.pt").is_file()
    monkeypatch.setattr(torch.optim.Adam, "step", lambda *_, **__: pytest.fail("trained again"))
    again = train_variant("vgg16", data, splits[0], None, "cpu", 2, checkpoint_root=tmp_path)
    assert again.fit.best_epoch == first.fit.best_epoch
    np.testing.assert_allclose(again.test_scores, first.test_scores, rtol=1e-6)


def test_the_ablation_page_refuses_an_empty_list_of_models(repo_root: Path, tmp_path: Path) -> None:
    """With no model to train the page would fail later on an empty table; it stops at once."""
    source = repo_root / "book" / "e2capsnet" / "ablation.ipynb"
    with pytest.raises(papermill.PapermillExecutionError, match="variants is empty"):
        papermill.execute_notebook(
            source,
            tmp_path / source.name,
            parameters={"variants": []},
            cwd=source.parent,
            kernel_name="python3",
            progress_bar=False,
        )
