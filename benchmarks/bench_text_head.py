"""Text prompts through the bundled text-prompt head, on held-out generated scenes (seeds from
1,000,000; the head and the tiny model trained below).

Every phrase of one or two words naming something in a scene is prompted
(:func:`segany.text.evaluation.evaluate_text_head`). Rows: the shipped head (trained on the
object side, prompted with text: the paper's recipe); the same head fed each object's own
object-side embedding (the training condition: what the recipe would give with a perfect text
encoder); optionally a head trained on the text side directly (``--text-trained FILE``, made by
``segany train-text --side text``); and the reference, one click at the centre of the named
object with the same model (best of 3 by predicted IoU).

Run: .venv/bin/python benchmarks/bench_text_head.py [--scenes 200] [--text-trained FILE]
"""

from __future__ import annotations

import argparse
import datetime

import numpy as np
import torch

from common import machine
from segany.checkpoints import load
from segany.data.names import scene_phrases
from segany.data.scenes import generate_scene
from segany.evaluate.clicks import centre_click
from segany.fast.upscale import upscale_to_masks
from segany.inference.predictor import Predictor
from segany.text.evaluation import HELD_OUT_SEED, evaluate_text_head, mask_iou
from segany.text.head import pool_under_masks
from segany.text.prompt import TextPromptHead, decode_tokens


@torch.inference_mode()
def reference_rows(predictor: Predictor, head: TextPromptHead, scenes: int) -> dict[str, float]:
    """mIoU over unique phrases of the object-side prompt and of one centre click."""
    sam, model = predictor.model, head.model
    object_side, click = [], []
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + scenes):
        scene = generate_scene(seed)
        targets = sorted({named[0] for _, named in scene_phrases(scene) if len(named) == 1})
        if not targets:
            continue
        embedding = predictor.embed(scene.image)
        grid = embedding.features.shape[-1]
        masks = torch.from_numpy(scene.masks[targets]).float()
        cover = torch.nn.functional.adaptive_avg_pool2d(masks, grid)
        colour = torch.from_numpy(
            np.stack([scene.image[m].mean(0) / 255 for m in scene.masks[targets]])
        )
        shared = model.image(
            pool_under_masks(embedding.features.expand(len(targets), -1, -1, -1), cover),
            colour.float(),
        )
        low_res, _ = decode_tokens(sam, embedding.features, model.head(shared))
        predicted = upscale_to_masks(
            low_res[:, None],
            sam.img_size,
            embedding.input_size,
            embedding.original_size,
            sam.mask_threshold,
        )[:, 0].numpy()
        for index, mask in zip(targets, predicted):
            truth = scene.masks[index]
            object_side.append(mask_iou(mask, truth))
            prediction = predictor.predict(embedding, points=[centre_click(truth)], labels=[1])
            click.append(mask_iou(prediction.best_masks()[0], truth))
    return {"object side": float(np.mean(object_side)), "click": float(np.mean(click))}


def row(name: str, report) -> str:
    kinds = ("colour+shape", "shape", "colour")
    cells = [f"{report.miou():.3f}", *(f"{report.miou(k):.3f}" for k in kinds)]
    hit = f"{report.ambiguous_hit_rate():.2f}"
    union = f"{np.mean(report.ambiguous_union):.3f}"
    return f"| {name} | {' | '.join(cells)} | {hit} | {union} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--text-trained", help="a head made by segany train-text --side text")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor(load("tiny"))
    head = TextPromptHead.bundled("tiny")
    report = evaluate_text_head(predictor, head, args.scenes)
    kinds = ("colour+shape", "shape", "colour")
    counts = ", ".join(f"{k} {report.count(k)}" for k in kinds)
    print(
        f"`python benchmarks/bench_text_head.py --scenes {args.scenes}` — {machine()} — "
        f"{datetime.date.today()}"
    )
    print(
        f"\n{args.scenes} held-out scenes; unique phrases: {report.count()} ({counts}); "
        f"ambiguous phrases: {len(report.ambiguous_best)}\n"
    )
    print(
        "| route | mIoU unique | colour+shape | shape | colour | ambiguous: hit rate "
        "| ambiguous: IoU with union |"
    )
    print("|---|---|---|---|---|---|---|")
    print(row("shipped: text picks among SAM's grid proposals", report))
    token = evaluate_text_head(predictor, head, args.scenes, route="token")
    print(row("paper: text → prompt token (head trained on object side)", token))
    if args.text_trained:
        other = TextPromptHead.load(args.text_trained)
        ablation = evaluate_text_head(predictor, other, args.scenes, route="token")
        print(row("ablation: text → prompt token (head trained on text)", ablation))
    refs = reference_rows(predictor, head, args.scenes)
    blank = " | | | | | |"
    print(
        f"| paper's token fed the object side (training condition) | {refs['object side']:.3f}{blank}"
    )
    print(f"| reference: 1 centre click on the named object | {refs['click']:.3f}{blank}")


if __name__ == "__main__":
    main()
