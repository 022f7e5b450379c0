"""Reused buffers and in-place steps for the shared-image decoder's image-token-sized tensors,
and the version key that tells when values computed from weights are stale."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


class Workspace:
    """Buffers for the image-token-sized tensors of the shared-image decoder's ``decode`` and
    ``masks`` (:class:`~segany.fast.shared_decoder.SharedImageDecoder`), reused from one batch
    of prompts to the next.

    On CPU a fresh tensor of tens of MiB costs more than a pass over it: the allocator maps new
    pages that the kernel faults in and zeroes, batch after batch. A tensor taken from a
    workspace stays valid until its name is taken again (the next call that uses the workspace).
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """An uninitialised tensor of ``shape`` with ``like``'s dtype and device."""
        numel = math.prod(shape)
        buffer = self._buffers.get(name)
        if (
            buffer is None
            or buffer.numel() < numel
            or buffer.dtype != like.dtype
            or buffer.device != like.device
        ):
            buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._buffers[name] = buffer
        return buffer[:numel].view(shape)


def layer_norm_(x: Tensor, norm: torch.nn.Module) -> Tensor:
    """``norm`` (a layer norm over the last dim, with ``weight``, ``bias``, ``eps``) applied to
    ``x`` ``(..., C)`` in place, allocating nothing of ``x``'s size; returns ``x``."""
    x.sub_(x.mean(-1, keepdim=True))
    scale = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    x.mul_(scale.square_().div_(x.shape[-1]).add_(norm.eps).rsqrt_())
    if norm.weight is not None and norm.bias is not None:
        return torch.addcmul(norm.bias, x, norm.weight, out=x)
    if norm.weight is not None:
        x.mul_(norm.weight)
    return x if norm.bias is None else x.add_(norm.bias)


def activate_(x: Tensor, activation: torch.nn.Module) -> Tensor:
    """``activation(x)``, in place for GELU (the decoder's activation)."""
    if isinstance(activation, torch.nn.GELU):
        return torch.ops.aten.gelu_(x, approximate=activation.approximate)
    return activation(x)


def tensors_version(tensors: Iterable[Tensor]) -> tuple[int, ...]:
    """A key that changes whenever one of ``tensors`` changes in place or gets new storage
    (version counters and data pointers): what invalidates values computed from weights.
    Inference tensors have no version counter: only their storage counts."""
    return tuple(v for t in tensors for v in (t.data_ptr(), 0 if t.is_inference() else t._version))
