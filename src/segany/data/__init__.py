"""Training and evaluation data: the procedural scene generator and dataset readers."""

from .datasets import CocoInstances, GeneratedScenes, MaskSample, Sa1bFolder, open_dataset
from .scenes import Scene, SceneConfig, generate_scene
from .shards import write_generated_shards

__all__ = [
    "CocoInstances",
    "GeneratedScenes",
    "MaskSample",
    "Sa1bFolder",
    "Scene",
    "SceneConfig",
    "generate_scene",
    "open_dataset",
    "write_generated_shards",
]
