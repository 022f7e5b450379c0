"""Training and fine-tuning with the paper's recipe (losses, interactive simulation, trainer)."""

from .simulation import SimulationConfig
from .trainer import TrainConfig, Trainer, TrainResult

__all__ = ["SimulationConfig", "TrainConfig", "TrainResult", "Trainer"]
