"""ONNX on this CPU: decoder and encoder latency for PyTorch (official and segany) against
onnxruntime fp32 and int8, and how much int8 changes the masks.

Same seeded ViT-B weights everywhere; one point prompt per decoder call (as the web demo);
interleaved timing, medians of wall-clock and process CPU time. The int8 accuracy is the mean IoU of the binary masks of the
int8 graphs against the fp32 graphs over a fixed set of prompts.

Run: .venv/bin/python benchmarks/bench_onnx.py [--model vit_b] [--repeats 30]
     [--encoder-repeats 3] [--threads 2] [--skip-encoder]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from segment_anything import SamPredictor as OfficialPredictor

from common import machine, official_and_ours, sample_image
from segany import Predictor
from segany.export import export_decoder, export_encoder, load_onnx, quantize_onnx
from segany.export.decoder import OUTPUT_NAMES
from segany.export.runtime import make_session


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


SPINNING = False  # several sessions alternate here: busy-waiting idle threads would slow the others


def timed(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, tuple]:
    """Interleaved medians of wall-clock and process CPU seconds per call. With one thread,
    CPU time is what the call costs on an idle core, even while other jobs share the
    machine; wall-clock is the latency seen here and now."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: tuple(statistics.median(column) for column in zip(*values))
        for name, values in samples.items()
    }


def prompt_set(width: int, height: int) -> list[dict]:
    """A fixed set of prompts: a 6x6 grid of single clicks, 8 boxes, 4 box + click pairs."""
    rng = np.random.default_rng(0)
    prompts: list[dict] = []
    for fy in np.linspace(0.1, 0.9, 6):
        for fx in np.linspace(0.1, 0.9, 6):
            prompts.append({"points": [[fx * width, fy * height]], "labels": [1]})
    for _ in range(8):
        x0, x1 = sorted(rng.uniform(0, width, 2))
        y0, y1 = sorted(rng.uniform(0, height, 2))
        prompts.append({"boxes": [x0, y0, x1, y1], "multimask": False})
    for box in prompts[-4:]:
        x0, y0, x1, y1 = box["boxes"]
        click = [[(x0 + x1) / 2, (y0 + y1) / 2]]
        prompts.append({"boxes": box["boxes"], "points": click, "labels": [0], "multimask": False})
    return prompts


def mean_iou(a: tuple, b: tuple, prompts: list[dict]) -> float:
    """Mean IoU of the binary masks that two (predictor, embedding) pairs give for the same
    prompts, over every returned mask."""
    ious = []
    for prompt in prompts:
        masks_a = a[0].predict(a[1], **prompt).masks
        masks_b = b[0].predict(b[1], **prompt).masks
        inter = (masks_a & masks_b).sum(axis=(-2, -1))
        union = (masks_a | masks_b).sum(axis=(-2, -1))
        ious.extend(np.where(union > 0, inter / np.maximum(union, 1), 1.0).ravel())
    return float(np.mean(ious))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="segany-bench-") as folder:
        run(Path(folder))


