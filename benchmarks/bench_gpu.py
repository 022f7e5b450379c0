"""The GPU table of issue 20 in one process: the encoder, clicks, segment-everything and training,
official SAM (under bf16 autocast), Hugging Face transformers' ``SamModel`` (when installed) and
segany side by side on the same seeded random weights.

    python benchmarks/bench_gpu.py --output out/gpu            # on a GPU: JSON + Markdown
    python benchmarks/bench_gpu.py --device cpu --quick        # the same code path, small, here

Every section is timed with the device synchronised, medians of interleaved repeats; each
result is written as soon as it is measured (``results.json``), so a run cut short keeps what
it had. bf16 masks are compared with float32 ones (mean IoU) beside their times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

import segany
from common import SHARED_IMAGES, seeded_model
from segany.data.scenes import SceneConfig, generate_scene


class Recorder:
    """Results by section, saved after each one (JSON) and rendered as Markdown at the end."""

    def __init__(self, output: Path, device: str) -> None:
        self.output = output
        self.results: dict = {"device": device_name(device), "date": time.strftime("%Y-%m-%d"),
                              "torch": torch.__version__, "sections": {}}  # fmt: skip
        output.mkdir(parents=True, exist_ok=True)

    def section(self, name: str, fn: Callable[[], dict]) -> None:
        start = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # one failing section must not lose the others
            value = {
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()[-2000:],
            }
        value["section_seconds"] = round(time.perf_counter() - start, 1)
        self.results["sections"][name] = value
        print(f"{name}: {json.dumps({k: v for k, v in value.items() if k != 'trace'})}", flush=True)
        (self.output / "results.json").write_text(json.dumps(self.results, indent=1))

    def markdown(self) -> str:
        lines = [f"GPU: {self.results['device']}, torch {self.results['torch']}, "
                 f"{self.results['date']}", "", "| section | measure | value |", "|---|---|---|"]  # fmt: skip
        for name, value in self.results["sections"].items():
            for key, item in value.items():
                if key != "trace":
                    lines.append(f"| {name} | {key} | {item} |")
        return "\n".join(lines) + "\n"


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], device: str, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


IMAGES = [SHARED_IMAGES]  # --images replaces it (a device machine gets the photos carried along)


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    """The sample photo ``name`` at ``size`` (H, W), or a generated scene of that size where the
    photos are not at hand."""
    path = IMAGES[0] / name
    if not path.is_file():
        return generate_scene(7, SceneConfig(height=size[0], width=size[1])).image
    from segany.formats.images import read_image

    image = read_image(path)
    if image.shape[:2] != size:
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return image


def mean_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = (a & b).sum(axis=(-2, -1))
    union = (a | b).sum(axis=(-2, -1))
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def ours(name: str, device: str, precision: str, compile: bool = False) -> segany.Sam:
    model = seeded_model("segany", name, region_head=True).to(device)
    return segany.optimize(model, precision, compile=compile)


def encoder_section(name: str, device: str, repeats: int, batch: int, quick: bool) -> dict:
    """Encoder times at batch 1 (and ``batch``): official fp32 and bf16 autocast, HF bf16,
    segany fp32, bf16, bf16 compiled (first call reported), bf16 batched."""
    size = 1024
    x = torch.randn(1, 3, size, size, device=device)
    out: dict = {}
    out.update(official_encoder(name, device, repeats, x))
    out.update(hf_encoder(name, device, repeats, x))
    image = photo("truck.jpg", (1200, 1800))
    clicks = np.array([[[x, y]] for x in (300, 900, 1500) for y in (300, 600, 900)], float)
    masks = {}
    for precision in ("fp32", "bf16"):
        model = ours(name, device, precision)
        with torch.inference_mode():
            out[f"segany_{precision}_ms"] = 1e3 * median_seconds(
                lambda m=model: m.image_encoder(x), device, repeats)  # fmt: skip
        predictor = segany.Predictor(model)
        masks[precision] = predictor.predict(predictor.embed(image), points=clicks,
                                             labels=np.ones(clicks.shape[:2])).masks  # fmt: skip
        if precision == "bf16":
            xs = x.expand(batch, -1, -1, -1).contiguous()
            with torch.inference_mode():
                per_batch = median_seconds(
                    lambda m=model, xs=xs: m.image_encoder(xs), device, repeats
                )
            out[f"segany_bf16_batch{batch}_ms_per_image"] = 1e3 * per_batch / batch
            out["segany_bf16_images_per_s"] = batch / per_batch
        del model, predictor
    out["bf16_vs_fp32_mask_iou"] = mean_iou(masks["fp32"], masks["bf16"])
    if not quick:
        model = ours(name, device, "bf16", compile=True)
        with torch.inference_mode():
            start = time.perf_counter()
            model.image_encoder(x)
            sync(device)
            out["segany_bf16_compile_first_call_s"] = time.perf_counter() - start
            out["segany_bf16_compile_ms"] = 1e3 * median_seconds(
                lambda: model.image_encoder(x), device, repeats)  # fmt: skip
    for key in [k for k in out if k.endswith("_ms")]:
        out[key] = round(out[key], 2)
    out["speedup_bf16_vs_official_autocast"] = round(
        out["official_bf16_autocast_ms"] / out["segany_bf16_ms"], 2)  # fmt: skip
    if "hf_bf16_ms" in out:
        out["speedup_bf16_vs_hf"] = round(out["hf_bf16_ms"] / out["segany_bf16_ms"], 2)
    return out


def official_encoder(name: str, device: str, repeats: int, x: torch.Tensor) -> dict:
    """The official encoder in float32 and under plain bf16 autocast."""
    official = seeded_model("official", name, region_head=True).to(device)
    encode = official.image_encoder
    with torch.inference_mode():
        out = {"official_fp32_ms": 1e3 * median_seconds(lambda: encode(x), device, repeats)}
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            out["official_bf16_autocast_ms"] = 1e3 * median_seconds(
                lambda: encode(x), device, repeats
            )
    return out


def hf_encoder(name: str, device: str, repeats: int, x: torch.Tensor) -> dict:
    """transformers' SamModel vision encoder in bf16 (its own random weights: time only)."""
    try:
        from transformers import SamConfig, SamModel, SamVisionConfig
    except ImportError:
        return {"hf": "transformers not installed"}
    vit = segany.get_config(name).encoder
    vision = SamVisionConfig(hidden_size=vit.embed_dim, num_hidden_layers=vit.depth,
                             num_attention_heads=vit.num_heads,
                             global_attn_indexes=list(vit.global_attn_indexes))  # fmt: skip
    model = SamModel(SamConfig(vision_config=vision.to_dict())).to(device, torch.bfloat16).eval()
    xb = x.to(torch.bfloat16)
    with torch.inference_mode():
        ms = 1e3 * median_seconds(lambda: model.vision_encoder(pixel_values=xb), device, repeats)
    return {"hf_bf16_ms": round(ms, 2)}


