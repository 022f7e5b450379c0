"""Run by tests/test_train.py under torchrun: train a few steps with 2 gloo processes, then
save this rank's weights for comparison."""

import sys
from pathlib import Path

import torch

from micro import MICRO
from segany.train.simulation import SimulationConfig
from segany.train.trainer import TrainConfig, Trainer

output = Path(sys.argv[1])
config = TrainConfig(
    data=["generated:0:1000"],
    output=str(output),
    model=MICRO.name,
    steps=4,
    batch_size=2,
    max_masks=3,
    warmup_steps=1,
    simulation=SimulationConfig(passes=2, no_point_passes=1),
    checkpoint_every=100,
    log_every=1,
)
trainer = Trainer(config, progress=False)
trainer.train()
torch.save(trainer.model.state_dict(), output / f"rank{trainer.rank}.pt")
print(f"rank {trainer.rank} of {trainer.world} done, losses", [h["loss"] for h in trainer.history])
