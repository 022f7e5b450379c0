"""The page's own decoder time in Debian's Chromium: median over N clicks.

A server on localhost (the bundled ``tiny`` model, or seeded random weights of the same
architecture when it is not bundled yet: the decoder's cost does not depend on the weights)
serves the page; Playwright clicks objects of a generated scene in groups (a first click with
3 candidates, then refinement clicks with the previous logits fed back), and reads the times
the page measured around ``session.run`` (onnxruntime-web, WebAssembly). End-to-end time, from
the click to the mask drawn, is reported beside it.

Run: .venv/bin/python benchmarks/bench_browser.py [--clicks 50] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

from common import machine
from segany import build_model
from segany.checkpoints import bundled_weights_path, load
from segany.config import TINY
from segany.data.scenes import generate_scene
from segany.server import SegmentService, create_app
from segany.server.live import PageDriver, chromium_options, live_server
from segany.testing import random_state_dict

SCENE = 164
GROUP = 5  # clicks per object before a reset


def other_jobs() -> str:
    """Other heavy processes (training jobs) running now, if any."""
    found = subprocess.run(
        ["pgrep", "-af", "segany train|cpu_ab.py"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return found or "none"


def click_points(count: int, seed: int = 0) -> list[tuple[float, float, int]]:
    """Clicks on the scene's objects: each group starts with a foreground click inside an
    object, then mixes foreground and background clicks around it."""
    scene = generate_scene(SCENE)
    rng = np.random.default_rng(seed)
    points = []
    objects = [m for m in scene.masks if m.sum() > 400]
    while len(points) < count:
        mask = objects[(len(points) // GROUP) % len(objects)]
        ys, xs = np.nonzero(mask)
        for k in range(GROUP):
            if k == 0 or rng.random() < 0.6:
                i = rng.integers(len(xs))
                points.append((xs[i] + 0.5, ys[i] + 0.5, 1))
            else:
                ys_out, xs_out = np.nonzero(~mask)
                i = rng.integers(len(xs_out))
                points.append((xs_out[i] + 0.5, ys_out[i] + 0.5, 0))
    return points[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, help="WebAssembly threads (default: the page's)")
    parser.add_argument("--embedding", choices=("float16", "float32"), default="float16")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    if bundled_weights_path("tiny") is not None:
        model, model_name = load("tiny"), "tiny (bundled)"
    else:
        model = build_model(TINY)
        model.load_state_dict(random_state_dict(model.state_dict(), seed=0))
        model_name = "tiny architecture, seeded random weights (bundled weights absent)"
    jobs_before = other_jobs()
    query = [f"embedding={args.embedding}", "hover=0"]
    if args.threads:
        query.append(f"threads={args.threads}")
    with tempfile.TemporaryDirectory() as cache, sync_playwright() as playwright:
        service = SegmentService(model.eval(), cache)
        with live_server(create_app(service)) as url:
            browser = playwright.chromium.launch(**chromium_options())
            page = PageDriver(browser.new_page(viewport={"width": 1280, "height": 900}))
            page.open(url, "?" + "&".join(query))
            page.load_sample(f"scene-{SCENE}")
            threads = page.page.evaluate("() => window.segany.threads()")
            isolated = page.page.evaluate("() => window.segany.isolated()")
            for x, y, label in click_points(args.warmup, seed=1):
                page.click(x, y, label)
            page.page.keyboard.press("Escape")
            skip = len(page.click_timings())
            end_to_end = []
            for index, (x, y, label) in enumerate(click_points(args.clicks)):
                if index % GROUP == 0:
                    page.page.keyboard.press("Escape")
                cx, cy = page.client_xy(x, y)
                start = time.perf_counter()
                page.page.mouse.click(cx, cy, button="left" if label else "right")
                page.idle()
                end_to_end.append(1000 * (time.perf_counter() - start))
            decoder = page.click_timings()[skip:]
            browser.close()
    first = decoder[::GROUP]
    later = [t for i, t in enumerate(decoder) if i % GROUP]
    result = {
        "machine": machine(),
        "chromium": chromium_options()["executable_path"],
        "model": model_name,
        "scene": f"generated scene {SCENE} (256x256)",
        "clicks": len(decoder),
        "threads": threads,
        "cross_origin_isolated": isolated,
        "embedding": args.embedding,
        "decoder_ms_median": statistics.median(decoder),
        "decoder_ms_p90": float(np.percentile(decoder, 90)),
        "decoder_ms_min": min(decoder),
        "decoder_ms_median_first_click": statistics.median(first),
        "decoder_ms_median_refinement": statistics.median(later),
        "click_to_mask_ms_median": statistics.median(end_to_end),
        "other_jobs_before": jobs_before,
        "other_jobs_after": other_jobs(),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
