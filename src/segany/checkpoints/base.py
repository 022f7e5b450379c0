"""What every checkpoint family's module shares: the state-dict type and the error."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

StateDict = dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A weights file that cannot be used, with the reason and what was expected."""


def count_indices(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    """How many distinct values ``pattern``'s first group takes over the keys (layers, blocks)."""
    regex = re.compile(pattern)
    return len({m.group(1) for k in state if (m := regex.match(k))})
