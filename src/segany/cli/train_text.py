"""``segany train-text``: the text-prompt head of a model, trained on generated scenes with the
SAM weights frozen (:mod:`segany.text.training`)."""

from __future__ import annotations

import argparse
import time

from . import CliError, check_writable
from .common import add_model_options, load_model

EXAMPLES = """examples:
  # the bundled head's recipe (README "Text prompts"): about 15 minutes on 2 CPU cores
  segany train-text --output src/segany/weights/tiny-text.safetensors
  # the ablation: the prompt head trained on the text side directly
  segany train-text --side text --output runs/tiny-text-on-text.safetensors
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train-text",
        help="train a text-prompt head for a model on generated scenes",
        description="Text and object encoders contrastively, then the prompt head with SAM "
        "frozen; scenes of seeds 0..--scenes-1 (held-out evaluation uses seeds >= 1,000,000).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", required=True, help="the head's .safetensors file")
    parser.add_argument("--scenes", type=int, default=600, help="generated training scenes")
    parser.add_argument("--encoder-steps", type=int, default=600)
    parser.add_argument("--head-steps", type=int, default=1000)
    parser.add_argument(
        "--side",
        choices=("image", "text"),
        default="image",
        help="what feeds the prompt head in training: the object side (the paper) or phrases",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    add_model_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..text.head import TextPromptModel
    from ..text.training import collect_objects, train_encoders, train_prompt_head
    from ..text.weights import save_text_head

    if min(args.scenes, args.encoder_steps, args.head_steps) < 1:
        raise CliError("--scenes, --encoder-steps and --head-steps must be at least 1")
    check_writable(args.output)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sam = load_model(args)
    start = time.perf_counter()

    def progress(stage: str, every: int):
        def log(step: int, loss: float) -> None:
            if step % every == 0:
                print(f"{stage} step {step}: loss {loss:.4f} ({time.perf_counter() - start:.0f} s)")

        return log

    table = collect_objects(sam, range(args.scenes))
    print(
        f"{len(table.scene)} objects in {args.scenes} scenes ({time.perf_counter() - start:.0f} s)"
    )
    model = TextPromptModel(feature_dim=table.features.shape[1])
    train_encoders(model, table, args.encoder_steps, seed=args.seed, log=progress("encoders", 100))
    last = train_prompt_head(
        sam,
        model,
        table,
        args.head_steps,
        side=args.side,
        seed=args.seed,
        log=progress("head", 100),
    )
    info = {
        "model": args.model,
        "scenes": args.scenes,
        "encoder_steps": args.encoder_steps,
        "head_steps": args.head_steps,
        "side": args.side,
        "seed": args.seed,
    }
    save_text_head(model, args.output, info)
    print(f"head loss {last:.4f}; wrote {args.output} ({time.perf_counter() - start:.0f} s)")
    return 0
