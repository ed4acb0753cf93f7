"""Meen et al.'s models: feature shapes, combinations, Eq. 1 vs Eq. 2, ten-crop, variants."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fernb.data import FaceData
from fernb.data.augment import ten_crop
from fernb.models.feature_attention import (
    CROP,
    PRESETS,
    AttentionSpec,
    ChannelSoftmax,
    EmotionData,
    FeatureAttentionNet,
    MapHead,
    TenCropTask,
    apply_attention,
    combine_with_image,
    face_network,
    images_on,
    load_face_network,
    paper_train_config,
    save_face_network,
    stage_outputs,
    train_variant,
    variant_label,
    variant_records,
    variant_spec,
)
from fernb.nn.vgg import SmallInputVGG
from fernb.results import paper_tables

WIDTH = 1 / 16


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def constant_face_net(width: float = WIDTH) -> SmallInputVGG:
    """A face network whose every feature is 1 (zero kernels, unit biases, eval-mode BN)."""
    net = SmallInputVGG(2, width=width, in_channels=1)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.zeros_(module.weight)
            nn.init.ones_(module.bias)
    return net.eval()


def test_facial_features_are_512_by_5_by_5_at_full_width() -> None:
    vgg = SmallInputVGG(2, width=1.0, in_channels=1).features.eval()
    with torch.no_grad():
        _, tapped = stage_outputs(vgg, torch.rand(2, 1, CROP, CROP), (2, 3, 4), until=4)
    assert tapped[4].shape == (2, 512, 5, 5)  # the paper's (512, 5, 5) facial features
    assert tapped[3].shape == (2, 256, 11, 11)
    assert tapped[2].shape == (2, 128, 22, 22)


def test_stage_outputs_match_the_network_and_its_pooled_stages() -> None:
    vgg = SmallInputVGG(2, width=WIDTH, in_channels=1).features.eval()
    images = torch.rand(3, 1, CROP, CROP)
    with torch.no_grad():
        out, tapped = stage_outputs(vgg, images, (1, 3))
        pooled = vgg.forward_stages(images)
        torch.testing.assert_close(out, vgg(images))
        for stage in (1, 3):  # the tap is the stage output before its 2 x 2 max-pool
            torch.testing.assert_close(F.max_pool2d(tapped[stage], 2), pooled[stage - 1])
        zeroed, _ = stage_outputs(vgg, images, (5,), lambda stage, x: torch.zeros_like(x))
    assert torch.count_nonzero(zeroed) == 0
    _, early = stage_outputs(vgg, images, (1, 2, 3), until=2)
    assert sorted(early) == [1, 2]


def test_eq1_and_eq2_by_hand() -> None:
    features = torch.tensor([[2.0, 3.0, -1.0]])
    maps = torch.tensor([[0.5, 0.0, 1.0]])
    torch.testing.assert_close(apply_attention(features, maps, "dot"), torch.tensor([[1.0, 0, -1]]))
    torch.testing.assert_close(
        apply_attention(features, maps, "weighted"), torch.tensor([[3.0, 3, -2]])
    )
    # Eq. 2 = Eq. 1 + the image itself: no pixel vanishes where the map is 0.
    torch.testing.assert_close(
        apply_attention(features, maps, "weighted") - apply_attention(features, maps, "dot"),
        features,
    )
    with pytest.raises(ValueError, match="Eq\\. 1"):
        apply_attention(features, maps, "sum")


def test_combine_with_image_variants() -> None:
    images = torch.rand(2, 1, 4, 4)
    maps = torch.rand(2, 3, 4, 4)
    concat = combine_with_image(images, maps, "concat")
    assert concat.shape == (2, 4, 4, 4)
    torch.testing.assert_close(concat[:, :1], images)
    torch.testing.assert_close(concat[:, 1:], maps)
    dot = combine_with_image(images, maps, "dot")
    weighted = combine_with_image(images, maps, "weighted")
    for m in range(3):
        torch.testing.assert_close(dot[:, m], images[:, 0] * maps[:, m])
        torch.testing.assert_close(weighted[:, m], images[:, 0] * (1 + maps[:, m]))
    rgb = torch.rand(2, 3, 4, 4)
    pairs = combine_with_image(rgb, maps[:, :2], "dot")  # channel-major: (c0 m0, c0 m1, c1 m0..)
    assert pairs.shape == (2, 6, 4, 4)
    torch.testing.assert_close(pairs[:, 3], rgb[:, 1] * maps[:, 1])
    with pytest.raises(ValueError, match="concat"):
        combine_with_image(images, maps, "add")


def test_map_heads_reduce_as_described() -> None:
    features = torch.tensor([[[[0.0, 2.0], [4.0, 2.0]], [[1.0, 1.0], [1.0, 3.0]]]])
    every = MapHead(2, "all")(features)
    torch.testing.assert_close(every, features / torch.tensor([4.0, 3.0]).view(1, 2, 1, 1))
    average = MapHead(2, "average")(features)  # channel mean [[.5, 1.5], [2.5, 2.5]] / 2.5
    torch.testing.assert_close(average, torch.tensor([[[[0.2, 0.6], [1.0, 1.0]]]]))
    conv = MapHead(2, "conv")
    nn.init.constant_(conv.conv.weight, 1.0)
    nn.init.zeros_(conv.conv.bias)
    torch.testing.assert_close(conv(features), torch.sigmoid(features.sum(1, keepdim=True)))
    assert MapHead(2, "all").maps == 2 and MapHead(2, "conv").maps == 1
    with pytest.raises(ValueError, match="reduce"):
        MapHead(2, "max")


def test_channel_softmax_weights() -> None:
    features = torch.rand(2, 4, 3, 3) + 0.1
    weighting = ChannelSoftmax(4)
    nn.init.zeros_(weighting.score.weight)
    nn.init.zeros_(weighting.score.bias)
    torch.testing.assert_close(weighting(features), features)  # uniform weights: unchanged
    nn.init.constant_(weighting.score.bias, 0.0)
    with torch.no_grad():
        weighting.score.bias[2] = np.log(5.0)  # channel 2 scores 5x the others: w = 5/8, 1/8
    out = weighting(features)
    expected = torch.tensor([1 / 8, 1 / 8, 5 / 8, 1 / 8]) * 4
    torch.testing.assert_close(out / features, expected.view(1, 4, 1, 1).expand_as(features))


def test_softmax_weights_survive_on_all_maps() -> None:
    """Model 2 with all features: each map is peak-normalised, then weighted (a weight
    applied before the normalisation would cancel), and the weighting gets gradients."""
    features = torch.rand(2, 4, 3, 3) + 0.1
    head = MapHead(4, "all", softmax_weights=True)
    nn.init.zeros_(head.weights.score.weight)
    with torch.no_grad():
        head.weights.score.bias.copy_(torch.tensor([0.0, 0.0, np.log(5.0), 0.0]))
    maps = head(features)
    peak = features / features.amax(dim=(-2, -1), keepdim=True)  # MapHead(4, "all")
    torch.testing.assert_close(MapHead(4, "all")(features), peak)
    weights = torch.tensor([1 / 8, 1 / 8, 5 / 8, 1 / 8]) * 4  # C softmax: 0.5, 0.5, 2.5, 0.5
    torch.testing.assert_close(maps, peak * weights.view(1, 4, 1, 1))
    maps.square().sum().backward()
    assert head.weights.score.weight.grad.abs().sum() > 0


def test_variant_names_follow_the_papers_table() -> None:
    names = set(paper_tables("feature_attention")["variant"])
    assert names == {
        "vgg19",
        "model1_all",
        "model1_averaging",
        "model2_all",
        "model2_averaging",
        "model3_facial",
        "model3_emotion",
        "model3_combination",
        "model3_separately",
    }
    assert variant_spec("vgg19") == AttentionSpec()
    assert variant_spec("model1_all") == AttentionSpec(input_stages=(4,), reduce="all")
    assert variant_spec("model2_all").combine == "concat"  # the paper's best for this row
    assert variant_spec("model2_averaging").softmax_weights
    assert variant_spec("model1_conv_dot").combine == "dot"
    facial = variant_spec("model3_facial")
    assert (facial.stage_source, facial.stage_equation, facial.input_stages) == (
        "facial",
        "dot",
        (),
    )
    separately = variant_spec("model3_separately")
    assert separately.input_stages == (2, 3, 4) and separately.stage_source == "emotion"
    assert variant_spec("model3_emotion").face_stages() == ()
    for bad in ("vgg16", "model1", "model1_all_sum", "model3_all", "model4_all"):
        with pytest.raises(ValueError, match="unknown variant"):
            variant_spec(bad)


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="combine"):
        AttentionSpec(combine="add")
    with pytest.raises(ValueError, match="stages 1 to 5"):
        AttentionSpec(input_stages=(6,))
    with pytest.raises(ValueError, match="at least one stage"):
        AttentionSpec(stage_source="emotion", stages=())


@pytest.mark.parametrize(
    ("variant", "channels"),
    [
        ("vgg19", 1),
        ("model1_all_concat", 1 + 32),  # width 1/16: stage 4 has 512 / 16 channels
        ("model1_all_dot", 32),
        ("model1_averaging_concat", 2),
        ("model1_conv_weighted", 1),
        ("model3_separately", 3),  # one averaged map from each of stages 2, 3, 4
    ],
)
def test_emotion_network_input_channels(variant: str, channels: int) -> None:
    model = FeatureAttentionNet(7, variant_spec(variant), constant_face_net(), width=WIDTH)
    assert model.emotion.features.in_channels == channels
    assert model(torch.rand(2, 1, CROP, CROP)).shape == (2, 7)


def test_constant_facial_features_give_unit_maps_and_the_plain_network() -> None:
    """All facial features 1 -> every map is 1 -> Eq. 1 changes nothing, Eq. 2 doubles."""
    face = constant_face_net()
    images = torch.rand(3, 1, CROP, CROP)
    for variant in ("model1_averaging_dot", "model2_averaging_dot", "model3_facial"):
        model = FeatureAttentionNet(7, variant_spec(variant), face, width=WIDTH).eval()
        maps = model.input_maps(images)
        if maps is not None:
            torch.testing.assert_close(maps, torch.ones_like(maps), atol=1e-5, rtol=0)
        with torch.no_grad():
            torch.testing.assert_close(model(images), model.emotion(images), atol=1e-4, rtol=0)
    model = FeatureAttentionNet(7, variant_spec("model1_averaging_weighted"), face, width=WIDTH)
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval()(images), model.emotion(2 * images), atol=1e-4, rtol=0
        )


def test_model1_input_is_the_image_times_the_upsampled_mean_feature() -> None:
    face = SmallInputVGG(2, width=WIDTH, in_channels=1).eval()
    model = FeatureAttentionNet(7, variant_spec("model1_averaging_dot"), face, width=WIDTH).eval()
    images = torch.rand(2, 1, CROP, CROP)
    seen = []
    first_conv = model.emotion.features.stages["stage1"][0]
    first_conv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        model(images)
        features = face.features.stages["stage1"](images)
        for name in ("stage2", "stage3"):
            features = face.features.stages[name](features)
        features = face.features.stages["stage4"][:-1](features)  # (32, 5, 5): before the pool
    mean = features.mean(1, keepdim=True)
    mean = mean / mean.amax(dim=(-2, -1), keepdim=True)
    expected = images * F.interpolate(mean, size=(CROP, CROP), mode="bilinear")
    torch.testing.assert_close(seen[0], expected)


def test_face_network_is_frozen() -> None:
    face = SmallInputVGG(2, width=WIDTH, in_channels=1)
    before = {k: v.clone() for k, v in face.state_dict().items()}
    model = FeatureAttentionNet(7, variant_spec("model3_combination"), face, width=WIDTH)
    model.train()
    assert not model.face.training and model.emotion.training
    assert not any(p.requires_grad for p in model.face.parameters())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    F.cross_entropy(model(torch.rand(4, 1, CROP, CROP)), torch.arange(4)).backward()
    optimizer.step()
    for key, value in face.state_dict().items():  # BN running stats included
        torch.testing.assert_close(value, before[key])


def test_missing_or_mismatched_face_network_is_refused() -> None:
    with pytest.raises(ValueError, match="pass face_net"):
        FeatureAttentionNet(7, variant_spec("model1_all"))
    FeatureAttentionNet(7, variant_spec("model3_emotion"))  # reads no facial features
    with pytest.raises(ValueError, match="same width"):
        FeatureAttentionNet(
            7, variant_spec("model3_combination"), constant_face_net(1 / 8), width=WIDTH
        )


def test_ten_crop_score_is_the_mean_over_the_ten_crops() -> None:
    model = SmallInputVGG(5, width=WIDTH, in_channels=1).eval()
    images = torch.rand(3, 1, 48, 48)
    task = TenCropTask()
    with torch.no_grad():
        by_crop = torch.stack([model(crop) for crop in ten_crop(images, CROP)])
        torch.testing.assert_close(task.forward(model, {"image": images}), by_crop.mean(0))
        centre = images[..., 2:46, 2:46]
        mirrored = images.flip(-1)[..., 2:46, 2:46]
        torch.testing.assert_close(by_crop[4], model(centre))
        torch.testing.assert_close(by_crop[9], model(mirrored))
    model.train()
    crops = torch.rand(3, 1, CROP, CROP)
    assert task.forward(model, {"image": crops}).shape == (3, 5)


def test_paper_schedule() -> None:
    config = paper_train_config(250, device="cpu")
    assert (config.optimizer, config.lr, config.momentum, config.weight_decay) == (
        "sgd",
        0.01,
        0.9,
        5e-4,
    )
    assert config.milestones == (125, 188, 225) and config.batch_size == 128
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=config.lr)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), 0.1)
    rates = []
    for _ in range(250):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    np.testing.assert_allclose(
        [rates[i] for i in (0, 124, 125, 188, 225, 249)], [1e-2, 1e-2, 1e-3, 1e-4, 1e-5, 1e-5]
    )
    assert paper_train_config(3).milestones == (2, 3)  # 1.5 and 2.25 both round to 2
    assert paper_train_config(10, batch_size=16).batch_size == 16
    with pytest.raises(ValueError, match="epochs"):
        paper_train_config(0)


def test_face_network_round_trip(tmp_path) -> None:
    face = SmallInputVGG(2, width=WIDTH, in_channels=1).eval()
    loaded = load_face_network(save_face_network(face, tmp_path / "face.pt")).eval()
    images = torch.rand(2, 1, CROP, CROP)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), face(images))


def test_face_network_loads_only_a_checkpoint_made_the_same_way(tmp_path) -> None:
    face = SmallInputVGG(2, width=WIDTH, in_channels=1).eval()
    path = save_face_network(face, tmp_path / "face.pt", {"dataset": "ckplus48", "seed": 0})
    with pytest.raises(ValueError, match=r"face.pt: .*\{'seed': 0\}.*not \{'seed': 1\}"):
        load_face_network(path, {"dataset": "ckplus48", "seed": 1})
    load_face_network(path, {"dataset": "ckplus48", "seed": 0})

    def never_built() -> None:
        pytest.fail("the face data of a network loaded from its checkpoint is not built")

    preset = replace(PRESETS["default"], width=WIDTH)
    made = {"dataset": "ckplus48", "width": WIDTH, "face_epochs": preset.face_epochs, "seed": 0}
    save_face_network(face, path, made)
    _, fit = face_network(never_built, preset, path, {"dataset": "ckplus48"}, seed=0)
    assert fit is None
    with pytest.raises(ValueError, match=r"\{'seed': 0\}"):  # another seed's split
        face_network(never_built, preset, path, {"dataset": "ckplus48"}, seed=1)
    with pytest.raises(ValueError, match="'dataset': 'ckplus48'"):
        face_network(never_built, preset, path, {"dataset": "fer2013"}, seed=0)
    unrecorded = tmp_path / "unrecorded.pt"
    torch.save({"width": WIDTH, "state": face.state_dict()}, unrecorded)
    with pytest.raises(ValueError, match="None: not saved"):
        face_network(never_built, preset, unrecorded, {"dataset": "ckplus48"}, seed=0)


def tiny_emotion_data() -> EmotionData:
    rng = np.random.default_rng(0)
    n = 42
    labels = np.arange(n) % 7
    images = rng.integers(0, 60, (n, 48, 48)).astype(np.uint8)
    images[:, 10:30, 10:30] += (labels * 25)[:, None, None].astype(np.uint8)  # learnable cue
    data = FaceData(
        images,
        labels,
        ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"],
        subjects=np.arange(n) // 7,
        split=np.full(n, ""),
        name="synthetic",
    )
    index = np.arange(n)
    return EmotionData(data, {"train": index[:28], "val": index[28:35], "test": index[35:]}, "p")


def test_train_variant_selects_on_val_and_tracks_test() -> None:
    emotion = tiny_emotion_data()
    run = train_variant(
        "model3_emotion",
        emotion,
        None,
        PRESETS["default"],
        track_test=True,
        epochs=3,
        device="cpu",
        progress=False,
    )
    history = run.fit.history
    assert len(run.test_curve.scores) == 3 == len(history)
    assert run.fit.best_epoch == int(history["epoch"][history["val_accuracy"].idxmax()])
    epoch, accuracy = run.test_selected()
    assert accuracy == max(run.test_curve.scores) and run.test_curve.scores[epoch - 1] == accuracy
    assert len(run.test.targets) == 7
    val, test = variant_records(run, emotion, seed=0, device="cpu")
    assert (val.selection, test.selection) == ("val", "test")
    assert val.metrics["accuracy"] == run.test.metrics["accuracy"]
    assert val.metrics["val_accuracy"] == run.fit.best_metrics["accuracy"]
    assert val.metrics["best_epoch"] == run.fit.best_epoch
    assert sum(sum(row.values()) for row in val.metrics["confusion"].values()) == 7
    assert test.metrics == {"accuracy": accuracy, "best_epoch": float(epoch)}


def test_images_on_moves_only_the_images() -> None:
    split = {"image": torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "label": torch.tensor([0, 1])}
    moved = images_on(split, "cpu")
    assert moved["label"] is split["label"] and moved["image"].device.type == "cpu"
    assert set(moved) == {"image", "label"} and split["image"].dtype == moved["image"].dtype


def test_variant_labels_spell_out_the_table_rows() -> None:
    assert variant_label("vgg19") == "VGG19"
    assert variant_label("model2_averaging") == "Model 2 with averaged features"
    assert variant_label("model1_all_concat") == "Model 1 with all features, concatenated"
    assert variant_label("model3_separately") == 'Model 3 "separately"'
    assert variant_label("model3_separately_weighted") == 'Model 3 "separately", Eq. 2'
    with pytest.raises(ValueError, match="unknown variant"):
        variant_label("model4_all")
