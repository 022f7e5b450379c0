"""The paper's data-engine figures (SAM §4) for one project, as a table.

What counts, precisely:

* **Finished work only.** A row counts the masks on *finished* images (an ``image_runs`` row
  from any gear); masks on images still being annotated are only in ``masks_by_status``.
  (Gear 2's open proposals become "accepted unchanged" when the image is finished, so counting
  unfinished images would bias the shares.)
* **Masks** are the accepted ones (status ``accepted``). Rejected and corrected proposals and
  undone masks are counted in their own columns; ``masks_by_status`` counts every mask of the
  project, finished images or not, by status (open proposals included).
* **Rows.** A mask belongs to the row of its own gear and model version (a gear-2 proposal to
  the prefill model, a person's mask to the model they clicked with, ``None`` when no model
  was recorded). Each gear has an "all versions" row and one row per version; the total row
  sums every gear.
* **Images** of a gear row: the images that gear finished, plus finished images holding an
  accepted mask of that gear. Of a version row: the images holding an accepted mask of that
  gear and version, plus the images that gear finished with that version recorded on the run
  (gear 3, so an image it left without masks still counts). The total: every finished image.
  ``masks_per_image`` = masks / images.
* **Clicks and seconds per mask**: the mean over the accepted masks that record them (the
  masks people made in gears 1 and 2, corrections included; ``human_masks`` counts them).
* **Model-made masks** (:func:`model_made`): gear 3's masks and gear 2's proposals (no
  annotator). ``accepted_unchanged`` = model-made masks accepted as they were, over the
  model-made masks decided (accepted, rejected or corrected). Gear 3's masks are accepted as
  written, so its share is 1 unless a later review changes that.
* **Agreement**: every accepted mask that corrects a proposal (``corrects_id``) against that
  proposal, IoU on the compressed RLEs (pycocotools, never decoded); the pair belongs to the
  proposal's row. ``iou_over_90`` / ``iou_over_75`` are the shares of pairs with IoU strictly
  above 0.9 / 0.75 (the paper: 94 % / 97 %).
* **automatic_share**: gear 3's masks over all counted masks (the paper: 99.1 %).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from pycocotools import mask as mask_utils
from sqlalchemy import case, false, func, select, union
from sqlalchemy.orm import Session, aliased

from .schema import MASK_STATUSES, ImageRow, ImageRunRow, MaskRow, ModelVersionRow
from .store import is_done

ALL = "all"  # the model of a gear's row over every version


def model_made(mask: Any = MaskRow) -> Any:
    """SQL condition: a mask a model made and no person drew: gear 3's, and gear 2's
    proposals (written without an annotator)."""
    return (mask.gear == 3) | ((mask.gear == 2) & mask.annotator.is_(None))


@dataclass
class Agreement:
    """IoU of corrections with the proposals they correct, as mergeable sums."""

    pairs: int = 0
    iou_sum: float = 0.0
    over_90: int = 0
    over_75: int = 0

    def add(self, iou: float) -> None:
        self.pairs += 1
        self.iou_sum += iou
        self.over_90 += iou > 0.9
        self.over_75 += iou > 0.75

    def merge(self, other: Agreement) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Tally:
    """Mask counts and sums of one row (sums, not means, so that rows add up)."""

    masks: int = 0
    rejected: int = 0
    corrected: int = 0
    undone: int = 0
    clicked: int = 0  # accepted masks with clicks recorded
    clicks: int = 0
    timed: int = 0  # accepted masks with seconds recorded
    seconds: float = 0.0
    decided: int = 0  # model-made masks accepted, rejected or corrected
    unchanged: int = 0  # model-made masks accepted as they were
    automatic: int = 0  # accepted gear-3 masks

    def merge(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _ratio(top: float, bottom: float) -> float | None:
    return top / bottom if bottom else None


@dataclass
class Row:
    """One line of the table: a gear's version (``model`` its name, or None when no model was
    recorded), a gear over all versions (``model`` = ``"all"``), or the total (``gear`` None)."""

    gear: int | None
    model: str | None
    images: int = 0
    tally: Tally = field(default_factory=Tally)
    agreement: Agreement = field(default_factory=Agreement)

    def to_dict(self) -> dict[str, Any]:
        t, a = self.tally, self.agreement
        return {
            "gear": self.gear,
            "model": self.model,
            "images": self.images,
            "masks": t.masks,
            "masks_per_image": _ratio(t.masks, self.images),
            "human_masks": t.clicked,
            "clicks_per_mask": _ratio(t.clicks, t.clicked),
            "seconds_per_mask": _ratio(t.seconds, t.timed),
            "proposals_decided": t.decided,
            "accepted_unchanged": _ratio(t.unchanged, t.decided),
            "rejected": t.rejected,
            "corrected": t.corrected,
            "undone": t.undone,
            "iou_pairs": a.pairs,
            "iou_mean": _ratio(a.iou_sum, a.pairs),
            "iou_over_90": _ratio(a.over_90, a.pairs),
            "iou_over_75": _ratio(a.over_75, a.pairs),
        }


@dataclass
class GearStats:
    gear: int
    all: Row
    versions: list[Row]


@dataclass
class ProjectStats:
    """Images by state, masks by status, and the table (gears with their versions, total)."""

    images: dict[str, int]
    masks_by_status: dict[str, int]
    gears: list[GearStats]
    total: Row

    @property
    def automatic_share(self) -> float | None:
        return _ratio(self.total.tally.automatic, self.total.tally.masks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "masks_by_status": self.masks_by_status,
            "automatic_share": self.automatic_share,
            "gears": [
                {
                    "gear": g.gear,
                    "all": g.all.to_dict(),
                    "versions": [v.to_dict() for v in g.versions],
                }
                for g in self.gears
            ],
            "total": self.total.to_dict(),
        }


# -- queries ---------------------------------------------------------------------------------
Key = tuple[int, int | None]  # (gear, model version id)


def image_counts(session: Session) -> dict[str, int]:
    """Images of the project: all, finished by some gear, pending, unreadable."""
    readable = ImageRow.error.is_(None)

    def count(*conditions: Any) -> int:
        return session.scalar(select(func.count(ImageRow.id)).where(*conditions)) or 0

    return {
        "total": count(),
        "done": count(readable, is_done(ImageRow.id)),
        "pending": count(readable, ~is_done(ImageRow.id)),
        "unreadable": count(~readable),
    }


def status_counts(session: Session) -> dict[str, int]:
    """Every mask of the project by status (finished images or not)."""
    query = select(MaskRow.status, func.count(MaskRow.id)).group_by(MaskRow.status)
    found = {status: count for status, count in session.execute(query)}
    return {status: int(found.get(status, 0)) for status in MASK_STATUSES}


def _tallies(session: Session) -> dict[Key, Tally]:
    """One aggregate query over the masks of finished images, grouped by gear and version."""
    accepted = MaskRow.status == "accepted"
    made = model_made()

    def where(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    columns = {
        "masks": where(accepted),
        "rejected": where(MaskRow.status == "rejected"),
        "corrected": where(MaskRow.status == "corrected"),
        "undone": where(MaskRow.status == "undone"),
        "clicked": func.count(case((accepted, MaskRow.clicks))),
        "clicks": func.coalesce(func.sum(case((accepted, MaskRow.clicks))), 0),
        "timed": func.count(case((accepted, MaskRow.seconds))),
        "seconds": func.coalesce(func.sum(case((accepted, MaskRow.seconds))), 0.0),
        "decided": where(made & MaskRow.status.in_(("accepted", "rejected", "corrected"))),
        "unchanged": where(made & accepted),
        "automatic": where(accepted & (MaskRow.gear == 3)),
    }
    query = (
        select(MaskRow.gear, MaskRow.model_version_id, *columns.values())
        .where(is_done(MaskRow.image_id))
        .group_by(MaskRow.gear, MaskRow.model_version_id)
    )
    out = {}
    for gear, version, *values in session.execute(query):
        out[(gear, version)] = Tally(**dict(zip(columns, values)))
    return out


def _image_count(session: Session, gear: int | None, version: Any = ALL) -> int:
    """Images of a row (see the module's docstring); ``gear`` None: every finished image."""
    if gear is None:
        return session.scalar(select(func.count(ImageRow.id)).where(is_done(ImageRow.id))) or 0
    runs = select(ImageRunRow.image_id).where(ImageRunRow.gear == gear)
    masks = select(MaskRow.image_id).where(
        MaskRow.gear == gear, MaskRow.status == "accepted", is_done(MaskRow.image_id)
    )
    if version is None:  # no model recorded: only masks say so (gear 1 and 2 runs never do)
        masks = masks.where(MaskRow.model_version_id.is_(None))
        runs = runs.where(false())
    elif version != ALL:
        masks = masks.where(MaskRow.model_version_id == version)
        runs = runs.where(ImageRunRow.model_version_id == version)
    both = union(runs, masks).subquery()
    return session.scalar(select(func.count()).select_from(both)) or 0


def _run_keys(session: Session) -> set[Key]:
    """(gear, version) of the runs that record a model (gear 3's)."""
    query = select(ImageRunRow.gear, ImageRunRow.model_version_id).where(
        ImageRunRow.model_version_id.is_not(None)
    )
    return {(gear, version) for gear, version in session.execute(query.distinct())}


def _rle(counts: str, height: int, width: int) -> dict[str, Any]:
    return {"size": [height, width], "counts": counts.encode("ascii")}


def rle_iou(a: dict[str, Any], b: dict[str, Any]) -> float:
    """IoU of two compressed COCO RLEs of one frame, without decoding them."""
    return float(mask_utils.iou([a], [b], [0])[0][0])


def _agreements(session: Session) -> dict[Key, Agreement]:
    """Each accepted correction against the proposal it corrects (finished images), streamed."""
    fix, proposal = aliased(MaskRow), aliased(MaskRow)
    query = (
        select(
            fix.counts,
            fix.height,
            fix.width,
            proposal.counts,
            proposal.gear,
            proposal.model_version_id,
        )
        .join(proposal, fix.corrects_id == proposal.id)
        .where(fix.status == "accepted", is_done(fix.image_id))
        .order_by(fix.id)
        .execution_options(yield_per=1000)
    )
    out: dict[Key, Agreement] = {}
    for fixed, height, width, proposed, gear, version in session.execute(query):
        iou = rle_iou(_rle(fixed, height, width), _rle(proposed, height, width))
        out.setdefault((gear, version), Agreement()).add(iou)
    return out


def _version_names(session: Session) -> dict[int, str]:
    query = select(ModelVersionRow.id, ModelVersionRow.name)
    return {version: name for version, name in session.execute(query)}


def _gear_stats(
    session: Session,
    gear: int,
    keys: Iterable[Key],
    tallies: dict[Key, Tally],
    agreements: dict[Key, Agreement],
    names: dict[int, str],
) -> GearStats:
    whole = Row(gear, ALL, _image_count(session, gear))
    versions = []
    for key in sorted(keys, key=lambda k: -1 if k[1] is None else k[1]):
        version = key[1]
        row = Row(gear, None if version is None else names.get(version, str(version)))
        row.images = _image_count(session, gear, version)
        row.tally.merge(tallies.get(key, Tally()))
        row.agreement.merge(agreements.get(key, Agreement()))
        whole.tally.merge(row.tally)
        whole.agreement.merge(row.agreement)
        versions.append(row)
    return GearStats(gear, whole, versions)


def project_stats(session: Session) -> ProjectStats:
    """The table for the project ``session`` is on (see the module's docstring)."""
    tallies = _tallies(session)
    agreements = _agreements(session)
    keys = set(tallies) | set(agreements) | _run_keys(session)
    gears_done = set(session.scalars(select(ImageRunRow.gear).distinct()))
    names = _version_names(session)
    total = Row(None, ALL, _image_count(session, None))
    gears = []
    for gear in sorted({k[0] for k in keys} | gears_done):
        stats = _gear_stats(
            session, gear, [k for k in keys if k[0] == gear], tallies, agreements, names
        )
        total.tally.merge(stats.all.tally)
        total.agreement.merge(stats.all.agreement)
        gears.append(stats)
    return ProjectStats(image_counts(session), status_counts(session), gears, total)
