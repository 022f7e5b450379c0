"""Hugging Face ``transformers.SamModel`` against segany on the same weights: seeded random ViT-B
weights written by ``save_checkpoint(..., format="hf")`` and read by
``SamModel.from_pretrained``; the same preprocessed photo; interleaved in one process, medians.

Encoder: ``SamModel.get_image_embeddings`` against segany's image encoder (fp32, bf16).
Predict: one click to full-size masks (3 candidates): transformers' decoder forward on the
embedding plus ``SamImageProcessor.post_process_masks``, against ``Predictor.predict``.

Run: .venv/bin/python benchmarks/bench_hf.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import numpy as np
import torch
import transformers

from common import interleaved, machine, sample_image, seeded_model
from segany.checkpoints import save_checkpoint
from segany.fast.precision import optimize
from segany.inference.embedding import prepare_image
from segany.inference.predictor import Predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ours = seeded_model("segany", "vit_b", region_head=True)
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(ours, folder, format="hf")
        theirs = transformers.SamModel.from_pretrained(folder).eval()
    fp32 = optimize(copy.deepcopy(ours), "fp32")
    bf16 = optimize(ours, "bf16")
    image, image_name = sample_image()
    tensor, input_size = prepare_image(fp32, image)
    x = fp32.preprocess(tensor)
    with torch.inference_mode():
        expected = theirs.get_image_embeddings(x)
        encoders = {
            "transformers fp32": lambda: theirs.get_image_embeddings(x),
            "segany fp32": lambda: fp32.image_encoder(x),
            "segany bf16": lambda: bf16.image_encoder(x),
        }
        diffs = {k: (fn() - expected).abs().max().item() for k, fn in encoders.items()}
        encoder_times = interleaved(encoders, args.repeats)
        predict_times, mask_agreement = _predict(theirs, fp32, image, input_size, expected, args)
    print(machine(), "|", image_name)
    print("| encoder | s | vs transformers | max abs diff |\n|---|---|---|---|")
    base = encoder_times["transformers fp32"]
    for label, seconds in encoder_times.items():
        print(f"| {label} | {seconds:.3f} | {base / seconds:.2f}x | {diffs[label]:.1e} |")
    print("| predict (1 click, 3 masks) | ms | vs transformers |\n|---|---|---|")
    base = predict_times["transformers"]
    for label, seconds in predict_times.items():
        print(f"| {label} | {1000 * seconds:.1f} | {base / seconds:.2f}x |")
    print(f"mask pixels that agree: {mask_agreement:.6f}")


def _predict(theirs, ours, image, input_size, embedding, args) -> tuple[dict[str, float], float]:
    """Median seconds of one click to full-size masks, each way, and the fraction of mask
    pixels the two agree on."""
    h, w = image.shape[:2]
    click = np.array([[0.45 * w, 0.55 * h]])
    scale = ours.img_size / max(h, w)
    points = torch.tensor(click * scale, dtype=torch.float32)[None, None]
    labels = torch.ones(1, 1, 1, dtype=torch.long)
    processor = transformers.SamImageProcessor()
    predictor = Predictor(ours)
    ours_embedding = predictor.embed(image)

    def hf_predict() -> torch.Tensor:
        out = theirs(image_embeddings=embedding, input_points=points, input_labels=labels)
        return processor.post_process_masks(
            out.pred_masks, original_sizes=[(h, w)], reshaped_input_sizes=[input_size]
        )[0][0]

    def segany_predict() -> np.ndarray:
        return predictor.predict(ours_embedding, points=click, labels=[1]).masks[0]

    times = interleaved({"transformers": hf_predict, "segany": segany_predict}, 5 * args.repeats)
    return times, float((hf_predict().numpy() == segany_predict()).mean())


if __name__ == "__main__":
    main()
