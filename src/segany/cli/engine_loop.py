"""``segany engine simulate`` and ``segany engine retrain``: the simulated annotator and the
retrain loop."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from . import CliError

if TYPE_CHECKING:
    from ..engine.ground_truth import Matches
    from ..engine.simulate import AnnotatorModel, SimulationReport


def run_simulate(args: argparse.Namespace) -> int:
    from ..engine import Project
    from ..engine.ground_truth import match_ground_truth, open_ground_truth
    from ..engine.models import load_gear_model
    from ..engine.simulate import AnnotatorModel, simulate
    from ..inference.predictor import Predictor

    if args.clicks_per_mask < 1:
        raise CliError(f"--clicks-per-mask {args.clicks_per_mask}: expected at least 1")
    if args.images is not None and args.images < 1:
        raise CliError(f"--images {args.images}: expected at least 1")
    with Project.open(args.project) as project:
        truths = open_ground_truth(args.ground_truth)  # bad ground truth fails before the model
        with project.session() as session:
            matches = match_ground_truth(session, truths)
        if not matches.by_image:
            raise CliError(
                f"{args.ground_truth}: none of its {len(truths)} images is in {args.project} "
                "(matched by content hash, or by file name and size)"
            )
        sam, version = load_gear_model(
            project, args.model, args.checkpoint, device=args.device, precision=args.precision
        )
        policy = AnnotatorModel(clicks_per_mask=args.clicks_per_mask)
        report = simulate(
            project,
            matches.by_image,
            Predictor(sam),
            version.id,
            gear=args.gear,
            annotator=args.annotator,
            model=policy,
            max_images=args.images,
            on_image=_progress if sys.stderr.isatty() else None,
        )
    if sys.stderr.isatty() and report.images:
        print(file=sys.stderr)  # end the progress line
    _print_simulation(args, report, policy, version.name, matches)
    return 0


def _progress(report: SimulationReport) -> None:
    print(f"\rimages annotated: {report.images}", end="", file=sys.stderr, flush=True)


def _print_simulation(
    args: argparse.Namespace,
    report: SimulationReport,
    policy: AnnotatorModel,
    model_name: str,
    matches: Matches,
) -> None:
    for name in report.unusable:
        print(f"warning: {name}: its size differs from the project image's; skipped")
    summary = report.summary(policy.target_iou)
    print(
        f"{args.project}: gear {args.gear} by {args.annotator!r} with model {model_name!r}: "
        f"{summary['images']} images finished ({len(matches.by_image)} have ground truth, "
        f"{len(matches.unmatched)} ground-truth images matched none)"
    )
    print(
        f"masks made with clicks: {summary['masks_made']}, objects skipped: {summary['skipped']}"
        + (
            f", proposals left: {summary['left']}, rejected: {summary['rejected']}, "
            f"corrected: {summary['corrected']}"
            if args.gear == 2
            else ""
        )
    )
    if report.made:
        print(
            f"per mask: {summary['mean_clicks']:.2f} clicks, IoU with ground truth "
            f"{summary['mean_iou']:.3f} ({summary['share_at_target']:.0%} at >= "
            f"{policy.target_iou}), {summary['seconds_per_mask']:.1f} s "
            f"(modelled: {policy.seconds_to_start:g} s + {policy.seconds_per_click:g} s per "
            f"click; measured compute {summary['compute_seconds_per_mask'] * 1000:.0f} ms)"
        )
    if report.images:
        print(f"per image: {summary['seconds_per_image']:.1f} s (modelled and measured, as above)")
    if report.lost:
        print(f"warning: {report.lost} images were taken over by another annotator meanwhile")


def _miou(values: dict[int, float] | None) -> str:
    if values is None:
        return "n/a"
    return ", ".join(f"{v:.3f} at {k} click{'s' * (k > 1)}" for k, v in values.items())


def run_retrain(args: argparse.Namespace) -> int:
    from ..engine import Project
    from ..engine.retrain import retrain

    with Project.open(args.project) as project:
        result = retrain(
            project,
            args.output,
            init=args.init,
            steps=args.steps,
            device=args.device,
            progress=True,
        )
    print(
        f"{args.project}: model version {result.version_id} {result.name!r} "
        f"(from version {result.base_id}) fine-tuned {result.steps} steps on "
        f"{result.train_masks} masks of {result.train_images} images -> {result.weights}"
    )
    if result.heldout_miou is None:
        print("held-out mIoU: none (no held-out image has accepted masks yet); stored as empty")
    else:
        print(
            f"held-out mIoU on {result.heldout_masks} masks of {result.heldout_images} images: "
            f"new {_miou(result.heldout_miou)}; base {_miou(result.base_heldout_miou)}"
        )
    return 0
