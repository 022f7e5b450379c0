"""bfloat16 linear layers with oneDNN-packed weights for CPU inference (the ``bf16`` precision).

A plain ``nn.Linear`` in bfloat16 makes oneDNN reorder its weight into the blocked layout its
kernels read, on every call; packing once saves that, and the activation after the first layer
of an MLP (GELU) can run inside the same kernel instead of as one more pass over a
tokens x 4·width tensor.

The packed weight is a cache (an opaque oneDNN tensor, rebuilt when the weight changes and left
out of pickles and copies); the module keeps ``nn.Linear``'s parameters and state-dict keys.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from .workspace import tensors_version

FUSABLE = {"none": "none", "tanh": "tanh"}  # nn.GELU(approximate=...) -> oneDNN's algorithm


@functools.cache
def packing_available() -> bool:
    """Whether this torch build packs and runs bfloat16 linear layers with oneDNN."""
    try:
        weight = torch.ones(8, 8, dtype=torch.bfloat16)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 4)
        out = torch.ops.mkldnn._linear_pointwise(
            torch.ones(4, 8, dtype=torch.bfloat16), packed, None, "gelu", [], "none"
        )
    except (AttributeError, RuntimeError):
        return False
    return bool(torch.allclose(out.float(), torch.full((4, 8), 8.0)))


class PackedLinear(nn.Linear):
    """``nn.Linear`` (bfloat16, CPU, inference) running on a packed weight, optionally
    followed by a fused GELU; ``(..., in) -> (..., out)``."""

    def __init__(self, linear: nn.Linear, gelu: str | None = None) -> None:
        bias = linear.bias is not None
        super().__init__(linear.in_features, linear.out_features, bias, device="meta")
        self.weight, self.bias = linear.weight, linear.bias
        self.gelu = gelu
        self._packed: tuple[tuple[int, ...], torch.Tensor] | None = None

    def _packed_weight(self, rows: int) -> torch.Tensor:
        key = tensors_version([self.weight])
        if self._packed is None or self._packed[0] != key:
            packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), rows)
            self._packed = (key, packed)
        return self._packed[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            out = super().forward(x)  # packed kernels have no backward
            return out if self.gelu is None else nn.functional.gelu(out, approximate=self.gelu)
        weight = self._packed_weight(x.numel() // x.shape[-1])
        bias = None if self.bias is None else self.bias.detach()
        if self.gelu is None:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], FUSABLE[self.gelu])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_packed"] = None  # opaque oneDNN tensors neither pickle nor copy
        return state


def pack_linear_layers(module: nn.Module) -> nn.Module:
    """Replace (in place) every bfloat16 ``nn.Linear`` under ``module`` by a
    :class:`PackedLinear`, fusing a following ``nn.GELU`` of an ``MLPBlock`` (``lin1``, ``act``,
    ``lin2``) into ``lin1``. Returns ``module``; unchanged where packing is unavailable."""
    if not packing_available():
        return module

    def packable(layer: object) -> bool:
        return type(layer) is nn.Linear and layer.weight.dtype == torch.bfloat16

    for parent in list(module.modules()):
        act = getattr(parent, "act", None)
        gelu = act.approximate if isinstance(act, nn.GELU) else None
        fuse = gelu in FUSABLE and packable(getattr(parent, "lin1", None))
        for name, child in list(parent.named_children()):
            if packable(child):
                setattr(
                    parent, name, PackedLinear(child, gelu if fuse and name == "lin1" else None)
                )
        if fuse:
            parent.act = nn.Identity()
    return module


__all__ = ["PackedLinear", "pack_linear_layers", "packing_available"]
