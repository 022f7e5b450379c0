"""How fast could the speed targets of issues 6 and 7 be on this CPU at best? A lower bound.

Every matrix product a segany forward runs (counted by ``torch.utils.flop_counter`` on a
meta-device model, so exactly the products of the code as it stands) is charged at the best
rate this CPU reaches on large, well-shaped matrix products (``torch.mm``, measured here in the
same precision, several shapes, best of each). Everything else (norms, softmax, GELU, copies,
the upscaling to the photo's size) is charged nothing, so the floor is below any real time.
The targets come from the official implementation timed in the same run, same weights.

Run: .venv/bin/python benchmarks/bench_floor.py [--models vit_b,vit_h] [--predicts 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from segment_anything import SamPredictor as OfficialPredictor
from torch.utils.flop_counter import FlopCounterMode

from common import machine, sample_image, seeded_model
from segany import sam_model_registry
from segany.export.decoder import OnnxDecoder

# (M, K, N): the encoders' linear layers (ViT-B and ViT-H widths) and the decoder's mask head
GEMM_SHAPES = ((4096, 768, 3072), (4096, 3072, 768), (4096, 1280, 5120), (4096, 256, 256))
# issue 7: bf16 encoder speed-up over the official fp32 encoder; issue 6: the ONNX decoder
ENCODER_TARGETS = {"vit_b": 4.0, "vit_h": 3.0}
DECODER_TARGET_MS = 15.0
DECODER_TARGET_SPEEDUP = 3.0


def best_gemm_rate(dtype: torch.dtype, repeats: int = 5) -> tuple[float, tuple[int, int, int]]:
    """The best multiply-add rate (FLOP/s, 2 per multiply-add) over :data:`GEMM_SHAPES`, and
    the shape that reached it."""
    best = (0.0, GEMM_SHAPES[0])
    for m, k, n in GEMM_SHAPES:
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        out = torch.empty(m, n, dtype=dtype)
        torch.mm(a, b, out=out)
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            seconds.append(time.perf_counter() - start)
        best = max(best, (2 * m * k * n / min(seconds), (m, k, n)))
    return best


def matmul_flops(fn, *args: torch.Tensor) -> int:
    """FLOPs of the matrix products and convolutions ``fn(*args)`` runs."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(*args)
    return counter.get_total_flops()


def encoder_flops(name: str) -> int:
    """Matrix-product FLOPs of segany's image encoder on one 1024x1024 image (meta device)."""
    with torch.device("meta"):
        model = sam_model_registry[name]()
        return matmul_flops(model.image_encoder, torch.empty(1, 3, 1024, 1024))


def decoder_flops(original_size: tuple[int, int]) -> int:
    """Matrix-product FLOPs of segany's exported decoder function (the ONNX graph's) for one
    click with the official -1 padding point, 4 masks, no mask input."""
    wrapper = OnnxDecoder(sam_model_registry["vit_b"]().eval())
    inputs = (
        torch.zeros(1, 256, 64, 64),
        torch.tensor([[[500.0, 300.0], [0.0, 0.0]]]),
        torch.tensor([[1.0, -1.0]]),
        torch.zeros(1, 1, 256, 256),
        torch.zeros(1),
        torch.tensor([float(s) for s in original_size]),
    )
    return matmul_flops(wrapper, *inputs)


def official_encoder_seconds(name: str) -> float:
    """The official fp32 encoder on one 1024x1024 input: one warm-up call, then one timed."""
    model = seeded_model("official", name)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model.image_encoder(x)
        start = time.perf_counter()
        model.image_encoder(x)
        return time.perf_counter() - start


def official_predict_seconds(image: np.ndarray, repeats: int) -> float:
    """Median of the official ``SamPredictor.predict`` for one centre click (ViT-B)."""
    predictor = OfficialPredictor(seeded_model("official", "vit_b"))
    predictor.set_image(image)
    point = np.array([[image.shape[1] // 2, image.shape[0] // 2]])
    seconds = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        predictor.predict(point_coords=point, point_labels=np.array([1]))
        if i >= 2:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def verdict(floor: float, target: float) -> str:
    if floor > target:
        return "**unreachable** (floor above target)"
    return f"needs {floor / target:.0%} of the best GEMM rate across the whole call"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="vit_b,vit_h")
    parser.add_argument("--predicts", type=int, default=20)
    args = parser.parse_args()
    unknown = set(args.models.split(",")) - set(ENCODER_TARGETS)
    if unknown:
        parser.error(
            f"--models: no target for {sorted(unknown)}; choose from {sorted(ENCODER_TARGETS)}"
        )
    image, image_name = sample_image()
    print(f"machine: {machine()}")
    rates = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rate, shape = best_gemm_rate(dtype)
        rates[label] = rate
        print(f"best {label} torch.mm rate: {rate / 1e9:.0f} GFLOP/s (M, K, N = {shape})")

    print("\n| target | official (measured) | target time | matrix-product FLOPs |", end=" ")
    print("floor at best rate | verdict |\n|---|---|---|---|---|---|")
    for name in args.models.split(","):
        official = official_encoder_seconds(name)
        target = official / ENCODER_TARGETS[name]
        flops = encoder_flops(name)
        floor = flops / rates["bf16"]
        print(
            f"| {name} encoder bf16 >= {ENCODER_TARGETS[name]:.0f}x | {official:.2f} s "
            f"| {target:.2f} s | {flops / 1e12:.3f} T | {floor:.2f} s | {verdict(floor, target)} |"
        )
    official = official_predict_seconds(image, args.predicts)
    size = image.shape[:2]
    target = min(DECODER_TARGET_MS / 1e3, official / DECODER_TARGET_SPEEDUP)
    flops = decoder_flops(size)
    floor = flops / rates["fp32"]
    print(
        f"| decoder fp32, 1 click, {size[1]}x{size[0]} ({image_name}): <= 15 ms and "
        f"{DECODER_TARGET_SPEEDUP:.0f}x the official predict | {official * 1e3:.1f} ms "
        f"| {target * 1e3:.1f} ms | {flops / 1e9:.2f} G | {floor * 1e3:.1f} ms "
        f"| {verdict(floor, target)} |"
    )


if __name__ == "__main__":
    main()
