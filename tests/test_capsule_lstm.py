"""Capsule-LSTM: clip shapes, the decoder's single capsule, the LSTM, the loss switches, clips."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fernb.data import FaceData
from fernb.data.augment import Augmentation
from fernb.data.splits import subject_kfold
from fernb.models.capsule_lstm import (
    VARIANTS,
    CapsuleLSTM,
    CapsuleLSTMConfig,
    CapsuleLSTMOutput,
    CapsuleLSTMTask,
    ClipAugmentation,
    ClipLSTM,
    LossLog,
    Preset,
    clip_rows,
    clip_tensors,
    fold_record,
    load_sequences,
    select_classes,
    train_fold,
)
from fernb.results import paper_tables

#: 48 -> conv 3 -> 46 -> primary kernel 9, stride 3 -> 13 x 13 positions.
SMALL = CapsuleLSTMConfig(
    conv_channels=4,
    primary_types=2,
    primary_dim=4,
    primary_stride=3,
    capsule_dim=5,
    decoder_channels=(4, 4, 2),
    hidden_size=7,
)


def _model(**changes) -> CapsuleLSTM:
    torch.manual_seed(0)
    return CapsuleLSTM(replace(SMALL, **changes))


def test_clip_shapes_through_encoder_decoder_and_lstm() -> None:
    model = _model()
    clips = torch.rand(2, 5, 1, 48, 48)
    assert model.encoder.digits.weight.shape == (2 * 13 * 13, 6, 5, 4)
    assert model.encoder(clips.flatten(0, 1)).shape == (10, 6, 5)
    out = model(clips)
    assert out.lengths.shape == (2, 5, 6)
    assert out.capsules.shape == (2, 5, 6, 5)
    assert out.reconstruction.shape == (2, 5, 1, 48, 48)
    assert out.logits.shape == (2, 6)
    torch.testing.assert_close(out.lengths, out.capsules.norm(dim=-1))
    assert ((out.reconstruction > 0) & (out.reconstruction < 1)).all()  # sigmoid output


def test_frames_are_encoded_independently_of_their_clip() -> None:
    model = _model().eval()
    clips = torch.rand(2, 3, 1, 48, 48)
    alone = model(clips[1:, 2:])
    torch.testing.assert_close(model(clips).capsules[1, 2], alone.capsules[0, 0])


@pytest.mark.parametrize("training", [False, True])
def test_only_the_longest_capsule_reaches_the_decoder(training: bool) -> None:
    model = _model().train(training)
    seen = {}
    model.decoder.register_forward_hook(lambda _m, args, _o: seen.setdefault("input", args[0]))
    clips = torch.rand(3, 4, 1, 48, 48)
    out = model(clips, torch.tensor([0, 1, 2]))  # "predicted": the labels must not matter
    capsules = out.capsules.flatten(0, 1)
    longest = capsules.norm(dim=-1).argmax(dim=1)
    decoded = seen["input"]
    rows = torch.arange(len(capsules))
    torch.testing.assert_close(decoded[rows, longest], capsules[rows, longest])
    decoded[rows, longest] = 0
    assert not decoded.any()


def test_decoder_gradient_flows_into_the_longest_capsule_only() -> None:
    model = _model()
    captured = {}

    def keep(_module, _args, output):
        output.retain_grad()
        captured["capsules"] = output

    model.encoder.register_forward_hook(keep)
    out = model(torch.rand(2, 3, 1, 48, 48))
    out.reconstruction.sum().backward()
    capsules = captured["capsules"]
    grad_norm = capsules.grad.norm(dim=-1)
    longest = capsules.norm(dim=-1).argmax(dim=1)
    others = torch.ones_like(grad_norm, dtype=torch.bool)
    others[torch.arange(len(longest)), longest] = False
    assert (grad_norm[~others] > 0).all() and (grad_norm[others] == 0).all()


def test_target_mask_feeds_the_true_class_in_training_only() -> None:
    model = _model(mask="target")
    seen = []
    model.decoder.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    labels = torch.tensor([4, 1])
    model(torch.rand(2, 3, 1, 48, 48), labels)
    kept = seen[-1].norm(dim=-1) > 0
    assert kept.sum(dim=1).eq(1).all()
    assert kept.float().argmax(dim=1).tolist() == [4, 4, 4, 1, 1, 1]


def test_lstm_follows_the_lstm_equations_on_softmaxed_lengths() -> None:
    torch.manual_seed(1)
    head = ClipLSTM(n_classes=4, hidden_size=3)
    lengths = torch.rand(2, 5, 4)
    x = lengths.softmax(dim=-1)
    lstm = head.lstm
    h = torch.zeros(2, 3)
    c = torch.zeros(2, 3)
    for t in range(5):  # PyTorch's gate order: input, forget, cell, output
        gates = x[:, t] @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + h @ lstm.weight_hh_l0.T
        i, f, g, o = (gates + lstm.bias_hh_l0).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    torch.testing.assert_close(head(lengths), head.head(h))
    # softmax makes the LSTM blind to a shift of all lengths of a frame
    shifted = lengths + torch.tensor([0.0, 0.3, -0.2, 0.1, 0.0]).view(1, 5, 1)
    torch.testing.assert_close(head(shifted), head(lengths))


def _outputs_and_batch() -> tuple[CapsuleLSTMOutput, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    batch, frames, classes = 2, 3, 4
    out = CapsuleLSTMOutput(
        lengths=torch.rand(batch, frames, classes, generator=generator),
        capsules=torch.zeros(batch, frames, classes, 2),
        reconstruction=torch.rand(batch, frames, 1, 4, 4, generator=generator),
        logits=torch.randn(batch, classes, generator=generator),
    )
    images = torch.rand(batch, frames, 1, 4, 4, generator=generator)
    return out, {"image": images, "label": torch.tensor([2, 0])}


def _margin(lengths: torch.Tensor, label: int) -> float:
    """Eq. 3.2 summed over classes, written out."""
    total = 0.0
    for c, v in enumerate(lengths.tolist()):
        if c == label:
            total += max(0.0, 0.9 - v) ** 2
        else:
            total += 0.5 * max(0.0, v - 0.1) ** 2
    return total


def test_each_loss_term_by_hand() -> None:
    out, batch = _outputs_and_batch()
    labels = batch["label"].tolist()
    margin = np.mean([_margin(out.lengths[b, t], labels[b]) for b in range(2) for t in range(3)])
    recon = 0.0005 * np.mean(
        [((out.reconstruction[b, t] - batch["image"][b, t]) ** 2).sum().item()
         for b in range(2) for t in range(3)]
    )  # fmt: skip
    probs = out.logits.softmax(dim=-1)
    cross_entropy = 0.5 * np.mean([-math.log(probs[b, labels[b]].item()) for b in range(2)])
    lstm_margin = 0.5 * np.mean([_margin(probs[b], labels[b]) for b in range(2)])

    full = CapsuleLSTMTask("full").terms(out, batch)
    assert full.keys() == {"margin", "reconstruction", "lstm"}
    assert full["margin"].item() == pytest.approx(margin, rel=1e-5)
    assert full["reconstruction"].item() == pytest.approx(recon, rel=1e-5)
    assert full["lstm"].item() == pytest.approx(cross_entropy, rel=1e-5)
    per_pixel = CapsuleLSTMTask("full", recon_reduction="mean").terms(out, batch)
    assert per_pixel["reconstruction"].item() == pytest.approx(recon / 16, rel=1e-5)
    margin_lstm = CapsuleLSTMTask("lstm_margin").terms(out, batch)
    assert margin_lstm["lstm"].item() == pytest.approx(lstm_margin, rel=1e-5)


@pytest.mark.parametrize(
    ("variant", "reference", "changed"),
    [
        ("no_recon", "full", "reconstruction"),
        ("lstm_margin", "full", "lstm"),
        ("lstm_margin_no_recon", "lstm_margin", "reconstruction"),
        ("lstm_margin_no_recon", "no_recon", "lstm"),
    ],
)
def test_each_loss_switch_changes_exactly_its_term(
    variant: str, reference: str, changed: str
) -> None:
    out, batch = _outputs_and_batch()
    terms = CapsuleLSTMTask(variant).terms(out, batch)
    base = CapsuleLSTMTask(reference).terms(out, batch)
    for name in {"margin", "reconstruction", "lstm"} - {changed}:
        assert (name in terms) == (name in base)
        if name in terms:
            assert terms[name].item() == base[name].item()
    if changed == "reconstruction":
        assert ("reconstruction" in terms) != ("reconstruction" in base)
    else:
        assert terms["lstm"].item() != pytest.approx(base["lstm"].item())


def test_the_total_is_the_sum_of_the_terms_and_only_training_batches_are_logged() -> None:
    out, batch = _outputs_and_batch()
    task = CapsuleLSTMTask("full")
    with torch.no_grad():
        total = task.loss(out, batch)
    assert task.log.pop() == {}
    assert total.item() == pytest.approx(sum(t.item() for t in task.terms(out, batch).values()))
    task.loss(out, batch)
    logged = task.log.pop()
    assert logged["total"] == pytest.approx(total.item())
    assert set(logged) == {"margin", "reconstruction", "lstm", "total"}


def test_loss_log_weights_batches_by_their_size() -> None:
    log = LossLog()
    log.add({"a": torch.tensor(1.0)}, 1)
    log.add({"a": torch.tensor(4.0)}, 3)
    assert log.pop() == {"a": pytest.approx(13 / 4)}
    assert log.pop() == {}


def test_variants_are_the_rows_of_table_4_1() -> None:
    table = paper_tables("capsule_lstm")
    assert set(VARIANTS) == set(table.loc[table["experiment"] == "loss", "variant"])
    assert VARIANTS["full"].reconstruction and VARIANTS["full"].lstm == "cross_entropy"
    assert not VARIANTS["lstm_margin_no_recon"].reconstruction
    assert VARIANTS["lstm_margin_no_recon"].lstm == "margin"


def test_bad_settings_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        CapsuleLSTMTask("margin_only")
    with pytest.raises(ValueError, match="mask"):
        CapsuleLSTMConfig(mask="longest")
    with pytest.raises(ValueError, match=r"clips must be \(B, T, 1, 48, 48\)"):
        _model()(torch.rand(2, 1, 48, 48))


def test_clip_augmentation_applies_one_transform_to_all_frames() -> None:
    base = torch.rand(1, 1, 1, 24, 24).expand(4, 1, 1, 24, 24)
    scale = torch.tensor([1.0, 0.5, 0.25]).view(1, 3, 1, 1, 1)
    clips = base * scale  # frame t = base x scale_t; a warp is linear in the pixel values
    augment = ClipAugmentation(Augmentation(flip=0.5, rotation=15.0))
    out = augment({"image": clips, "label": torch.zeros(4)}, torch.Generator().manual_seed(0))
    images = out["image"]
    assert images.shape == clips.shape
    for t in (1, 2):  # the same transform for every frame of a clip
        torch.testing.assert_close(images[:, t], images[:, 0] * scale[0, t])
    # but not the same for every clip: the four identical clips come out different
    assert not torch.allclose(images[0], images[1]) or not torch.allclose(images[0], images[2])
    assert not torch.allclose(images[:, 0], clips[:, 0])


def _sequences() -> FaceData:
    """Three 5-frame sequences of two subjects, rows shuffled."""
    rng = np.random.default_rng(0)
    order = rng.permutation(15)
    frame = np.tile(np.arange(5), 3)[order]
    sequence = np.repeat(["a", "b", "c"], 5)[order]
    return FaceData(
        images=(np.arange(15)[order, None, None] * np.ones((1, 4, 4))).astype(np.uint8),
        labels=np.repeat([0, 2, 1], 5)[order],
        classes=["anger", "happiness", "surprise"],
        subjects=np.repeat(["s1", "s1", "s2"], 5)[order],
        split=np.full(15, ""),
        sequence=sequence,
        frame=frame,
    )


def test_clip_rows_takes_the_middle_frames_in_order() -> None:
    data = _sequences()
    rows = clip_rows(data, 3)
    assert rows.shape == (3, 3)
    assert [data.sequence[r[0]] for r in rows] == list(dict.fromkeys(data.sequence))
    for clip in rows:
        assert data.frame[clip].tolist() == [1, 2, 3]
        assert len(set(data.sequence[clip])) == 1
    batch = clip_tensors(data, rows)
    assert batch["image"].shape == (3, 3, 1, 4, 4) and batch["image"].dtype == torch.uint8
    assert batch["label"].tolist() == [data.labels[r[0]] for r in rows]
    # image i of the unshuffled data is filled with i: sequence a's frame 1 is 1, b's is 6
    first = {data.sequence[r[0]]: batch["image"][k, 0, 0, 0, 0].item() for k, r in enumerate(rows)}
    assert first == {"a": 1, "b": 6, "c": 11}


def test_clip_rows_refuses_short_mixed_or_missing_sequences() -> None:
    data = _sequences()
    with pytest.raises(ValueError, match=r"fewer than frames=6.*short='repeat_first'"):
        clip_rows(data, 6)
    mixed = FaceData(
        **{**data.__dict__, "labels": np.r_[data.labels[:-1], (data.labels[-1] + 1) % 3]}
    )
    with pytest.raises(ValueError, match="different labels"):
        clip_rows(mixed, 3)
    flat = FaceData(**{**data.__dict__, "sequence": None, "frame": None})
    with pytest.raises(ValueError, match="no sequence/frame"):
        clip_rows(flat, 3)


def test_clip_rows_pads_short_sequences_with_their_first_frame_and_counts_them() -> None:
    data = _sequences()  # three sequences of frames 0-4; sequence b keeps frames 3 and 4
    short = data.subset(~((data.sequence == "b") & (data.frame <= 2)))
    with pytest.warns(UserWarning, match="1 of 3 sequences are shorter than 4 frames"):
        rows = clip_rows(short, 4, short="repeat_first")
    frames = {short.sequence[clip[0]]: short.frame[clip].tolist() for clip in rows}
    assert frames == {"a": [0, 1, 2, 3], "b": [3, 3, 3, 4], "c": [0, 1, 2, 3]}
    with pytest.raises(ValueError, match="short must be one of"):
        clip_rows(short, 4, short="pad")


def _write_ckplus_sequence(root: Path, subject: str, frames: int, emotion: int) -> None:
    """A CK+ sequence of ``frames`` 60 x 80 frames (pixel = frame number), its 68 landmarks
    spread over x 30..50, y 20..40, and its Emotion file."""
    trees = ("cohn-kanade-images", "Landmarks", "Emotion")
    images, landmarks, labels = (root / tree / subject / "001" for tree in trees)
    for folder in (images, landmarks, labels):
        folder.mkdir(parents=True)
    points = np.c_[np.linspace(30, 50, 68), np.linspace(20, 40, 68)]
    for frame in range(1, frames + 1):
        stem = f"{subject}_001_{frame:08d}"
        Image.fromarray(np.full((60, 80), frame, np.uint8)).save(images / f"{stem}.png")
        np.savetxt(landmarks / f"{stem}_landmarks.txt", points, fmt="%16.7e")
    (labels / f"{subject}_001_{frames:08d}_emotion.txt").write_text(f"{emotion:16.7e}\n")


def test_full_ckplus_clips_are_face_crops_and_short_sequences_are_padded(tmp_path) -> None:
    _write_ckplus_sequence(tmp_path, "S005", frames=6, emotion=5)  # happy
    _write_ckplus_sequence(tmp_path, "S010", frames=3, emotion=7)  # surprise
    data = load_sequences("ckplus", tmp_path, frames=4)
    assert data.image_size == (48, 48) and data.info["options"]["crop"]
    assert data.frame.tolist() == [3, 4, 5, 6, 1, 2, 3]  # the last 4 frames, or all 3
    with pytest.raises(ValueError, match="S010_001 has 3 frames"):
        clip_rows(data, 4)
    with pytest.warns(UserWarning, match="1 of 2 sequences are shorter than 4 frames"):
        rows = clip_rows(data, 4, short="repeat_first")
    assert [data.frame[clip].tolist() for clip in rows] == [[3, 4, 5, 6], [1, 1, 2, 3]]
    assert [data.classes[data.labels[clip[0]]] for clip in rows] == ["happiness", "surprise"]


def test_select_classes_drops_and_relabels() -> None:
    data = _sequences()
    kept = select_classes(data, ["surprise", "anger"])
    assert kept.classes == ["surprise", "anger"]
    assert len(kept) == 10
    assert set(kept.sequence) == {"a", "b"}  # a is anger, b surprise, c happiness
    assert (kept.labels[kept.sequence == "a"] == 1).all()
    assert (kept.labels[kept.sequence == "b"] == 0).all()
    with pytest.raises(ValueError, match="no class"):
        select_classes(data, ["fear"])


def test_train_fold_trains_selects_on_validation_and_records() -> None:
    data = load_sequences("synthetic", frames=2, n_subjects=4, samples_per_subject=6)
    assert data.classes == ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    rows = clip_rows(data, 2)
    assert rows.shape == (24, 2)
    train, test = subject_kfold(data.subset(rows[:, -1]), 2)[0]
    preset = Preset(SMALL, epochs=2, batch_size=8, lr=1e-3)
    config = preset.config(seed=0, progress=False, device="cpu")
    assert (config.epochs, config.batch_size, config.optimizer) == (2, 8, "adam")
    run = train_fold(data, rows, train, test, preset, config, "no_recon", fold=1, val_fraction=0.3)
    assert run.sizes == {"train": 6, "val": 6, "test": 12}  # 2 + 2 subjects of 6 clips
    assert list(run.curves["epoch"]) == [1, 2]
    assert {"margin", "lstm", "total", "val_accuracy"} <= set(run.curves.columns)
    assert "reconstruction" not in run.curves.columns
    np.testing.assert_allclose(run.curves["total"], run.curves["train_loss"], rtol=1e-5)
    assert run.confusion().sum() == len(test)
    record = fold_record(run, "loss", data, "test protocol", seed=0, device="cpu")
    assert (record.variant, record.fold, record.selection, record.epochs) == (
        "no_recon",
        1,
        "val",
        2,
    )
    assert record.dataset == "synthetic"
    assert record.data_options["samples_per_subject"] == data.provenance["samples_per_subject"]
    assert record.metrics["accuracy"] == pytest.approx(np.mean(run.predicted == run.test.targets))


def test_loss_gradients_reach_the_encoder_through_the_lstm() -> None:
    model = _model()
    clips = torch.rand(2, 3, 1, 48, 48)
    out = model(clips)
    loss = F.cross_entropy(out.logits, torch.tensor([0, 1]))
    loss.backward()
    assert model.encoder.conv.weight.grad.abs().sum() > 0