def run(folder: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--encoder-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-encoder", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image, image_name = sample_image()
    height, width = image.shape[:2]
    theirs, ours = official_and_ours(args.model)
    print(
        f"machine: {machine()}; onnxruntime {ort.__version__}, {args.threads} threads, "
        f"spinning {'on' if SPINNING else 'off'}"
    )
    print(f"model: {args.model} (seeded random weights), image: {image_name} {width}x{height}")
    print(f"at start: {load()}")

    predictor = Predictor(ours)
    official = OfficialPredictor(theirs)
    embedding = predictor.embed(image)
    with torch.inference_mode():
        official.set_image(image)

    started = time.perf_counter()
    decoder = export_decoder(ours, folder / "decoder.onnx")
    single = export_decoder(ours, folder / "decoder_single.onnx", return_single_mask=True)
    decoder_int8, single_int8 = quantize_onnx(decoder), quantize_onnx(single)
    print(f"decoder export + quantization: {time.perf_counter() - started:.1f} s")

    point = np.array([[width // 2, height // 2]], dtype=np.float64)
    model_point = point * (ours.img_size / max(height, width))
    feeds = {
        "image_embeddings": embedding.features.numpy(),
        "point_coords": np.array([[model_point[0], [0.0, 0.0]]], np.float32),
        "point_labels": np.array([[1, -1]], np.float32),
        "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array([height, width], np.float32),
    }
    small_feeds = dict(feeds, orig_im_size=np.array([683, 1024], np.float32))
    sessions = {
        name: make_session(path, args.threads, spinning=SPINNING)
        for name, path in (
            ("fp32", decoder),
            ("int8", decoder_int8),
            ("single fp32", single),
            ("single int8", single_int8),
        )
    }
    backend = load_onnx(decoder, threads=args.threads, spinning=SPINNING)
    labels = np.array([1])
    decoder_calls = {
        "official SamPredictor.predict (PyTorch)": lambda: official.predict(point, labels),
        "segany Predictor.predict (PyTorch)": lambda: predictor.predict(
            embedding, points=point, labels=labels
        ),
        "segany OnnxPredictor.predict (ORT fp32)": lambda: backend.predict(
            embedding, points=point, labels=labels
        ),
        "decoder graph, 4 masks (ORT fp32)": lambda: sessions["fp32"].run(OUTPUT_NAMES, feeds),
        "decoder graph, 4 masks (ORT int8)": lambda: sessions["int8"].run(OUTPUT_NAMES, feeds),
        "decoder graph, single mask (ORT fp32)": lambda: sessions["single fp32"].run(
            OUTPUT_NAMES, feeds
        ),
        "decoder graph, single mask (ORT int8)": lambda: sessions["single int8"].run(
            OUTPUT_NAMES, feeds
        ),
        "decoder graph, single mask, masks at 1024x683 (ORT fp32)": lambda: sessions[
            "single fp32"
        ].run(OUTPUT_NAMES, small_feeds),
    }
    times = timed(decoder_calls, repeats=args.repeats, warmup=2)
    reference = times["official SamPredictor.predict (PyTorch)"][0]
    print(f"\nDecoder, one click, masks at {width}x{height} (median of {args.repeats}):")
    print("| decoder call | ms | vs official predict | CPU ms |\n|---|---|---|---|")
    for name, (seconds, cpu) in times.items():
        print(f"| {name} | {1000 * seconds:.1f} | {reference / seconds:.2f}x | {1000 * cpu:.1f} |")
    print(f"after decoder timing: {load()}")

    prompts = prompt_set(width, height)
    backend_int8 = load_onnx(decoder_int8, threads=args.threads, spinning=SPINNING)
    decoder_iou = mean_iou((backend, embedding), (backend_int8, embedding), prompts)
    print(
        f"\nint8 decoder vs fp32 decoder: mean mask IoU {decoder_iou:.4f} "
        f"over {len(prompts)} prompts (all returned masks)"
    )
    if args.skip_encoder:
        return

    started = time.perf_counter()
    encoder = export_encoder(ours, folder / "encoder.onnx")
    encoder_int8 = quantize_onnx(encoder)
    print(f"\nencoder export + quantization: {time.perf_counter() - started:.1f} s")
    full = load_onnx(decoder, encoder, threads=args.threads, spinning=SPINNING)
    full_int8 = load_onnx(decoder, encoder_int8, threads=args.threads, spinning=SPINNING)
    encoder_calls = {
        "official SamPredictor.set_image (PyTorch)": lambda: official.set_image(image),
        "segany Predictor.embed (PyTorch)": lambda: predictor.embed(image),
        "segany OnnxPredictor.embed (ORT fp32)": lambda: full.embed(image),
        "segany OnnxPredictor.embed (ORT int8)": lambda: full_int8.embed(image),
    }
    with torch.inference_mode():
        times = timed(encoder_calls, repeats=args.encoder_repeats, warmup=1)
    reference = times["official SamPredictor.set_image (PyTorch)"][0]
    print(f"Encoder, {args.model} at 1024x1024 (median of {args.encoder_repeats}):")
    print("| encoder call | s | vs official set_image | CPU s |\n|---|---|---|---|")
    for name, (seconds, cpu) in times.items():
        print(f"| {name} | {seconds:.2f} | {reference / seconds:.2f}x | {cpu:.2f} |")
    emb32, emb8 = full.embed(image), full_int8.embed(image)
    diff32 = (emb32.features - embedding.features).abs().max().item()
    diff8 = (emb8.features - embedding.features).abs().max().item()
    print(f"max |embedding - PyTorch|: ORT fp32 {diff32:.2e}, ORT int8 {diff8:.2e}")
    fp32 = (backend, embedding)
    iou_encoder = mean_iou(fp32, (backend, emb8), prompts)
    iou_both = mean_iou(fp32, (backend_int8, emb8), prompts)
    print(f"int8 encoder (fp32 decoder) vs fp32: mean mask IoU {iou_encoder:.4f}")
    print(f"int8 encoder + int8 decoder vs fp32: mean mask IoU {iou_both:.4f}")
    print(f"at end: {load()}")


if __name__ == "__main__":
    main()
