"""A ViT-B global attention layer (64x64 tokens, 12 heads, relative positions): the official
fp32 layer against segany's in fp32 and in both bfloat16 routes, on the same seeded weights and
input, interleaved in one process, medians.

segany's bf16 inference takes one of two routes for a global grid (chosen in
:mod:`segany.fast.routes`): blockwise attention with the scores kept in cache
(:func:`~segany.fast.attention.blockwise_rel_pos_attention`), or, on CPUs with AMX,
``scaled_dot_product_attention`` on blocks of query rows with their bias
(``AMX_BIAS_CHUNK_ELEMENTS``). Both are timed here whatever the CPU, and the table says which
one this CPU gets by default.

Run: .venv/bin/python benchmarks/bench_attention.py [--repeats 5] [--keep-freed-memory]
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import torch

from common import interleaved, machine, official_and_ours
from segany.fast import routes

GLOBAL_BLOCK = 2  # a global-attention block of ViT-B


def with_amx_route(amx: bool, fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """``fn`` run as if this CPU had AMX (``amx``) or had not."""

    def run() -> torch.Tensor:
        detected = routes.cpu_has_amx
        routes.cpu_has_amx = lambda: amx
        try:
            return fn()
        finally:
            routes.cpu_has_amx = detected

    return run


def block_steps(calls: int = 50) -> dict[str, float]:
    """Milliseconds per call of each step of one block of the blockwise bf16 route on a ViT-B
    global grid (one head, 4 query grid rows: 256 x 4096 scores), and of ``exp`` alone over
    the same scores (the least any softmax must do)."""
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(torch.bfloat16)

    q, k, v = rand(1, 256, 64), rand(1, 64, 4096), rand(1, 4096, 64)
    rel_h, rel_w = rand(1, 4, 64, 64, 1), rand(1, 4, 64, 1, 64)
    scores, spare, out = rand(1, 256, 4096), rand(1, 256, 4096), rand(1, 256, 64)
    steps = {
        "bias: rel_h + rel_w into the scores": lambda: torch.add(
            rel_h, rel_w, out=scores.view(1, 4, 64, 64, 64)
        ),
        "scores += q k^T (baddbmm)": lambda: torch.baddbmm(scores, q, k, out=scores),
        "softmax": lambda: scores.softmax(-1),
        "probabilities @ v (bmm)": lambda: torch.bmm(scores, v, out=out),
        "exp alone (for comparison)": lambda: torch.exp(scores, out=spare),
    }
    times = {}
    with torch.inference_mode():
        for label, step in steps.items():  # one at a time: each step rewrites the scores
            times[label] = 1e3 * interleaved({label: step}, repeats=calls, warmup=5)[label]
            scores.normal_(generator=generator)  # exp and softmax see the same kind of scores
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="segany.keep_freed_memory() first (process-wide: the official layer gains too)",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.keep_freed_memory:
        from segany import keep_freed_memory

        print(f"keep_freed_memory applied: {keep_freed_memory()}")
    official, ours = official_and_ours("vit_b")
    official_attn = official.image_encoder.blocks[GLOBAL_BLOCK].attn
    fp32_attn = ours.image_encoder.blocks[GLOBAL_BLOCK].attn
    bf16_attn = copy.deepcopy(fp32_attn).to(torch.bfloat16)
    x = torch.randn(1, 64, 64, 768, generator=torch.Generator().manual_seed(0))
    x16 = x.to(torch.bfloat16)
    outputs: dict[str, torch.Tensor] = {}

    def call(label: str, fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                outputs[label] = fn()

        return run

    variants = {
        "official fp32": lambda: official_attn(x),
        "segany fp32": lambda: fp32_attn(x),
        "segany bf16, blockwise": with_amx_route(False, lambda: bf16_attn(x16)),
        "segany bf16, SDPA in row blocks": with_amx_route(True, lambda: bf16_attn(x16)),
    }
    times = interleaved(
        {label: call(label, fn) for label, fn in variants.items()}, repeats=args.repeats
    )
    default = "SDPA in row blocks" if routes.cpu_has_amx() else "blockwise"
    print(f"machine: {machine()}")
    print(f"AMX: {routes.cpu_has_amx()} (bf16 global attention here: {default})")
    print(f"median of {args.repeats}, interleaved\n")
    print("| attention layer | s | vs official | max abs diff vs official |")
    print("|---|---|---|---|")
    reference = outputs["official fp32"]
    for label, seconds in times.items():
        diff = (outputs[label].float() - reference).abs().max().item()
        ratio = times["official fp32"] / seconds
        print(f"| {label} | {seconds:.3f} | {ratio:.2f}x | {diff:.2e} |")
    print("\nOne block of the blockwise bf16 route (one head, 256 query tokens x 4096 keys; a")
    print("ViT-B image has 768), median of 50 calls:\n")
    print("| step | ms |\n|---|---|")
    for label, ms in block_steps().items():
        print(f"| {label} | {ms:.3f} |")


if __name__ == "__main__":
    main()
