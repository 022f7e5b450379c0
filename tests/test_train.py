"""Training: the simulation, losses, a fine-tune that learns, exact resume, DDP on gloo."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from micro import MICRO
from segany import load, save_checkpoint
from segany.modeling import build_model
from segany.testing import random_state_dict
from segany.train.losses import dice_loss, focal_loss, mask_iou
from segany.train.optim import Schedule, encoder_layer_id, parameter_groups
from segany.train.simulation import SimulationConfig, noisy_boxes, point_schedule, sample_points
from segany.train.trainer import TrainConfig, Trainer, build_training_model

TESTS = Path(__file__).parent


def micro_config(tmp_path: Path, **changes) -> TrainConfig:
    values = dict(
        data=["generated:0:100000"],
        output=str(tmp_path / "run"),
        model=MICRO.name,
        steps=6,
        batch_size=2,
        max_masks=4,
        lr=1e-3,
        warmup_steps=2,
        simulation=SimulationConfig(passes=3, no_point_passes=1),
        checkpoint_every=100,
        log_every=1,
    )
    values.update(changes)
    return TrainConfig(**values)


def test_point_schedule_has_the_paper_shape():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        adds = point_schedule(11, 2, g)
        assert len(adds) == 10 and adds[-1] is False and adds.count(False) == 2
    assert point_schedule(1, 2, g) == []


def test_sampled_points_fall_inside_their_regions():
    g = torch.Generator().manual_seed(1)
    region = torch.zeros(3, 20, 30, dtype=torch.bool)
    region[0, 5:8, 10:12] = True
    region[1, 19, 29] = True
    xy, non_empty = sample_points(region, g)
    assert non_empty.tolist() == [True, True, False]
    for i in range(2):
        x, y = xy[i].long().tolist()
        assert region[i, y, x]


def test_sampled_points_are_uniform_over_their_region():
    g = torch.Generator().manual_seed(3)
    region = torch.zeros(1, 8, 8, dtype=torch.bool)
    pixels = [(1, 2), (5, 0), (7, 7), (3, 3)]  # (x, y)
    for x, y in pixels:
        region[0, y, x] = True
    draws = 4000
    hits = torch.zeros(8, 8)
    for _ in range(draws):
        x, y = sample_points(region, g)[0][0].long().tolist()
        hits[y, x] += 1
    expected = draws / len(pixels)
    assert hits.sum() == sum(hits[y, x] for x, y in pixels)  # never outside the region
    for x, y in pixels:
        assert abs(hits[y, x] - expected) < 0.1 * expected


def test_noisy_boxes_stay_near_and_ordered():
    g = torch.Generator().manual_seed(2)
    boxes = torch.tensor([[10.0, 10.0, 50.0, 30.0]]).repeat(200, 1)
    jittered = noisy_boxes(boxes, SimulationConfig(), img_size=256, generator=g)
    cap = 20 * 256 / 1024
    assert (jittered - boxes).abs().max() <= cap + 1e-6
    assert (jittered[:, 2] >= jittered[:, 0]).all() and (jittered[:, 3] >= jittered[:, 1]).all()
    assert (jittered - boxes).abs().mean() > 0.5


def test_losses_behave():
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    good, bad = (target * 2 - 1) * 10, -(target * 2 - 1) * 10
    assert focal_loss(good, target) < focal_loss(bad, target)
    assert dice_loss(good, target) < 0.05 < 0.95 < dice_loss(bad, target)
    assert mask_iou(good > 0, target).item() == 1.0 and mask_iou(bad > 0, target).item() == 0.0


def test_layer_decay_and_weight_decay_groups():
    model = build_model(MICRO)
    depth = len(model.image_encoder.blocks)
    assert encoder_layer_id("image_encoder.patch_embed.proj.weight", depth) == 0
    assert encoder_layer_id("image_encoder.blocks.1.mlp.lin1.weight", depth) == 2
    assert encoder_layer_id("mask_decoder.iou_token.weight", depth) == depth + 1
    groups = parameter_groups(model, weight_decay=0.1, layer_decay=0.5, depth=depth)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    scales = {g["lr_scale"] for g in groups}
    assert max(scales) == 1.0 and min(scales) == 0.5 ** (depth + 1)
    norms = [
        g
        for g in groups
        if any(p is model.image_encoder.blocks[0].norm1.weight for p in g["params"])
    ]
    assert norms[0]["weight_decay"] == 0.0
    schedule = Schedule(1.0, warmup_steps=10, milestones=(50, 80))
    assert schedule.lr_at(0) == pytest.approx(0.1) and schedule.lr_at(20) == 1.0
    assert schedule.lr_at(60) == pytest.approx(0.1) and schedule.lr_at(90) == pytest.approx(0.01)


def test_fine_tune_from_a_random_model_lowers_the_loss(tmp_path):
    model = build_model(MICRO)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=3))
    start = tmp_path / "random.safetensors"
    save_checkpoint(model, start)
    config = micro_config(
        tmp_path, init=str(start), steps=200, lr=3e-4, warmup_steps=10, milestones=[2.0]
    )
    result = Trainer(config, progress=False).train()
    losses = [h["loss"] for h in result.history]
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    assert last < 0.75 * first, (first, last)
    trained = load(tmp_path / "run" / "model.safetensors")
    assert trained.config.name == MICRO.name


def test_resume_gives_the_same_next_step_loss(tmp_path):
    straight = Trainer(micro_config(tmp_path / "a"), progress=False).train()
    interrupted = Trainer(micro_config(tmp_path / "b"), progress=False)
    interrupted.train(stop_at=3)
    assert (tmp_path / "b" / "run" / "last.pt").is_file()
    assert not (tmp_path / "b" / "run" / "model.safetensors").exists()  # not finished
    resumed = Trainer(micro_config(tmp_path / "b"), progress=False)
    assert resumed.resume() and resumed.step == 3
    resumed_result = resumed.train()
    assert [h["step"] for h in resumed_result.history] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(straight.history, resumed_result.history):
        assert a["loss"] == b["loss"], (a, b)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed_result.model.state_dict()[key]), key


def test_frozen_encoder_stays_fixed(tmp_path):
    trainer = Trainer(micro_config(tmp_path, freeze=["image_encoder"], steps=3), progress=False)
    before = {k: v.clone() for k, v in trainer.model.image_encoder.state_dict().items()}
    decoder_before = trainer.model.mask_decoder.iou_token.weight.clone()
    trainer.train()
    for key, value in trainer.model.image_encoder.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(trainer.model.mask_decoder.iou_token.weight, decoder_before)


def test_bf16_and_accumulation_run(tmp_path):
    result = Trainer(
        micro_config(tmp_path, bf16=True, accumulate=2, steps=2), progress=False
    ).train()
    assert len(result.history) == 2 and all(np.isfinite(h["loss"]) for h in result.history)


def test_bad_freeze_name(tmp_path):
    with pytest.raises(ValueError, match="cannot freeze"):
        Trainer(micro_config(tmp_path, freeze=["decoder"]), progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_with_two_gloo_processes_ends_with_identical_weights(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]), OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(TESTS / "ddp_worker.py"),
        str(tmp_path),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    torch.manual_seed(0)  # the trainer's own seeded initialisation, before any step
    initial = build_training_model(micro_config(tmp_path, steps=4)).state_dict()
    changed = 0
    for key, value in rank0.items():
        assert torch.equal(value, rank1[key]), key
        changed += not torch.equal(value, initial[key])
    assert changed > 10  # it trained
    assert "rank 0 of 2 done" in done.stdout and "rank 1 of 2 done" in done.stdout
