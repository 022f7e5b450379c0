"""``segany engine prefill`` and ``segany engine auto``: the data engine's automatic gears."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import CliError
from .scale import quiet_ray, scale_options

if TYPE_CHECKING:
    from ..distributed import ScaleOptions
    from ..engine import Project
    from ..engine.schema import ModelVersionRow
    from ..modeling.sam import Sam


def _load(project: Project, args: argparse.Namespace) -> tuple[Sam, ModelVersionRow]:
    """``--model``/``--checkpoint``, else the project's newest version; loaded before its
    version is registered, so a model that cannot load leaves nothing behind."""
    from ..engine.models import load_gear_model

    return load_gear_model(
        project,
        args.model,
        args.checkpoint,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
    )


def _warn_unreadable(unreadable: list[tuple[str, str]]) -> None:
    for path, reason in unreadable:
        print(f"warning: {path}: {reason} (left pending)")


def run_prefill(args: argparse.Namespace) -> int:
    from ..engine import Project
    from ..engine.gear_queue import gear_queue
    from ..engine.prefill import run_prefill as prefill

    with Project.open(args.project) as project:
        with project.session() as session:
            todo = len(gear_queue(session, without_proposals=True).images)
        if todo == 0:
            print(f"{args.project}: no image to pre-fill")
            return 0
        model, version = _load(project, args)
        report = prefill(project, model, version.id)
    _warn_unreadable(report.unreadable)
    print(
        f"{args.project}: {report.prefilled} images pre-filled with {report.proposals} "
        f"proposals by model version {version.id} ({version.name}); "
        f"{report.none_confident} with no confident mask, {report.leased} held by annotators, "
        f"{len(report.unreadable)} unreadable"
    )
    return 0


def run_auto(args: argparse.Namespace) -> int:
    from ..automatic.settings import PRESETS, preset_for_model
    from ..engine import Project
    from ..engine.automatic_gear import GearJob, run_automatic_gear
    from ..engine.gear_queue import gear_queue

    if args.workers < 1:
        raise CliError(f"--workers must be at least 1, got {args.workers}")
    if args.preset not in PRESETS:
        raise CliError(f"unknown preset {args.preset!r}; known presets: {', '.join(PRESETS)}")
    options = scale_options(args)
    if options is not None:
        return _run_auto_on_ray(args, options)
    with Project.open(args.project) as project:
        with project.session() as session:
            todo = len(gear_queue(session).images)
        if todo == 0:
            print(f"{args.project}: every image is done; nothing to segment")
            return 0
        model, version = _load(project, args)
    preset = preset_for_model(args.preset, model)
    job = GearJob(
        project=args.project,
        weights=version.weights,
        model_version_id=version.id,
        generator={"preset": preset},
        device=args.device,
        precision=args.precision,
        compile=args.compile,
    )
    loaded = model if args.workers == 1 else None  # workers load their own
    del model
    report = run_automatic_gear(job, model=loaded, workers=args.workers)
    _warn_unreadable(report.unreadable)
    print(
        f"{args.project}: {report.segmented} images segmented ({report.masks} masks) by model "
        f"version {version.id} ({version.name}), preset {preset}; {report.already_done} done "
        f"meanwhile elsewhere, {report.leased} held by annotators, "
        f"{len(report.unreadable)} unreadable"
    )
    return 0


def _run_auto_on_ray(args: argparse.Namespace, options: ScaleOptions) -> int:
    """Gear 3 on Ray: the driver resolves the weights without loading them; each worker loads
    them, and the version is registered with the first image stored."""
    from ..distributed import ModelSpec
    from ..distributed.gear import count_pending, run_automatic_gear_on_ray
    from ..engine import Project
    from ..engine.models import gear_weights

    with Project.open(args.project) as project:
        with project.session() as session:
            todo = count_pending(session)
        if todo == 0:
            print(f"{args.project}: every image is done; nothing to segment")
            return 0
        weights = gear_weights(project, args.model, args.checkpoint)
    spec = ModelSpec(weights, None, args.device, args.precision, args.compile)
    with quiet_ray(args) as terminal:
        report = run_automatic_gear_on_ray(
            args.project, spec, args.preset, options, progress=terminal
        )
    _warn_unreadable(report.unreadable)
    model = (
        f"model version {report.version[0]} ({report.version[1]})" if report.version else weights
    )
    print(
        f"{args.project}: {report.segmented} images segmented ({report.masks} masks) by {model}, "
        f"preset {report.preset or args.preset}, on Ray with {options.workers} "
        f"worker{'s' if options.workers != 1 else ''}; "
        f"{report.already_done} done meanwhile elsewhere, {report.leased} held by annotators, "
        f"{len(report.unreadable)} unreadable"
    )
    return 0
