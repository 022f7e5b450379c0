"""Gear 2's pre-fill: the confident masks of each unfinished image stored as proposals, which
annotators then accept, reject or correct before adding what is missing.

The paper found its confident masks with a Faster R-CNN box detector trained on the gear-1
masks. segany uses its own automatic generator instead, with strict filters (the ``prefill``
preset: predicted IoU > 0.95 and stability >= 0.97 against SA-1B's 0.88 and 0.95; the
``prefill-tiny`` variant for the tiny architecture, whose IoU predictions run lower), run with
the project's newest model version. That model is the one retraining keeps improving on the
project's own masks, so it plays the detector's role — a model that learns what this project
calls an object — without a second model, training recipe and set of weights to keep; and its
masks come straight from the segmenter that gear 1's annotators already correct, with no
box-to-mask step in between.

Only images no gear has finished and that have no proposals yet are touched; each image's
proposals are written in one transaction, so a run is resumable and a rerun writes nothing
twice. An image where nothing passes the filters gets no proposals and is tried again by the
next run (a newer model version may find some).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..automatic import SamAutomaticMaskGenerator
from ..automatic.settings import preset_for_model
from ..modeling.sam import Sam
from .gear_queue import gear_queue, read_gear_image
from .project import Project
from .store import NewMask, write_proposals

PRESET = "prefill"


@dataclass
class PrefillReport:
    prefilled: int = 0  # images given proposals by this run
    proposals: int = 0
    none_confident: int = 0  # images where no mask passed the filters
    leased: int = 0  # held by an annotator: left alone
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def prefill_generator(model: Sam) -> SamAutomaticMaskGenerator:
    """The generator with the pre-fill filters for this model's architecture."""
    return SamAutomaticMaskGenerator(model, preset=preset_for_model(PRESET, model))


def run_prefill(
    project: Project, model: Sam, model_version_id: int, *, progress: bool = True
) -> PrefillReport:
    """Pre-fill every unfinished image that has no proposals yet."""
    from tqdm import tqdm

    report = PrefillReport()
    with project.session() as session:
        queue = gear_queue(session, without_proposals=True)
    report.leased = queue.leased
    generator = prefill_generator(model) if queue.images else None
    for image in tqdm(queue.images, desc="pre-fill", unit="img", disable=not progress):
        pixels = read_gear_image(image)
        if isinstance(pixels, str):
            report.unreadable.append((image.path, pixels))
            continue
        assert generator is not None
        masks = [NewMask.from_record(a) for a in generator.generate_annotations(pixels)]
        if not masks:
            report.none_confident += 1
            continue
        with project.session() as session:
            if write_proposals(session, image.id, masks, model_version_id):
                report.prefilled += 1
                report.proposals += len(masks)
    return report
