"""MobileSAM's TinyViT encoder against SAM's ViT-B encoder on this CPU, fp32 and bf16, and
segany's TinyViT against the TinyViT MobileSAM released (``tiny_vit_sam``, shipped inside
``segment_anything_hq``) on the same seeded random weights: one 1024x1024 input, interleaved
in one process, medians.

The reference's bf16 row is the released module cast to bfloat16 (it has no bf16 mode of its
own); segany's is ``optimize(model, "bf16")``. Max |difference| is against the reference's
fp32 embedding (TinyViT rows) or segany's ViT-B fp32 embedding (ViT-B rows).

Run: .venv/bin/python benchmarks/bench_mobile.py [--repeats 5] [--no-vit-b]
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch

from common import interleaved, machine, seeded_model
from segany.fast.precision import optimize

with warnings.catch_warnings():  # timm's deprecated import paths
    warnings.simplefilter("ignore")
    from segment_anything_hq.modeling.tiny_vit_sam import TinyViT as ReferenceTinyViT


def reference_tiny_vit(state: dict[str, torch.Tensor]) -> ReferenceTinyViT:
    """MobileSAM's encoder (its ``build_sam_vit_t`` arguments) holding segany's weights."""
    model = ReferenceTinyViT(
        img_size=1024,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )
    encoder = {k.removeprefix("image_encoder."): v for k, v in state.items()}
    missing = model.load_state_dict(encoder, strict=False).missing_keys
    assert set(missing) == {"norm_head.weight", "norm_head.bias", "head.weight", "head.bias"}
    return model.eval()


def encoders(with_vit_b: bool) -> dict[str, torch.nn.Module]:
    """Label -> an encoder taking ``(1, 3, 1024, 1024)`` float32 and returning the embedding."""
    mobile = seeded_model("segany", "vit_t")
    state = {k: v for k, v in mobile.state_dict().items() if k.startswith("image_encoder.")}
    reference = reference_tiny_vit(state)
    found = {
        "TinyViT reference fp32": _EmbeddingOf(reference),
        "TinyViT reference bf16 (cast)": _EmbeddingOf(copy.deepcopy(reference).to(torch.bfloat16)),
        "TinyViT segany fp32": optimize(copy.deepcopy(mobile), "fp32").image_encoder,
        "TinyViT segany bf16": optimize(mobile, "bf16").image_encoder,
    }
    if with_vit_b:
        vit_b = seeded_model("segany", "vit_b")
        found["ViT-B segany fp32"] = optimize(copy.deepcopy(vit_b), "fp32").image_encoder
        found["ViT-B segany bf16"] = optimize(vit_b, "bf16").image_encoder
    return found


class _EmbeddingOf(torch.nn.Module):
    """The reference returns (embedding, intermediate features); cast the input to its dtype."""

    def __init__(self, encoder: ReferenceTinyViT) -> None:
        super().__init__()
        self.encoder = encoder
        self.dtype = next(encoder.parameters()).dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.to(self.dtype))[0].float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-vit-b", action="store_true", help="TinyViT rows only")
    args = parser.parse_args()
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0))
    found = encoders(not args.no_vit_b)
    with torch.inference_mode():
        outputs = {label: encoder(x) for label, encoder in found.items()}
        calls = {label: (lambda e=encoder: e(x)) for label, encoder in found.items()}
        times = interleaved(calls, args.repeats)
    print(machine())
    base = times["TinyViT reference fp32"]
    vit_b = times.get("ViT-B segany fp32")
    print("| encoder | s | vs TinyViT reference fp32 | vs ViT-B segany fp32 | max abs diff |")
    print("|---|---|---|---|---|")
    for label, seconds in times.items():
        against = "ViT-B segany fp32" if label.startswith("ViT-B") else "TinyViT reference fp32"
        diff = (outputs[label] - outputs[against]).abs().max().item()
        versus_vit = f"{vit_b / seconds:.2f}x" if vit_b else ""
        print(f"| {label} | {seconds:.3f} | {base / seconds:.2f}x | {versus_vit} | {diff:.1e} |")


if __name__ == "__main__":
    main()
