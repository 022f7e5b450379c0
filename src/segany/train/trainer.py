"""The training loop: data order, optimiser, schedule, checkpoints with exact resume, logging,
and data parallelism over ``torch.distributed`` (launch with ``torchrun``)."""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm import tqdm

from ..checkpoints import load, save_checkpoint
from ..config import get_config
from ..data.datasets import MaskSample, open_dataset
from ..fast.model import build_model
from ..formats.files import atomic_write_bytes
from ..modeling.sam import Sam
from .batching import Batch, TrainingExample, collate, prepare_example
from .optim import Schedule, parameter_groups
from .simulation import InteractiveSimulator, SimulationConfig, StepOutput

PARTS = ("image_encoder", "prompt_encoder", "mask_decoder")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in each checkpoint)."""

    data: list[str]
    output: str
    model: str = "tiny"  # architecture: a config name
    init: str = "scratch"  # "scratch", a bundled model name, or a weights file
    steps: int = 1000
    batch_size: int = 4  # images per step and process
    max_masks: int = 16  # masks sampled per image
    lr: float = 8e-4
    weight_decay: float = 0.1
    layer_decay: float = 1.0  # 0.8 when fine-tuning a pretrained ViT
    drop_path: float = 0.0
    warmup_steps: int = 250
    milestones: list[float] = field(default_factory=lambda: [0.67, 0.96])  # fractions of steps
    decay_factor: float = 0.1
    grad_clip: float = 1.0
    accumulate: int = 1
    freeze: list[str] = field(default_factory=list)  # parts of PARTS to keep fixed
    bf16: bool = False
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    images: str | None = None  # image folder for COCO annotation files
    eval_data: str | None = None  # dataset spec scored every eval_every steps (learning curve)
    eval_every: int = 0
    eval_clicks: list[int] = field(default_factory=lambda: [1, 5])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if isinstance(values.get("simulation"), dict):
            values["simulation"] = SimulationConfig(**values["simulation"])
        return cls(**values)


class _Examples(Dataset):
    """Deterministic example ``i`` of the run: sample ``order[i % n]`` of epoch ``i // n``."""

    def __init__(self, samples: Sequence[MaskSample], config: TrainConfig, img_size: int) -> None:
        self.samples, self.config, self.img_size = samples, config, img_size

    def __len__(self) -> int:  # effectively unbounded; indexed by the sampler
        return 2**62

    def _order(self, epoch: int) -> np.ndarray:
        """The shuffled sample order of ``epoch`` (cached: one permutation per epoch)."""
        if getattr(self, "_epoch", None) != epoch:
            self._epoch = epoch
            rng = np.random.default_rng((self.config.seed, epoch))
            self._permutation = rng.permutation(len(self.samples))
        return self._permutation

    def __getitem__(self, index: int) -> TrainingExample | None:
        epoch, position = divmod(index, len(self.samples))
        rng = np.random.default_rng((self.config.seed, index, 1))
        sample = self.samples[int(self._order(epoch)[position])]
        return prepare_example(sample, self.img_size, self.config.max_masks, rng)


class _Indices(torch.utils.data.Sampler):
    """Batches of example indices for ``rank``, starting at ``step`` (exact resume)."""

    def __init__(self, config: TrainConfig, start_step: int, rank: int, world: int) -> None:
        self.config, self.start, self.rank, self.world = config, start_step, rank, world

    def __iter__(self):
        b, acc = self.config.batch_size, self.config.accumulate
        for step in range(self.start, self.config.steps):
            for micro in range(acc):
                first = ((step * acc + micro) * self.world + self.rank) * b
                yield list(range(first, first + b))

    def __len__(self) -> int:
        return (self.config.steps - self.start) * self.config.accumulate


def initialise_encoder(model: Sam) -> None:
    """ViT initialisation for training from scratch: truncated normal (std 0.02) linear weights
    and positions, zero biases."""
    for module in model.image_encoder.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    if model.image_encoder.pos_embed is not None:
        nn.init.trunc_normal_(model.image_encoder.pos_embed, std=0.02)


def build_training_model(config: TrainConfig) -> Sam:
    """The model a run starts from: fresh, a bundled model, or a weights file."""
    if config.init == "scratch":
        model = build_model(get_config(config.model), drop_path_rate=config.drop_path)
        initialise_encoder(model)
        return model
    source = load(config.init)
    if config.drop_path > 0:  # rebuild with stochastic depth, keep the weights
        fresh = build_model(source.config, drop_path_rate=config.drop_path)  # type: ignore[arg-type]
        fresh.load_state_dict(source.state_dict())
        source = fresh
    return source


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the gloo/nccl process group under ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


@dataclass
class TrainResult:
    model: Sam
    steps_done: int
    history: list[dict[str, float]]


