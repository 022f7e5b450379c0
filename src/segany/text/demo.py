"""The text part of ``segany demo``: the bundled head segments a held-out scene from a phrase."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.names import scene_phrases
from ..data.scenes import Scene, generate_scene
from ..formats.pictures import draw_overlay, write_png
from .evaluation import mask_iou

TEXT_DEMO_SEED = 3_000_017  # the click demo's held-out scene


@dataclass(frozen=True)
class TextDemoResult:
    phrase: str
    file: Path
    iou: float
    predicted_iou: float


def demo_phrase(scene: Scene) -> tuple[str, int]:
    """The colour-and-shape phrase naming exactly one object, for the largest such object."""
    unique = [(p, named[0]) for p, named in scene_phrases(scene) if len(named) == 1]
    named = [(p, i) for p, i in unique if len(p.split()) == 2] or unique
    return max(named, key=lambda item: int(scene.masks[item[1]].sum()))


def run_text_demo(
    output_dir: Path, model_name: str = "tiny", seed: int = TEXT_DEMO_SEED
) -> TextDemoResult:
    """Prompt the scene with a phrase naming one object; write ``text-overlay.png``; return the
    IoU with the named object's true mask."""
    from ..checkpoints import load
    from ..inference.predictor import Predictor
    from .prompt import TextPromptHead

    predictor = Predictor(load(model_name))
    head = TextPromptHead.bundled(model_name)
    scene = generate_scene(seed)
    phrase, index = demo_phrase(scene)
    result = head.segment(predictor, scene.image, phrase)[0]
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "text-overlay.png"
    write_png(path, draw_overlay(scene.image, [result.mask], [], result.box))
    return TextDemoResult(
        phrase, path, mask_iou(result.mask, scene.masks[index]), result.predicted_iou
    )