def predict_section(name: str, device: str, repeats: int) -> dict:
    """One click (3 masks at the original size), 64 boxes in one call, a refinement click;
    official SamPredictor for the click."""
    from segment_anything import SamPredictor

    image = photo("truck.jpg", (1200, 1800))
    model = ours(name, device, "bf16")
    predictor = segany.Predictor(model)
    embedding = predictor.embed(image)
    point, label = np.array([[900.0, 600.0]]), np.array([1])
    first = predictor.predict(embedding, points=point, labels=label)
    rng = np.random.default_rng(0)
    corners = rng.uniform([0, 0], [1400, 800], (64, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(100, 400, (64, 2))], 1)
    out = {
        "segany_click_ms": 1e3 * median_seconds(
            lambda: predictor.predict(embedding, points=point, labels=label), device, repeats * 5),
        "segany_64_boxes_ms": 1e3 * median_seconds(
            lambda: predictor.predict(embedding, boxes=boxes, multimask=False), device, repeats * 2),
        "segany_refine_click_ms": 1e3 * median_seconds(
            lambda: predictor.predict(embedding, points=np.array([[900.0, 600.0], [950, 650]]),
                                      labels=np.array([1, 0]), mask_input=first.best_logits()[0]),
            device, repeats * 5),
    }  # fmt: skip
    official = SamPredictor(seeded_model("official", name, region_head=True).to(device))
    official.set_image(image)
    out["official_click_ms"] = 1e3 * median_seconds(
        lambda: official.predict(point_coords=point, point_labels=label), device, repeats * 5)  # fmt: skip
    return {k: round(v, 2) for k, v in out.items()}


