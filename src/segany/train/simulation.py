"""The paper's interactive training step: one encoder pass per image, then several decoder passes
per mask that imitate a user clicking on the errors of the previous prediction.

Pass 1 prompts each mask with a uniform foreground point or a noisy box (equal odds). Every
later pass adds a point sampled uniformly from the error region of the previous prediction
(foreground where the object was missed, background where it spilled over), except for the
passes that only feed the previous logits back (one at a random position, one last). The
previous low-res logits of the selected mask are always the mask prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, PADDING_LABEL
from ..modeling.sam import Sam
from .losses import dice_loss, focal_loss, mask_iou


@dataclass(frozen=True)
class SimulationConfig:
    """How prompts are simulated and losses weighted (defaults: the paper's recipe)."""

    passes: int = 11  # decoder passes per mask: 1 initial + sampled points + passes without one
    no_point_passes: int = 2
    box_probability: float = 0.5
    box_noise: float = 0.1  # noise std as a fraction of the box side ...
    box_noise_cap: float = 20.0  # ... capped at this many pixels of a 1024-px input
    multimask_for_box: bool = False  # a box is 2 corner tokens; like SAM 2, use one mask
    iou_loss_on_all: bool = True  # supervise all 3 IoU predictions, not just the chosen one
    loss_at_input_size: bool = False  # mask losses on upsampled logits (slow) or low-res ones
    focal_weight: float = 20.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0


@dataclass(frozen=True)
class StepOutput:
    """The loss to backpropagate and detached terms to log."""

    loss: torch.Tensor
    focal: float
    dice: float
    iou_mse: float
    first_iou: float  # mean IoU of the first pass (best candidate)
    last_iou: float  # mean IoU of the last pass


def point_schedule(passes: int, no_point_passes: int, generator: torch.Generator) -> list[bool]:
    """For passes 2..P: does the pass add a point? The last ``min(1, k)`` is always without one
    and the others without one are at random positions."""
    later = passes - 1
    adds = [True] * later
    if no_point_passes <= 0 or later <= 0:
        return adds
    adds[-1] = False
    others = torch.randperm(max(later - 1, 0), generator=generator)[: no_point_passes - 1]
    for index in others.tolist():
        adds[index] = False
    return adds


def sample_points(
    region: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniform pixel of each ``(N, H, W)`` bool region: ``(N, 2)`` (x, y) and ``(N,)`` bool
    telling whether the region was non-empty (an empty region gives pixel (0, 0)).

    Draws one number per region (on the CPU ``generator``) and picks that rank among the
    region's pixels, so no ``(N, H*W)`` random field is made or copied to the device."""
    n, w = region.shape[0], region.shape[2]
    running = region.flatten(1).cumsum(1, dtype=torch.int32)  # (N, H*W) pixels so far
    counts = running[:, -1]
    u = torch.rand(n, generator=generator).to(region.device)
    rank = torch.minimum((u * counts).int(), counts - 1)  # -1 for an empty region: pixel 0
    flat = torch.searchsorted(running, (rank + 1)[:, None])[:, 0]
    xy = torch.stack([flat % w, flat // w], dim=1).to(torch.float32)
    return xy, counts > 0


def noisy_boxes(
    boxes: torch.Tensor, config: SimulationConfig, img_size: int, generator: torch.Generator
) -> torch.Tensor:
    """Jitter ``(N, 4)`` XYXY boxes: Gaussian noise with std ``box_noise`` of the side length,
    capped at ``box_noise_cap`` (scaled to the input size); clamped to the image."""
    sides = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    cap = config.box_noise_cap * img_size / 1024
    std = (config.box_noise * sides).clamp(max=cap)
    noise = (torch.randn(boxes.shape, generator=generator).to(boxes.device) * std).clamp(-cap, cap)
    jittered = (boxes + noise).clamp(0, img_size - 1)
    x0, y0 = (
        torch.minimum(jittered[:, 0], jittered[:, 2]),
        torch.minimum(jittered[:, 1], jittered[:, 3]),
    )
    x1, y1 = (
        torch.maximum(jittered[:, 0], jittered[:, 2]),
        torch.maximum(jittered[:, 1], jittered[:, 3]),
    )
    return torch.stack([x0, y0, x1, y1], dim=1)


def _resize(logits: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, C, s, s)`` -> ``(N, C, size, size)`` bilinear (identity when already that size)."""
    if logits.shape[-1] == size:
        return logits
    return F.interpolate(logits, (size, size), mode="bilinear", align_corners=False)


def first_prompts(
    masks: torch.Tensor, boxes: torch.Tensor, config: SimulationConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pass 1's prompts for ``(N, S, S)`` masks with ``(N, 4)`` boxes: a foreground point
    (+ padding) or the two corners of a noisy box, equal odds. Returns ``(N, 2, 2)`` coords,
    ``(N, 2)`` labels and ``(N,)`` bool: whether the first pass predicts 3 candidates."""
    n, size, device = masks.shape[0], masks.shape[-1], masks.device
    point, _ = sample_points(masks, generator)
    use_box = (torch.rand(n, generator=generator) < config.box_probability).to(device)
    corners = noisy_boxes(boxes, config, size, generator).view(n, 2, 2)
    coords = torch.where(use_box[:, None, None], corners, torch.stack([point, point], dim=1))
    labels = torch.where(
        use_box[:, None],
        torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], device=device),
        torch.tensor([1, PADDING_LABEL], device=device),
    )
    return coords, labels, ~use_box | config.multimask_for_box


def error_click(
    prediction: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A click on the error of ``(N, S, S)`` bool predictions: ``(N, 1, 2)`` (x, y) and
    ``(N, 1)`` labels (foreground where the object was missed, background where the
    prediction spilled over, padding where there is no error)."""
    size = masks.shape[-1]
    xy, has_error = sample_points(prediction != masks, generator)
    missed = masks.flatten(1).gather(1, (xy[:, 1] * size + xy[:, 0]).long()[:, None])[:, 0]
    label = torch.where(has_error, missed.long(), torch.full_like(missed.long(), PADDING_LABEL))
    return xy[:, None], label[:, None]


@dataclass(frozen=True)
class _StepInputs:
    """What every decoder pass of a step shares: ``(N, C, h, w)`` embeddings of each mask's
    image, the dense positional encoding, the ``(N, S, S)`` bool ground truth, and its
    ``(N, 1, s, s)`` coverage at the loss size ``s``."""

    per_mask: torch.Tensor
    image_pe: torch.Tensor
    masks: torch.Tensor
    targets: torch.Tensor
    loss_size: int


@dataclass(frozen=True)
class _PassResult:
    """One decoder pass: its loss, logged terms, and what the next pass is fed."""

    loss: torch.Tensor
    focal: float
    dice: float
    iou: float
    chosen_iou: float  # mean IoU of the supervised candidate (first pass only, else 0)
    preferred_iou: float  # mean IoU of the candidate fed back
    mask_input: torch.Tensor  # (N, 1, s, s) low-res logits of the candidate fed back
    prediction: torch.Tensor  # (N, S, S) bool: that candidate at the input size


class InteractiveSimulator(nn.Module):
    """Wraps a :class:`Sam` so one ``forward`` is one training step's loss (DDP-friendly)."""

    def __init__(self, model: Sam, config: SimulationConfig = SimulationConfig()) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def forward(
        self,
        images: list[torch.Tensor],
        masks: torch.Tensor,
        image_index: torch.Tensor,
        boxes: torch.Tensor,
        seed: int,
    ) -> StepOutput:
        """``images``: B resized ``(3, h, w)`` images (0-255); ``masks`` ``(N, S, S)`` bool ground
        truth in the input frame; ``image_index`` ``(N,)`` image of each mask; ``boxes``
        ``(N, 4)`` their XYXY boxes; ``seed`` fixes every random choice of the step."""
        cfg = self.config
        generator = torch.Generator().manual_seed(seed)
        inputs = self._step_inputs(images, masks, image_index)
        coords, labels, multimask = first_prompts(masks, boxes, cfg, generator)
        adds_point = [True, *point_schedule(cfg.passes, cfg.no_point_passes, generator)]
        mask_input: torch.Tensor | None = None
        prediction = torch.zeros_like(masks)
        results: list[_PassResult] = []
        for step, add in enumerate(adds_point):
            if step > 0 and add:
                xy, label = error_click(prediction, masks, generator)
                coords = torch.cat([coords, xy], dim=1)
                labels = torch.cat([labels, label], dim=1)
            multi = multimask if step == 0 else torch.zeros_like(multimask)
            result = self._decoder_pass(inputs, coords, labels, mask_input, multi, step == 0)
            mask_input, prediction = result.mask_input, result.prediction
            results.append(result)
        return _summary(results)

    def _step_inputs(
        self, images: list[torch.Tensor], masks: torch.Tensor, image_index: torch.Tensor
    ) -> _StepInputs:
        """One encoder pass (without gradients when the encoder is frozen)."""
        model = self.model
        frozen_encoder = not any(p.requires_grad for p in model.image_encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen_encoder):
            embeddings = model.image_encoder(torch.stack([model.preprocess(i) for i in images]))
        low_size = model.prompt_encoder.mask_input_size[0]
        loss_size = masks.shape[-1] if self.config.loss_at_input_size else low_size
        # (N, 1, s, s) coverage
        targets = F.adaptive_avg_pool2d(masks[:, None].float(), loss_size)
        image_pe = model.prompt_encoder.get_dense_pe()
        return _StepInputs(embeddings[image_index], image_pe, masks, targets, loss_size)

    def _decoder_pass(
        self,
        inputs: _StepInputs,
        coords: torch.Tensor,
        labels: torch.Tensor,
        mask_input: torch.Tensor | None,
        multi: torch.Tensor,
        first: bool,
    ) -> _PassResult:
        """Decode ``(N, K, 2)`` points with ``(N, K)`` labels; ``multi`` ``(N,)``: supervise the
        best of tokens 1..3 (an ambiguous first prompt), else token 0."""
        cfg, model, masks = self.config, self.model, inputs.masks
        n, size = masks.shape[0], masks.shape[-1]
        sparse = model.prompt_encoder.embed_labelled_points(coords, labels)
        dense = model.prompt_encoder.embed_dense(mask_input, n)
        low_res, iou_pred = model.mask_decoder.predict_masks(
            inputs.per_mask, inputs.image_pe, sparse, dense
        )
        low_res, iou_pred = low_res.float(), iou_pred.float()  # losses in fp32 under autocast
        loss_logits = _resize(low_res, inputs.loss_size)
        focal = focal_loss(loss_logits, inputs.targets.expand_as(loss_logits))
        dice = dice_loss(loss_logits, inputs.targets.expand_as(loss_logits))
        with torch.no_grad():
            logits = _resize(low_res.detach(), size)
            actual_iou = mask_iou(logits > 0, masks[:, None].expand_as(logits))
        mask_loss = cfg.focal_weight * focal + cfg.dice_weight * dice  # (N, 4)
        best_multi = 1 + mask_loss[:, 1:].argmin(dim=1)
        chosen = torch.where(multi, best_multi, torch.zeros_like(best_multi))
        rows = torch.arange(n, device=masks.device)
        iou_term = self._iou_term((iou_pred - actual_iou) ** 2, multi, rows, chosen)
        # feed back the candidate the model itself prefers (highest predicted IoU)
        preferred = torch.where(multi, 1 + iou_pred[:, 1:].argmax(dim=1), torch.zeros_like(chosen))
        return _PassResult(
            loss=(mask_loss[rows, chosen] + cfg.iou_weight * iou_term).mean(),
            focal=float(focal[rows, chosen].detach().mean()),
            dice=float(dice[rows, chosen].detach().mean()),
            iou=float(iou_term.detach().mean()),
            chosen_iou=float(actual_iou[rows, chosen].mean()) if first else 0.0,
            preferred_iou=float(actual_iou[rows, preferred].mean()),
            mask_input=low_res[rows, preferred][:, None].detach(),
            prediction=logits[rows, preferred] > 0,
        )

    def _iou_term(
        self, iou_err: torch.Tensor, multi: torch.Tensor, rows: torch.Tensor, chosen: torch.Tensor
    ) -> torch.Tensor:
        """``(N,)`` IoU-prediction loss from ``(N, 4)`` squared errors: every candidate of the
        pass (``iou_loss_on_all``), or the chosen one."""
        if self.config.iou_loss_on_all:
            return torch.where(multi, iou_err[:, 1:].mean(dim=1), iou_err[:, 0])
        return iou_err[rows, chosen]


def _summary(results: list[_PassResult]) -> StepOutput:
    """The step's loss (mean over passes) and its logged terms."""
    passes = len(results)
    return StepOutput(
        loss=torch.stack([r.loss for r in results]).mean(),
        focal=sum(r.focal for r in results) / passes,
        dice=sum(r.dice for r in results) / passes,
        iou_mse=sum(r.iou for r in results) / passes,
        first_iou=results[0].chosen_iou,
        last_iou=results[-1].preferred_iou,
    )