class Trainer:
    """Runs a :class:`TrainConfig`; ``train()`` resumes from ``output/last.pt`` if present."""

    def __init__(
        self,
        config: TrainConfig,
        progress: bool = True,
        on_log: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        self.config = config
        self.progress = progress
        self.on_log = on_log
        self.rank, self.world = _distributed()
        self.device = torch.device(config.device)
        self.output = Path(config.output)
        torch.manual_seed(config.seed)  # a from-scratch initialisation is part of the recipe
        self.model = build_training_model(config).to(self.device).train()
        for part in config.freeze:
            if part not in PARTS:
                raise ValueError(f"cannot freeze {part!r}: expected one of {', '.join(PARTS)}")
            getattr(self.model, part).requires_grad_(False)
        depth = len(self.model.image_encoder.blocks)
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, config.weight_decay, config.layer_decay, depth),
            lr=config.lr,
            betas=(0.9, 0.999),
        )
        self.schedule = Schedule(
            config.lr,
            config.warmup_steps,
            tuple(int(f * config.steps) for f in config.milestones),
            config.decay_factor,
        )
        simulator = InteractiveSimulator(self.model, config.simulation)
        self.step_module: nn.Module = (
            DistributedDataParallel(simulator, find_unused_parameters=True)
            if self.world > 1
            else simulator
        )
        self.step = 0
        self.history: list[dict[str, float]] = []

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.output / "last.pt"

    def save(self) -> None:
        """Write ``last.pt`` (model, optimiser, step, config) atomically; rank 0 only."""
        if self.rank != 0:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "config": _jsonable(asdict(self.config)),
            "model_config": self.model.config.to_json() if self.model.config else None,
            "history": self.history,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.checkpoint_path, buffer.getvalue())

    def resume(self) -> bool:
        """Load ``last.pt`` if it exists; returns whether it did."""
        if not self.checkpoint_path.is_file():
            return False
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        return True

    # -- the loop ----------------------------------------------------------------------------
    def _loader(self, samples: Sequence[MaskSample]) -> DataLoader:
        examples = _Examples(samples, self.config, self.model.img_size)
        sampler = _Indices(self.config, self.step, self.rank, self.world)
        return DataLoader(
            examples, batch_sampler=sampler, num_workers=self.config.workers, collate_fn=collate
        )

    def evaluate(self) -> dict[str, float]:
        """Score the model on ``eval_data`` with the point protocol (rank 0; others get {})."""
        if self.rank != 0 or not self.config.eval_data:
            return {}
        from ..evaluate.protocol import evaluate
        from ..inference.predictor import Predictor

        self.model.eval()
        try:
            data = open_dataset(self.config.eval_data, self.config.images)
            report = evaluate(
                Predictor(self.model), {"eval": data}, self.config.eval_clicks, progress=False
            )
        finally:
            self.model.train()
        out = {f"eval_miou_{k}": report.miou(k) for k in report.clicks}
        out["eval_oracle_1"] = report.oracle_miou()
        return out

    def _set_lr(self) -> float:
        lr = self.schedule.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        return lr

    def _micro_step(self, batch: Batch, micro: int) -> StepOutput:
        """Forward and backward of one micro-batch; its seed fixes every random choice."""
        cfg = self.config
        seed = (
            (cfg.seed * 1_000_003 + self.step) * cfg.accumulate + micro
        ) * self.world + self.rank
        torch.manual_seed(seed)  # drop path and dropout
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        with autocast:
            out = self.step_module(batch.images, batch.masks, batch.image_index, batch.boxes, seed)
        (out.loss / cfg.accumulate).backward()
        return out

    def train(self, stop_at: int | None = None) -> TrainResult:
        """Train to ``config.steps`` (or stop early at ``stop_at``, checkpointing there, as an
        interrupted run would); resumes from ``last.pt`` when present."""
        cfg = self.config
        last = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        torch.set_flush_denormal(True)
        self.resume()
        samples = _concat([open_dataset(spec, cfg.images) for spec in cfg.data])
        loader = iter(self._loader(samples))
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not self.progress or self.rank != 0,
            desc="train",
            dynamic_ncols=True,
        )
        # training seconds carry over a resume, so a learning curve is against total time
        started = time.perf_counter() - (self.history[-1]["seconds"] if self.history else 0.0)
        eval_seconds = 0.0
        while self.step < last:
            lr = self._set_lr()
            outs = []
            for micro in range(cfg.accumulate):
                batch = next(loader).to(self.device)
                sync = micro == cfg.accumulate - 1 or self.world == 1
                context = nullcontext() if sync else self.step_module.no_sync()  # type: ignore[operator]
                with context:
                    outs.append(self._micro_step(batch, micro))
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            record = _summarise(outs, self.step, lr, time.perf_counter() - started - eval_seconds)
            if cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                tick = time.perf_counter()
                record.update(self.evaluate())
                eval_seconds += time.perf_counter() - tick
            if self.step % cfg.log_every == 0 or self.step == cfg.steps or "eval_miou_1" in record:
                self.history.append(record)
                if self.on_log is not None and self.rank == 0:
                    self.on_log(record)
            bar.set_postfix(
                loss=f"{record['loss']:.3f}",
                focal=f"{record['focal']:.4f}",
                dice=f"{record['dice']:.3f}",
                iou=f"{record['iou_mse']:.4f}",
                mIoU1=f"{record['first_iou']:.2f}",
                lr=f"{lr:.1e}",
            )
            bar.update(1)
            if self.step % cfg.checkpoint_every == 0 or self.step == last:
                self.save()
        bar.close()
        if self.rank == 0 and self.step == cfg.steps:
            save_checkpoint(self.model, self.output / "model.safetensors")
        return TrainResult(self.model, self.step, self.history)


def _concat(datasets: list[Sequence[MaskSample]]) -> Sequence[MaskSample]:
    return datasets[0] if len(datasets) == 1 else ConcatDataset(datasets)  # type: ignore[arg-type,return-value]


def _summarise(outs: list[StepOutput], step: int, lr: float, seconds: float) -> dict[str, float]:
    keys = ("focal", "dice", "iou_mse", "first_iou", "last_iou")
    record = {k: float(np.mean([getattr(o, k) for o in outs])) for k in keys}
    record["loss"] = float(np.mean([o.loss.item() for o in outs]))
    record.update(step=float(step), lr=lr, seconds=seconds)
    if not math.isfinite(record["loss"]):
        raise FloatingPointError(f"loss became {record['loss']} at step {step}; lower the lr")
    return record


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))
