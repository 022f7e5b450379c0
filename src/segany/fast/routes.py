"""Which speed route runs where: the one place that looks at the device, the dtype, autograd,
tracing and compiling, and the CPU's instruction set.

Attention with relative positions (:mod:`segany.fast.attention`) has three routes:

- ``sdpa``, one call: ``scaled_dot_product_attention`` with the whole bias as its mask, the
  plain formula. An export takes it, so that the traced graph stays small and plain.
- ``sdpa`` in row blocks: the bias of a ViT-B global block would be 12 x 4096 x 4096 elements
  (805 MB in float32), so queries go in blocks of whole grid rows with at most
  :data:`BIAS_CHUNK_ELEMENTS` of bias at once; the blocks share one buffer unless autograd
  must keep each block's bias, or a compile must trace them (it cannot follow the buffer's
  views). Every pass over the keys costs, so blocks are as large as the limit allows.
- ``blockwise`` (bfloat16 inference): per block of query rows the scores stay in cache,
  ``S = scale q k^T + bias``, softmax, ``@ v``. In bfloat16 it beats SDPA with a materialised
  bias; in float32 it does not, so float32 stays on SDPA. On CPUs with AMX bf16 tiles, oneDNN's
  fused SDPA kernel wins on large (global) grids, in smaller blocks
  (:data:`AMX_BIAS_CHUNK_ELEMENTS`); windows stay blockwise there too.

On a GPU the CPU's blocks would be thousands of small kernels. There, in bfloat16 and float16,
``triton`` runs :mod:`segany.fast.triton_attention`'s fused kernel (the bias is added inside
the flash-attention loop, never materialised); float32, the parity path, and a GPU without
Triton take SDPA with the bias in large blocks (:data:`CUDA_BIAS_CHUNK_ELEMENTS`), which
PyTorch runs by its memory-efficient kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch

# Largest relative-position bias (elements) materialised at once by SDPA in row blocks: 64M,
# 256 MB in float32. Smaller blocks cost one more pass over the keys each.
BIAS_CHUNK_ELEMENTS = 1 << 26

# Scores materialised at once by the blockwise route: 1M elements (2 MB in bfloat16, split
# between the threads), so each block's scores stay in cache.
BLOCKWISE_SCORE_ELEMENTS = 1 << 20

# Bias materialised at once when bfloat16 global attention goes through SDPA on a CPU with AMX:
# 16M elements (4 query grid rows of a ViT-B global block), where oneDNN's fused kernel is
# fastest; larger blocks fall out of cache.
AMX_BIAS_CHUNK_ELEMENTS = 1 << 24

# Bias materialised at once by SDPA on a GPU: 1G elements (2 GB in bfloat16), so that a ViT-H
# global block goes in one or two calls even at a batch of 8.
CUDA_BIAS_CHUNK_ELEMENTS = 1 << 30

WHOLE = 1 << 62  # a bias limit no grid reaches: the whole bias in one call


@cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX bf16 tiles (Sapphire Rapids and later), which make oneDNN's
    fused SDPA kernel faster than the blockwise route on large grids."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        return bool(capabilities().get("amx_bf16", False))
    amx_tile = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(amx_tile is not None and amx_tile())


@cache
def triton_available() -> bool:
    """Whether Triton imports (it ships with PyTorch's CUDA wheels) for the fused GPU kernel."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class AttentionRoute:
    """How one relative-position attention call runs: ``kind`` ``"sdpa"`` (with at most
    ``bias_elements`` of bias at once, one shared buffer when ``shared_buffer``),
    ``"blockwise"`` (scores in blocks of :data:`BLOCKWISE_SCORE_ELEMENTS`) or ``"triton"``
    (one fused kernel)."""

    kind: str
    bias_elements: int = 0
    shared_buffer: bool = False


def choose_attention_route(
    device_type: str,
    dtype: torch.dtype,
    *,
    grad: bool,
    tracing: bool,
    compiling: bool,
    large_grid: bool,
) -> AttentionRoute:
    """The route for one call: on ``device_type`` (``"cpu"``, ``"cuda"``...) with ``dtype``
    activations; ``grad`` when autograd records it; ``large_grid`` when the grid's rows plus
    columns exceed the head width (global attention, not windows)."""
    if tracing:  # an export: the plain formula, one call
        return AttentionRoute("sdpa", WHOLE)
    if grad or compiling:
        return AttentionRoute("sdpa", BIAS_CHUNK_ELEMENTS)
    if device_type == "cuda":
        if dtype in (torch.bfloat16, torch.float16) and triton_available():
            return AttentionRoute("triton")
        return AttentionRoute("sdpa", CUDA_BIAS_CHUNK_ELEMENTS)
    if dtype == torch.bfloat16:
        if device_type == "cpu" and large_grid and cpu_has_amx():
            return AttentionRoute("sdpa", AMX_BIAS_CHUNK_ELEMENTS, shared_buffer=True)
        return AttentionRoute("blockwise")
    return AttentionRoute("sdpa", BIAS_CHUNK_ELEMENTS, shared_buffer=True)


def packs_linear_layers(device_type: str, compiling: bool) -> bool:
    """Whether a bfloat16 encoder's linear layers run on oneDNN-packed weights
    (:mod:`segany.fast.packed_linear`): on the CPU, and not under ``torch.compile``, which
    compiles the plain linear layers itself."""
    return device_type == "cpu" and not compiling
