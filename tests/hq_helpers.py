"""HQ-SAM configs and pairs of segany's HQ model with the official one (``segment_anything_hq``,
the test oracle, built by ``conftest.build_official``) on identical seeded random weights."""

from __future__ import annotations

from dataclasses import replace

from segment_anything_hq import modeling as hq_modeling

from conftest import build_official
from segany import build_model
from segany.config import SamConfig
from segany.modeling.sam import Sam
from segany.testing import random_state_dict


def hq_config(config: SamConfig) -> SamConfig:
    return replace(config, name=f"{config.name}_hq", decoder=replace(config.decoder, hq=True))


def make_hq_pair(config: SamConfig, seed: int = 0) -> tuple[Sam, hq_modeling.Sam]:
    """segany's HQ model (with its speed routes) and the official one, same seeded weights
    (loaded strictly into both: the key layouts are the same)."""
    theirs = build_official(config, hq_modeling)
    ours = build_model(config)
    state = random_state_dict(theirs.state_dict(), seed)
    theirs.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)
    return ours, theirs