def everything_section(name: str, device: str, quick: bool) -> dict:
    """Segment-everything at defaults and with thresholds 0 / NMS 1.0 (official vs segany), and
    the sa1b preset on a 1500x2250 photo (segany)."""
    from segment_anything import SamAutomaticMaskGenerator as Official

    image = photo("dog.jpg", (534, 800))
    official = seeded_model("official", name, region_head=True).to(device)
    model = ours(name, device, "bf16")
    loose = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
    side = 8 if quick else 32
    out: dict = {}
    for label, settings in (("defaults", {}), ("thresholds_0", loose)):
        settings = {"points_per_side": side, **settings}
        for package, generator in (("official", Official(official, **settings)),
                                   ("segany", segany.SamAutomaticMaskGenerator(model, **settings))):  # fmt: skip
            generator.generate(image)  # warm-up (and the official's one-time costs)
            sync(device)
            start = time.perf_counter()
            masks = generator.generate(image)
            sync(device)
            out[f"{package}_{label}_s"] = round(time.perf_counter() - start, 3)
            out[f"{package}_{label}_masks"] = len(masks)
        out[f"speedup_{label}"] = round(out[f"official_{label}_s"] / out[f"segany_{label}_s"], 2)
    big = photo("truck.jpg", (300, 450) if quick else (1500, 2250))  # SA-1B's size
    generator = segany.SamAutomaticMaskGenerator(model, preset="sa1b")
    generator.generate(big)
    sync(device)
    start = time.perf_counter()
    out["segany_sa1b_preset_masks"] = len(generator.generate(big))
    sync(device)
    out["segany_sa1b_preset_s"] = round(time.perf_counter() - start, 3)
    return out


def training_section(device: str, quick: bool) -> dict:
    """Steps/s of the bundled model's recipe (tiny, batch 16, 8 masks, 4 passes, bf16) and of a
    ViT-B mask-decoder fine-tune in bf16 (encoder and prompt encoder frozen, batch 4)."""
    from segany.train.trainer import TrainConfig, Trainer

    out: dict = {}
    recipes = {
        "tiny_recipe": dict(model="tiny", batch_size=16, max_masks=8),
        "vit_b_decoder_finetune": dict(model="vit_b", batch_size=4, max_masks=8,
                                       freeze=["image_encoder", "prompt_encoder"]),
    }  # fmt: skip
    steps, warm = (3, 1) if quick else (30, 5)
    for label, recipe in recipes.items():
        seconds: dict[int, float] = {}  # step -> training seconds so far (from the trainer's log)
        with tempfile.TemporaryDirectory() as folder:
            config = TrainConfig(data=["generated:0:100000"], output=folder, steps=steps + warm,
                                 bf16=True, device=device, workers=0 if quick else 8,
                                 checkpoint_every=10**9, log_every=1, **recipe)  # fmt: skip

            def on_log(record: dict, seconds: dict = seconds) -> None:
                seconds[int(record["step"])] = record["seconds"]

            Trainer(config, progress=False, on_log=on_log).train()
        elapsed = seconds[warm + steps] - seconds[warm]
        out[f"{label}_steps_per_s"] = round(steps / elapsed, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default="vit_h,vit_b")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sections", default="encoder,predict,everything,training")
    parser.add_argument("--quick", action="store_true", help="small and few: check the code path")
    parser.add_argument("--output", type=Path, default=Path("out/bench-gpu"))
    parser.add_argument("--images", type=Path, default=SHARED_IMAGES, help="truck.jpg, dog.jpg")
    args = parser.parse_args()
    IMAGES[0] = args.images
    if args.quick:
        args.models, args.repeats, args.batch = "vit_b", 1, 2
    torch.manual_seed(0)
    recorder = Recorder(args.output, args.device)
    sections = args.sections.split(",")
    for name in args.models.split(","):
        if "encoder" in sections:
            recorder.section(f"encoder {name}", lambda n=name: encoder_section(
                n, args.device, args.repeats, args.batch, args.quick))  # fmt: skip
        if "predict" in sections:
            recorder.section(
                f"predict {name}", lambda n=name: predict_section(n, args.device, args.repeats)
            )
        if "everything" in sections:
            recorder.section(
                f"everything {name}", lambda n=name: everything_section(n, args.device, args.quick)
            )
    if "training" in sections:
        recorder.section("training", lambda: training_section(args.device, args.quick))
    (args.output / "results.md").write_text(recorder.markdown())
    print(recorder.markdown())


if __name__ == "__main__":
    main()
