"""The simulated annotator: gears 1 and 2 measured without people. It takes images from the
same :class:`AnnotationDesk` queue as the browser (leases, accept, reject, finish), clicks with
the evaluation protocol's policy (the first click at the object's centre, each next one at the
centre of the larger error) through an :class:`InteractiveSession`, and compares with ground
truth where a person would use their eyes.

Time is a model, not a measurement: the paper's 34 -> 14 s per mask came from people. A mask
costs ``seconds_to_start + seconds_per_click * clicks`` of modelled human time plus the
measured compute time of its clicks; a reviewed gear-2 proposal costs ``seconds_per_review``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils
from sqlalchemy import select

from ..evaluate.clicks import centre_click, next_click
from ..evaluate.protocol import mask_iou
from ..formats.images import read_image
from ..formats.rle import encode_coco_rle
from ..inference.predictor import Predictor
from ..inference.session import InteractiveSession
from .annotation import AnnotationDesk, ImageTask, LeaseLostError, NotAllowedError
from .ground_truth import TruthImage
from .project import Project
from .schema import ImageRow
from .store import NewMask, is_done, is_prefilled, row_rle

CHECKOUT_CHUNK = 500  # image ids offered to one checkout (keeps the SQL IN list short)


@dataclass(frozen=True)
class AnnotatorModel:
    """How the simulated annotator decides, and the modelled human time (seconds)."""

    clicks_per_mask: int = 5
    target_iou: float = 0.9  # stop clicking once the mask is this good
    min_iou: float = 0.5  # still below this when the clicks run out: skip the object
    keep_iou: float = 0.9  # gear 2: a proposal this close to an object is left as it is
    overlap_iou: float = 0.3  # gear 2: a proposal below this matches nothing and is rejected
    seconds_to_start: float = 4.0  # find the object, aim, accept
    seconds_per_click: float = 2.0  # with 5 clicks a mask costs 14 s, the paper's late gear 1
    seconds_per_review: float = 1.0  # gear 2: look at one proposal, leave or reject it

    def human_seconds(self, clicks: int) -> float:
        return self.seconds_to_start + self.seconds_per_click * clicks


@dataclass(frozen=True)
class Outcome:
    """One object clicked: the best ``(H, W)`` mask reached, its IoU with the ground truth,
    the clicks spent and the measured compute seconds."""

    mask: np.ndarray
    iou: float
    clicks: int
    compute_seconds: float


def click_object(session: InteractiveSession, truth: np.ndarray, model: AnnotatorModel) -> Outcome:
    """Click on ``truth`` (``(H, W)`` bool) until the mask reaches ``target_iou``, no error is
    left or the clicks run out; the best mask seen is kept (a person would undo back to it)."""
    session.reset()
    clicked = np.zeros_like(truth)
    x, y = centre_click(truth)
    positive = True
    best: tuple[float, np.ndarray] | None = None
    compute, clicks = 0.0, 0
    while clicks < model.clicks_per_mask:
        clicked[y, x] = True
        tick = time.perf_counter()
        session.click(x, y, positive)
        compute += time.perf_counter() - tick
        clicks += 1
        mask = session.mask
        assert mask is not None
        iou = mask_iou(mask, truth)
        if best is None or iou > best[0]:
            best = (iou, mask)
        if iou >= model.target_iou:
            break
        click = next_click(truth, mask, clicked)
        if click is None:
            break
        x, y, label = click
        positive = bool(label)
    assert best is not None
    return Outcome(best[1], best[0], clicks, compute)


# -- gear 2: what to do with each proposal ---------------------------------------------------
def _coco_rles(rles: Sequence[dict]) -> list[dict]:
    return [
        {
            "size": r["size"],
            "counts": r["counts"].encode() if isinstance(r["counts"], str) else r["counts"],
        }
        for r in rles
    ]


def iou_matrix(first: Sequence[dict], second: Sequence[dict]) -> np.ndarray:
    """``(len(first), len(second))`` IoUs of two lists of COCO RLEs, computed on the RLEs."""
    if not first or not second:
        return np.zeros((len(first), len(second)))
    return np.asarray(
        mask_utils.iou(_coco_rles(first), _coco_rles(second), [0] * len(second))
    ).reshape(len(first), len(second))


@dataclass
class Review:
    """Gear 2's plan for one image: proposals left, rejected, corrected (proposal id, object),
    and the objects with no proposal, to add with clicks."""

    left: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    corrected: list[tuple[int, int]] = field(default_factory=list)
    added: list[int] = field(default_factory=list)


def review_proposals(
    proposal_ids: Sequence[int], ious: np.ndarray, objects: Sequence[int], model: AnnotatorModel
) -> Review:
    """Pair proposals with ground-truth ``objects`` (``ious``: proposals x objects), best IoU
    first, one to one. A pair at ``keep_iou`` or above is left; one between ``overlap_iou`` and
    ``keep_iou`` is corrected; an unpaired proposal is rejected, an unpaired object added."""
    review = Review()
    pairs = sorted(
        ((ious[p, o], p, o) for p in range(len(proposal_ids)) for o in range(len(objects))),
        reverse=True,
    )
    used_p: set[int] = set()
    used_o: set[int] = set()
    for iou, p, o in pairs:
        if iou < model.overlap_iou or p in used_p or o in used_o:
            continue
        used_p.add(p)
        used_o.add(o)
        if iou >= model.keep_iou:
            review.left.append(proposal_ids[p])
        else:
            review.corrected.append((proposal_ids[p], objects[o]))
    review.rejected = [pid for p, pid in enumerate(proposal_ids) if p not in used_p]
    review.added = [obj for o, obj in enumerate(objects) if o not in used_o]
    return review


# -- the run ---------------------------------------------------------------------------------
@dataclass
class SimulationReport:
    """What the simulated annotator did, with per-mask figures of the masks it made."""

    gear: int
    images: int = 0
    left: int = 0
    rejected: int = 0
    corrected: int = 0
    skipped: int = 0  # objects given up on (still below min_iou after every click)
    lost: int = 0  # images taken over by another annotator meanwhile
    unusable: list[str] = field(default_factory=list)  # images whose size differs from the truth
    clicks: list[int] = field(default_factory=list)
    ious: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # modelled human + measured compute
    compute_seconds: list[float] = field(default_factory=list)
    image_seconds: list[float] = field(default_factory=list)

    @property
    def made(self) -> int:
        """Masks made with clicks (gear 1: every accepted mask; gear 2: corrections and additions)."""
        return len(self.clicks)

    def summary(self, target_iou: float) -> dict[str, float | int]:
        mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
        return {
            "gear": self.gear,
            "images": self.images,
            "masks_made": self.made,
            "left": self.left,
            "rejected": self.rejected,
            "corrected": self.corrected,
            "skipped": self.skipped,
            "lost": self.lost,
            "mean_clicks": mean(self.clicks),
            "mean_iou": mean(self.ious),
            "share_at_target": mean([i >= target_iou for i in self.ious]),
            "seconds_per_mask": mean(self.seconds),
            "compute_seconds_per_mask": mean(self.compute_seconds),
            "seconds_per_image": mean(self.image_seconds),
        }


def client_key(image_id: int, gear: int, index: int) -> str:
    """The key of the mask made for ground-truth object ``index``: a rerun (or another
    simulated annotator taking the image over) never stores it twice."""
    return f"simulate:{image_id}:{gear}:{index}"


@dataclass
class _Annotator:
    """One simulated person at the desk, with the model they click with."""

    desk: AnnotationDesk
    name: str
    predictor: Predictor
    model_version_id: int | None
    model: AnnotatorModel
    report: SimulationReport

    def make(
        self,
        task: ImageTask,
        session: InteractiveSession,
        truth: np.ndarray,
        key: str,
        corrects_id: int | None = None,
    ) -> float:
        """Click one object and accept it (or skip it); returns the modelled seconds spent."""
        outcome = click_object(session, truth, self.model)
        seconds = self.model.human_seconds(outcome.clicks) + outcome.compute_seconds
        if outcome.iou < self.model.min_iou:
            self.report.skipped += 1
            if corrects_id is not None:  # the proposal is no good and no fix was found
                self.desk.reject(self.name, task.image_id, corrects_id)
                self.report.rejected += 1
            return seconds
        self.desk.accept(
            self.name,
            task.image_id,
            NewMask.from_mask(outcome.mask),
            clicks=outcome.clicks,
            seconds=seconds,
            model_version_id=self.model_version_id,
            client_key=key,
            corrects_id=corrects_id,
        )
        report = self.report
        report.corrected += corrects_id is not None
        report.clicks.append(outcome.clicks)
        report.ious.append(outcome.iou)
        report.seconds.append(seconds)
        report.compute_seconds.append(outcome.compute_seconds)
        return seconds

    # long: one image, start to finish, in the order a person works
    def annotate(self, task: ImageTask, truths: np.ndarray) -> None:
        """Annotate one leased image against its ``(M, H, W)`` ground truth and finish it."""
        tick = time.perf_counter()
        embedding = self.predictor.embed(read_image(task.path))
        seconds = time.perf_counter() - tick
        session = InteractiveSession(self.predictor, embedding)
        gear = task.gear
        done = {m.client_key for m in task.accepted}
        # the most prominent objects first, as the paper's annotators were asked to work
        order = [
            int(i)
            for i in np.argsort(-truths.reshape(len(truths), -1).sum(1), kind="stable")
            if truths[i].any() and client_key(task.image_id, gear, int(i)) not in done
        ]
        if gear == 1:
            work = [(i, None) for i in order]
        else:
            rles = [encode_coco_rle(truths[i]) for i in order]
            ious = iou_matrix([row_rle(p) for p in task.proposals], rles)
            review = review_proposals([p.id for p in task.proposals], ious, order, self.model)
            for proposal_id in review.rejected:
                self.desk.reject(self.name, task.image_id, proposal_id)
            self.report.left += len(review.left)
            self.report.rejected += len(review.rejected)
            seconds += self.model.seconds_per_review * len(task.proposals)
            fixes = {o: p for p, o in review.corrected}
            work = [(i, fixes.get(i)) for i in order if i in fixes or i in review.added]
        for index, corrects_id in work:
            key = client_key(task.image_id, gear, index)
            seconds += self.make(task, session, truths[index], key, corrects_id)
        self.desk.finish(self.name, task.image_id, seconds=seconds)
        self.report.images += 1
        self.report.image_seconds.append(seconds)


def candidate_images(project: Project, gear: int, images: Sequence[int]) -> list[int]:
    """Of ``images``, those not finished and of ``gear`` (2: pre-filled; 1: not)."""
    prefilled = is_prefilled(ImageRow.id)
    query = select(ImageRow.id).where(
        ImageRow.error.is_(None), ~is_done(ImageRow.id), prefilled if gear == 2 else ~prefilled
    )
    with project.session() as session:
        wanted = set(images)
        return sorted(i for i in session.scalars(query) if i in wanted)


def simulate(
    project: Project,
    truths: Mapping[int, TruthImage],
    predictor: Predictor,
    model_version_id: int | None,
    *,
    gear: int,
    annotator: str = "simulated",
    model: AnnotatorModel = AnnotatorModel(),
    max_images: int | None = None,
    on_image: Callable[[SimulationReport], None] | None = None,
) -> SimulationReport:
    """Annotate the project's gear-``gear`` images that have ground truth (``truths``: project
    image id -> its truth), one leased image at a time, until none is left or ``max_images``
    are finished."""
    if gear not in (1, 2):
        raise ValueError(f"gear {gear}: only gears 1 and 2 have annotators")
    report = SimulationReport(gear)
    person = _Annotator(
        AnnotationDesk(project), annotator, predictor, model_version_id, model, report
    )
    remaining = candidate_images(project, gear, list(truths))
    while remaining and (max_images is None or report.images < max_images):
        chunk = remaining[:CHECKOUT_CHUNK]
        task = person.desk.checkout(annotator, among=chunk)
        if task is None:  # the rest of this chunk is done or held by others
            remaining = remaining[CHECKOUT_CHUNK:]
            continue
        remaining.remove(task.image_id)
        truth = truths[task.image_id]
        if task.gear != gear or (task.height, task.width) != (truth.height, truth.width):
            if task.gear == gear:
                report.unusable.append(truth.file_name)
            person.desk.release(annotator, task.image_id)
            continue
        try:
            person.annotate(task, truth.load_masks())
        except (LeaseLostError, NotAllowedError):
            report.lost += 1
            continue
        if on_image is not None:
            on_image(report)
    return report
