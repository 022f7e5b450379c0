"""Segment everything: the automatic mask generator.

A grid of single-point prompts over the image (and optionally over zoomed crops), three masks
per point, filtered by predicted IoU, stability and crop edges, de-duplicated by box NMS within
and across crops, optionally cleaned of small holes and islands. The records are the official
``SamAutomaticMaskGenerator``'s, number for number.

Where the time goes, and what segany does about it (see ``BENCHMARKS.md``):

- the decoder runs per point against one shared image embedding: :class:`SharedImageDecoder` computes
  the image side once and folds the attention projections into the prompt side;
- the predicted-IoU filter does not depend on resolution, so it runs first: the mask head and
  the upscaling run only for the masks that passed it;
- stability needs the upscaled logits to give the official answer, but every upscaled logit is
  a convex combination of a few low-res ones, which bounds the score from the low-res logits:
  masks whose bound is under the threshold are dropped without upscaling (the same answer,
  provably: :class:`~segany.automatic.masks.UpscaleFootprint`); the rest are upscaled a few at a time
  and dropped once run-length encoded, so memory is bounded by a handful of full-size masks,
  not by 3 x ``points_per_batch``;
- run-length encoding places crop masks in the image frame arithmetically, without padding.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_area

from ..fast.shared_decoder import SharedImage, SharedImageDecoder, Workspace
from ..fast.upscale import upscale_logits
from ..inference.embedding import check_image
from ..inference.predictor import Predictor
from ..inference.transforms import scale_coords
from ..modeling.sam import Sam
from .masks import (
    UpscaleFootprint,
    box_xyxy_to_xywh,
    build_all_layer_point_grids,
    coco_encode_rle,
    generate_crop_boxes,
    is_box_near_crop_edge,
    masks_to_boxes,
    masks_to_rle_counts,
    nms,
    remove_small_regions,
    rle_to_mask,
    stability_score,
)

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

# Settings of the paper's SA-1B generation (Kirillov et al. 2023, appendix B): a 32x32 grid on
# the image, 2x2 crops with 16x16 and 4x4 crops with 8x8 grids, holes and islands under 100 px
# cleaned up, masks covering 95% of the image or more dropped. The IoU (0.88) and stability
# (0.95) thresholds and the NMS thresholds (0.7) are the defaults already.
PRESETS: dict[str, dict[str, Any]] = {
    "sa1b": {
        "points_per_side": 32,
        "crop_n_layers": 2,
        "crop_n_points_downscale_factor": 2,
        "min_mask_region_area": 100,
        "max_mask_area_fraction": 0.95,
    },
    # the bundled demonstration model predicts its IoU less confidently than SAM
    "tiny": {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.8},
}

# Work sizes, in floats per tensor, whatever the model and image size. The transformer holds a
# few (N, D) image-token tensors per prompt: 6 prompts of 4096 x 256 tokens (24 MiB), the mask
# head about 3 per prompt, 4 prompts at a time; they live in a Workspace reused by every batch.
# On CPU small batches are faster (2-core benchmark machine, 1024 ViT-B prompts: 15 s in
# batches of 64, 9.5-10 s in batches of 6): a fresh tensor of hundreds of MiB is new pages the
# kernel faults in and zeroes each batch, and one of a few tens of MiB stays in the L3 cache
# between the passes of a block. The upscaling holds a padded square and a crop per mask.
DECODE_BUDGET = 6 * 2**20
MASK_HEAD_BUDGET = 4 * 2**20
UPSCALE_BUDGET = 2**24
CANDIDATE_GROUP = 64  # low-res masks (256 KiB each) gathered before the stability stage


@dataclass
class MaskTable:
    """Candidate masks as typed columns, one row per mask.

    ``counts`` uncompressed RLE counts (int64 arrays) in the image frame, ``boxes`` ``(N, 4)``
    int64 XYXY and ``points`` in the crop frame until the crop is done, in the image frame after;
    ``areas`` ``(N,)`` int64, ``iou`` and ``stability`` ``(N,)`` float32, ``points`` ``(N, 2)``
    float64 prompt coordinates, ``crop_boxes`` ``(N, 4)`` int64 XYXY.
    """

    counts: list[np.ndarray]
    boxes: Tensor
    areas: Tensor
    iou: Tensor
    stability: Tensor
    points: Tensor
    crop_boxes: Tensor

    def __post_init__(self) -> None:
        # every column must describe the same masks: a misaligned row would pair one object's
        # mask with another's box and area
        lengths = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        if len(set(lengths.values())) > 1:
            raise AssertionError(f"MaskTable columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.counts)

    def select(self, index: Tensor) -> MaskTable:
        """The rows ``index`` (bool mask or integer indices, in that order)."""
        index = index.cpu()
        if index.dtype == torch.bool:
            index = index.nonzero()[:, 0]
        rows = index.tolist()
        return MaskTable(
            counts=[self.counts[i] for i in rows],
            **{
                f.name: getattr(self, f.name)[index.to(getattr(self, f.name).device)]
                for f in fields(self)
                if f.name != "counts"
            },
        )

    @staticmethod
    def cat(tables: Sequence[MaskTable]) -> MaskTable:
        """Rows of all ``tables`` in order."""
        if not tables:
            return MaskTable.empty()
        return MaskTable(
            counts=[c for t in tables for c in t.counts],
            **{
                f.name: torch.cat([getattr(t, f.name) for t in tables])
                for f in fields(MaskTable)
                if f.name != "counts"
            },
        )

    @staticmethod
    def empty() -> MaskTable:
        return MaskTable(
            counts=[],
            boxes=torch.zeros(0, 4, dtype=torch.int64),
            areas=torch.zeros(0, dtype=torch.int64),
            iou=torch.zeros(0),
            stability=torch.zeros(0),
            points=torch.zeros(0, 2, dtype=torch.float64),
            crop_boxes=torch.zeros(0, 4, dtype=torch.int64),
        )


@dataclass(frozen=True)
class _Crop:
    """One crop of the image: its XYXY box, crop layer, and the image size."""

    box: list[int]
    layer: int
    image_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        return y1 - y0, x1 - x0


@dataclass(frozen=True)
class _CropWork:
    """What the batches of one crop share: the crop, its decoder inputs, its resized size and
    the footprint of the upscaling."""

    crop: _Crop
    shared: SharedImage
    input_size: tuple[int, int]
    footprint: UpscaleFootprint


class SamAutomaticMaskGenerator:
    """Masks for everything in an image, with the official generator's settings and records.

    ``points_per_side`` (or explicit ``point_grids``, one ``(n, 2)`` grid in [0, 1] per crop
    layer) sets the prompts; ``points_per_batch`` bounds how many are decoded together (the
    memory knob); masks are kept if their predicted IoU is ``> pred_iou_thresh`` and their
    stability ``>= stability_score_thresh`` (a threshold ``<= 0`` disables that filter);
    ``box_nms_thresh``/``crop_nms_thresh`` de-duplicate within/across crops; ``crop_n_layers``
    adds layers of ``(2**i)**2`` zoomed crops overlapping by ``crop_overlap_ratio`` with
    ``points_per_side / crop_n_points_downscale_factor**i`` points per side;
    ``min_mask_region_area`` > 0 fills holes and removes islands smaller than that.
    ``output_mode`` is ``"binary_mask"``, ``"uncompressed_rle"`` or ``"coco_rle"``.

    segany additions: ``max_mask_area_fraction`` drops masks covering at least that fraction of
    the image (the SA-1B rule, 0.95); ``preset="sa1b"`` takes the paper's SA-1B settings
    (:data:`PRESETS`) for every argument left at its default.
    """

    def __init__(
        self,
        model: Sam,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        *,
        max_mask_area_fraction: float | None = None,
        preset: str | None = None,
    ) -> None:
        given = {name: value for name, value in locals().items() if name not in ("self", "model")}
        settings = _apply_preset(given)
        self.points_per_side: int | None = settings["points_per_side"]
        self.points_per_batch: int = settings["points_per_batch"]
        self.pred_iou_thresh: float = settings["pred_iou_thresh"]
        self.stability_score_thresh: float = settings["stability_score_thresh"]
        self.stability_score_offset: float = settings["stability_score_offset"]
        self.box_nms_thresh: float = settings["box_nms_thresh"]
        self.crop_n_layers: int = settings["crop_n_layers"]
        self.crop_nms_thresh: float = settings["crop_nms_thresh"]
        self.crop_overlap_ratio: float = settings["crop_overlap_ratio"]
        self.crop_n_points_downscale_factor: int = settings["crop_n_points_downscale_factor"]
        self.min_mask_region_area: int = settings["min_mask_region_area"]
        self.output_mode: str = settings["output_mode"]
        self.max_mask_area_fraction: float | None = settings["max_mask_area_fraction"]
        self.preset: str | None = preset
        self.point_grids = _check_settings(settings)
        self.predictor = Predictor(model)
        self.decoder = SharedImageDecoder(model)

    @property
    def model(self) -> Sam:
        return self.predictor.model

    # --- public API -----------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Records for every mask found in an ``(H, W, 3)`` uint8 RGB image.

        Each record: ``segmentation`` (per ``output_mode``), ``area`` (int), ``bbox`` XYWH ints,
        ``predicted_iou``, ``point_coords`` ``[[x, y]]``, ``stability_score``, ``crop_box`` XYWH.
        """
        check_image(image)
        return self._records(self.generate_table(image), image.shape[:2])

    def generate_batch(
        self, images: Iterable[np.ndarray | str | Path], progress: bool = True
    ) -> list[list[dict[str, Any]]]:
        """:meth:`generate` for many images (arrays, or paths of image files), with a progress
        bar; one list of records per image, in order."""
        return list(self.iter_generate(images, progress=progress))

    def iter_generate(
        self, images: Iterable[np.ndarray | str | Path], progress: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        """Lazy :meth:`generate_batch`: yields each image's records as soon as they are ready,
        so a caller can write them out and keep memory flat."""
        from tqdm.auto import tqdm

        total = len(images) if hasattr(images, "__len__") else None  # type: ignore[arg-type]
        for item in tqdm(images, total=total, disable=not progress, desc="segment", unit="img"):
            yield self.generate(_load_image(item))

    @torch.inference_mode()
    def generate_table(self, image: np.ndarray) -> MaskTable:
        """All masks of an image as a :class:`MaskTable` (before output encoding)."""
        check_image(image)
        size = (image.shape[0], image.shape[1])
        boxes, layers = generate_crop_boxes(size, self.crop_n_layers, self.crop_overlap_ratio)
        crops = [_Crop(box, layer, size) for box, layer in zip(boxes, layers)]
        crops = [crop for crop in crops if min(crop.size) > 0]  # tiny images: empty crops
        table = MaskTable.cat([self._process_crop(image, crop) for crop in crops])
        if len(crops) > 1 and len(table):  # prefer masks from smaller crops
            scores = 1 / box_area(table.crop_boxes)
            table = table.select(nms(table.boxes, scores, self.crop_nms_thresh))
        if self.max_mask_area_fraction is not None and len(table):
            limit = self.max_mask_area_fraction * size[0] * size[1]
            table = table.select(table.areas < limit)
        if self.min_mask_region_area > 0 and len(table):
            table = clean_small_regions(
                table,
                size,
                self.min_mask_region_area,
                max(self.box_nms_thresh, self.crop_nms_thresh),
            )
        return table

    # --- pipeline -------------------------------------------------------------------------------

    def _process_crop(self, image: np.ndarray, crop: _Crop) -> MaskTable:
        x0, y0, x1, y1 = crop.box
        embedding = self.predictor.embed(image[y0:y1, x0:x1])
        h, w = crop.size
        work = _CropWork(
            crop=crop,
            shared=self.decoder.image(embedding.features),
            input_size=embedding.input_size,
            footprint=UpscaleFootprint.of(
                self.predictor.low_res_size, self.model.img_size, embedding.input_size, (h, w)
            ),
        )
        points = self.point_grids[crop.layer] * np.array([[w, h]], dtype=np.float64)
        model_points = scale_coords(
            torch.as_tensor(points, dtype=torch.float32, device=self.model.device),
            (h, w),
            self.model.img_size,
        )
        labels = torch.ones(len(points), 1, dtype=torch.int64, device=self.model.device)
        sparse, _ = self.model.prompt_encoder(
            points=(model_points[:, None], labels), boxes=None, masks=None
        )
        table = MaskTable.cat(
            [
                self._filter_candidates(work, *candidates)
                for candidates in self._candidates(work, sparse, points)
            ]
        )
        if not len(table):
            return table
        table = table.select(nms(table.boxes, table.iou, self.box_nms_thresh))
        offset = torch.tensor([x0, y0, x0, y0])
        table.boxes = table.boxes + offset
        table.points = table.points + offset[:2].double()
        return table

    def _candidates(
        self, work: _CropWork, sparse: Tensor, points: np.ndarray
    ) -> Iterator[tuple[Tensor, Tensor, np.ndarray]]:
        """Decode the crop's prompts a chunk at a time; yield the masks that pass the IoU filter
        as ``(M, 4h, 4w)`` low-res logits, ``(M,)`` IoU and ``(M, 2)`` points, gathered into
        groups of about :data:`CANDIDATE_GROUP` (point-major, like the official order)."""
        tokens = work.shared.keys.numel()
        step = max(1, min(self.points_per_batch, DECODE_BUDGET // tokens))
        head_step = max(1, MASK_HEAD_BUDGET // tokens)
        pending: list[tuple[Tensor, Tensor, np.ndarray]] = []
        workspace = Workspace()  # each batch reuses the previous one's image-token buffers
        for start in range(0, len(points), step):
            decoded = self.decoder.decode(
                work.shared, sparse[start : start + step], workspace=workspace
            )
            keep = decoded.iou > self.pred_iou_thresh
            if self.pred_iou_thresh <= 0.0:
                keep = torch.ones_like(keep)
            prompt_index, mask_index = keep.nonzero(as_tuple=True)
            if len(prompt_index):
                needed, row = torch.unique(prompt_index, return_inverse=True)
                low_res = torch.cat(
                    [
                        self.decoder.masks(
                            decoded,
                            needed[i : i + head_step],
                            work.footprint.extent,
                            workspace=workspace,
                        )
                        for i in range(0, len(needed), head_step)
                    ]
                )[row, mask_index]
                chosen = points[start + prompt_index.cpu().numpy()]
                pending.append((low_res, decoded.iou[prompt_index, mask_index], chosen))
            if sum(len(p[0]) for p in pending) >= CANDIDATE_GROUP:
                yield _concat(pending)
                pending = []
        if pending:
            yield _concat(pending)

    def _filter_candidates(
        self, work: _CropWork, low_res: Tensor, iou: Tensor, points: np.ndarray
    ) -> MaskTable:
        """Drop masks whose stability provably fails without upscaling them, then upscale and
        filter the rest a few at a time."""
        if self.stability_score_thresh > 0.0:
            bound = work.footprint.stability_upper_bound(
                low_res, self.model.mask_threshold, self.stability_score_offset
            )
            hopeful = bound >= self.stability_score_thresh
            low_res, iou, points = low_res[hopeful], iou[hopeful], points[hopeful.cpu().numpy()]
        h, w = work.crop.size
        step = max(1, UPSCALE_BUDGET // (self.model.img_size**2 + h * w))
        return MaskTable.cat(
            [
                self._filter_masks(
                    work, low_res[i : i + step], iou[i : i + step], points[i : i + step]
                )
                for i in range(0, len(low_res), step)
            ]
        )

    def _filter_masks(
        self, work: _CropWork, low_res: Tensor, iou: Tensor, points: np.ndarray
    ) -> MaskTable:
        """Upscale ``(M, 4h, 4w)`` logits to the crop, filter by stability and crop edges, and
        encode what is left."""
        crop = work.crop
        threshold = self.model.mask_threshold
        logits = upscale_logits(low_res[:, None], self.model.img_size, work.input_size, crop.size)
        logits = logits[:, 0]
        stability = stability_score(logits, threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            keep = stability >= self.stability_score_thresh
            logits, stability, iou, points = (
                logits[keep],
                stability[keep],
                iou[keep],
                points[keep.cpu().numpy()],
            )
        masks = logits > threshold
        del logits
        boxes = masks_to_boxes(masks)
        image_h, image_w = crop.image_size
        keep = ~is_box_near_crop_edge(boxes, crop.box, [0, 0, image_w, image_h])
        if not bool(keep.all()):
            masks, boxes, stability, iou = masks[keep], boxes[keep], stability[keep], iou[keep]
            points = points[keep.cpu().numpy()]
        count = len(masks)
        return MaskTable(
            counts=masks_to_rle_counts(masks, (crop.box[0], crop.box[1]), crop.image_size),
            boxes=boxes.cpu(),
            areas=masks.view(torch.int8).flatten(1).sum(1, dtype=torch.int64).cpu(),
            iou=iou.float().cpu(),
            stability=stability.float().cpu(),
            points=torch.as_tensor(points, dtype=torch.float64).reshape(count, 2),
            crop_boxes=torch.tensor([crop.box] * count, dtype=torch.int64).reshape(count, 4),
        )

    # --- output ---------------------------------------------------------------------------------

    def _records(self, table: MaskTable, size: tuple[int, int]) -> list[dict[str, Any]]:
        h, w = size
        boxes = box_xyxy_to_xywh(table.boxes).tolist()
        crop_boxes = box_xyxy_to_xywh(table.crop_boxes).tolist()
        records = []
        for i, counts in enumerate(table.counts):
            rle = {"size": [h, w], "counts": counts.tolist()}
            if self.output_mode == "binary_mask":
                segmentation: Any = rle_to_mask(rle)
            elif self.output_mode == "coco_rle":
                segmentation = coco_encode_rle(rle)
            else:
                segmentation = rle
            records.append(
                {
                    "segmentation": segmentation,
                    "area": int(table.areas[i]),
                    "bbox": boxes[i],
                    "predicted_iou": float(table.iou[i]),
                    "point_coords": [table.points[i].tolist()],
                    "stability_score": float(table.stability[i]),
                    "crop_box": crop_boxes[i],
                }
            )
        return records


def _concat(parts: list[tuple[Tensor, Tensor, np.ndarray]]) -> tuple[Tensor, Tensor, np.ndarray]:
    return (
        torch.cat([p[0] for p in parts]),
        torch.cat([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def clean_small_regions(
    table: MaskTable, size: tuple[int, int], min_area: int, nms_thresh: float
) -> MaskTable:
    """Fill holes and remove islands smaller than ``min_area`` in every mask, then box NMS at
    ``nms_thresh`` preferring masks that needed no change."""
    h, w = size
    counts, boxes, areas, unchanged = [], [], [], []
    for i, rle_counts in enumerate(table.counts):
        mask = rle_to_mask({"size": [h, w], "counts": rle_counts})
        mask, filled = remove_small_regions(mask, min_area, "holes")
        mask, removed = remove_small_regions(mask, min_area, "islands")
        if filled or removed:
            tensor = torch.from_numpy(mask)[None]
            counts.append(masks_to_rle_counts(tensor)[0])
            boxes.append(masks_to_boxes(tensor)[0])
            areas.append(int(mask.sum()))
        else:
            counts.append(rle_counts)
            boxes.append(table.boxes[i])
            areas.append(int(table.areas[i]))
        unchanged.append(not (filled or removed))
    table = MaskTable(
        counts=counts,
        boxes=torch.stack(boxes),
        areas=torch.tensor(areas, dtype=torch.int64),
        iou=table.iou,
        stability=table.stability,
        points=table.points,
        crop_boxes=table.crop_boxes,
    )
    scores = torch.tensor(unchanged, dtype=torch.float32)
    return table.select(nms(table.boxes, scores, nms_thresh))


# --- settings -----------------------------------------------------------------------------------


def _defaults() -> dict[str, Any]:
    parameters = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name not in ("self", "model")}


def _apply_preset(given: dict[str, Any]) -> dict[str, Any]:
    """The settings after ``given["preset"]``: preset values replace arguments left at their
    defaults; arguments the caller changed win."""
    preset = given["preset"]
    if preset is None:
        return given
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {sorted(PRESETS)}")
    defaults = _defaults()
    settings = dict(given)
    for name, value in PRESETS[preset].items():
        if given[name] == defaults[name]:
            settings[name] = value
    return settings


def _check_settings(s: dict[str, Any]) -> list[np.ndarray]:
    """``ValueError`` for inconsistent settings; returns the point grid of each crop layer."""
    if s["output_mode"] not in OUTPUT_MODES:
        raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {s['output_mode']!r}")
    if (s["points_per_side"] is None) == (s["point_grids"] is None):
        raise ValueError("give exactly one of points_per_side and point_grids")
    if not isinstance(s["crop_n_layers"], int) or s["crop_n_layers"] < 0:
        raise ValueError(f"crop_n_layers must be an int >= 0, got {s['crop_n_layers']!r}")
    if not isinstance(s["points_per_batch"], int) or s["points_per_batch"] < 1:
        raise ValueError(f"points_per_batch must be an int >= 1, got {s['points_per_batch']!r}")
    for name in ("box_nms_thresh", "crop_nms_thresh"):
        if not 0.0 <= s[name] <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {s[name]}")
    if not 0.0 <= s["crop_overlap_ratio"] < 1.0:
        raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {s['crop_overlap_ratio']}")
    if s["stability_score_offset"] < 0:
        raise ValueError(f"stability_score_offset must be >= 0, got {s['stability_score_offset']}")
    if s["min_mask_region_area"] < 0:
        raise ValueError(f"min_mask_region_area must be >= 0, got {s['min_mask_region_area']}")
    fraction = s["max_mask_area_fraction"]
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ValueError(f"max_mask_area_fraction must be in (0, 1], got {fraction}")
    layers = s["crop_n_layers"] + 1
    if s["point_grids"] is None:
        side, factor = s["points_per_side"], s["crop_n_points_downscale_factor"]
        if not isinstance(side, int) or side < 1:
            raise ValueError(f"points_per_side must be an int >= 1, got {side!r}")
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"crop_n_points_downscale_factor must be an int >= 1, got {factor!r}")
        if int(side / factor ** (layers - 1)) < 1:
            raise ValueError(
                f"points_per_side={side} with crop_n_points_downscale_factor={factor} leaves no "
                f"points in crop layer {layers - 1}"
            )
        return build_all_layer_point_grids(side, layers - 1, factor)
    grids = [np.asarray(g, dtype=np.float64) for g in s["point_grids"]]
    if len(grids) < layers:
        raise ValueError(f"point_grids has {len(grids)} grids; {layers} crop layers need one each")
    for grid in grids:
        if grid.ndim != 2 or grid.shape[1] != 2 or len(grid) == 0:
            raise ValueError(f"each point grid must have shape (n, 2), got {grid.shape}")
        if not np.all((grid >= 0) & (grid <= 1)):
            raise ValueError("point grids are normalised: coordinates must lie in [0, 1]")
    return grids


def _load_image(item: np.ndarray | str | Path) -> np.ndarray:
    if isinstance(item, np.ndarray):
        return item
    from PIL import Image

    with Image.open(item) as image:
        return np.asarray(image.convert("RGB"))
