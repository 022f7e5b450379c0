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
  provably: :class:`~segany.automatic.filters.UpscaleFootprint`); the rest are upscaled a few at a time
  and dropped once run-length encoded, so memory is bounded by a handful of full-size masks,
  not by 3 x ``points_per_batch``;
- run-length encoding places crop masks in the image frame arithmetically, without padding.

An HQ-SAM model gives one mask per point (as the official HQ generator does: the best of SAM's
three plus the HQ mask), through :class:`~segany.fast.hq_decoder.HQImageDecoder`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_area

from ..fast.hq_decoder import HQImage
from ..fast.shared_decoder import SharedImage, SharedImageDecoder, Workspace
from ..fast.upscale import upscale_logits
from ..formats.boxes import masks_to_boxes
from ..formats.images import read_image
from ..formats.rle import masks_to_rle_counts
from ..formats.sa1b import Sa1bAnnotation
from ..inference.embedding import check_image
from ..inference.predictor import Predictor, shared_decoder
from ..inference.sam_predictor import SamPredictor
from ..inference.transforms import scale_coords
from ..modeling.sam import Sam
from .cleanup import clean_mask_data, clean_small_regions
from .crops import Crop, generate_crop_boxes
from .filters import UpscaleFootprint, is_box_near_crop_edge, nms, stability_score
from .settings import PRESETS, apply_preset, check_settings
from .table import SEGMENTATIONS, MaskTable

__all__ = ["PRESETS", "MaskTable", "SamAutomaticMaskGenerator"]

# Work sizes, in floats per tensor, whatever the model and image size. The transformer holds a
# few (N, D) image-token tensors per prompt: 6 prompts of 4096 x 256 tokens (24 MiB), the mask
# head about 3 per prompt, 4 prompts at a time; they live in a Workspace reused by every batch.
# On CPU small batches are faster than large ones: a fresh tensor of hundreds of MiB is new
# pages the kernel faults in and zeroes each batch, and one of a few tens of MiB stays in the
# L3 cache between the passes of a block. The upscaling holds a padded square and a crop per
# mask.
DECODE_BUDGET = 6 * 2**20
MASK_HEAD_BUDGET = 4 * 2**20
UPSCALE_BUDGET = 2**24
CANDIDATE_GROUP = 64  # low-res masks (256 KiB each) gathered before the stability stage


@dataclass(frozen=True)
class _CropWork:
    """What the batches of one crop share: the crop, its decoder inputs, its resized size and
    the footprint of the upscaling."""

    crop: Crop
    shared: SharedImage | HQImage
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
        settings = apply_preset(given, _defaults())
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
        self.point_grids = check_settings(settings)
        self._predictor = Predictor(model)  # embeds the crops
        self._stateful: SamPredictor | None = None
        # HQ-SAM's route for HQ models; a decoder it cannot rearrange is refused with the reason
        self.decoder = shared_decoder(model) or SharedImageDecoder(model)

    @property
    def model(self) -> Sam:
        return self._predictor.model

    @property
    def predictor(self) -> SamPredictor:
        """The official generator's attribute: a stateful predictor over the same model (made on
        first use; the generator itself embeds through the native predictor)."""
        if self._stateful is None:
            self._stateful = SamPredictor(self.model)
        return self._stateful

    postprocess_small_regions = staticmethod(clean_mask_data)

    # --- public API -----------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Records for every mask found in an ``(H, W, 3)`` uint8 RGB image.

        Each record: ``segmentation`` (per ``output_mode``), ``area`` (int), ``bbox`` XYWH ints,
        ``predicted_iou``, ``point_coords`` ``[[x, y]]``, ``stability_score``, ``crop_box`` XYWH.
        """
        check_image(image)
        return self.generate_table(image).records(image.shape[:2], SEGMENTATIONS[self.output_mode])

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
            yield self.generate(item if isinstance(item, np.ndarray) else read_image(item))

    @torch.inference_mode()
    def generate_table(self, image: np.ndarray) -> MaskTable:
        """All masks of an image as a :class:`MaskTable` (before output encoding)."""
        check_image(image)
        size = (image.shape[0], image.shape[1])
        boxes, layers = generate_crop_boxes(size, self.crop_n_layers, self.crop_overlap_ratio)
        crops = [Crop(box, layer, size) for box, layer in zip(boxes, layers)]
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

    def generate_annotations(self, image: np.ndarray) -> list[Sa1bAnnotation]:
        """:meth:`generate`'s records as typed SA-1B annotations (COCO RLE, whatever
        ``output_mode``), ready for :mod:`segany.formats`."""
        return self.generate_table(image).annotations((image.shape[0], image.shape[1]))

    # --- pipeline -------------------------------------------------------------------------------

    def _process_crop(self, image: np.ndarray, crop: Crop) -> MaskTable:
        x0, y0, x1, y1 = crop.box
        embedding = self._predictor.embed(image[y0:y1, x0:x1])
        h, w = crop.size
        work = _CropWork(
            crop=crop,
            shared=self.decoder.image(*embedding.encoder_outputs),
            input_size=embedding.input_size,
            footprint=UpscaleFootprint.of(
                self._predictor.low_res_size, self.model.img_size, embedding.input_size, (h, w)
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


def _concat(parts: list[tuple[Tensor, Tensor, np.ndarray]]) -> tuple[Tensor, Tensor, np.ndarray]:
    return (
        torch.cat([p[0] for p in parts]),
        torch.cat([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def _defaults() -> dict[str, Any]:
    parameters = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name not in ("self", "model")}
