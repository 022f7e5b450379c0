"""Sample scenes: a few generated images to try the model on without an image of one's own
(the web page's "samples" and anything else that wants a ready image)."""

from __future__ import annotations

from .scenes import Scene, SceneConfig, generate_scene

# Large, well-separated objects.
SAMPLE_SEEDS = (164, 217, 260, 185, 83)
SAMPLE_CONFIG = SceneConfig()


def sample_names() -> tuple[str, ...]:
    """The samples' names, ``scene-<seed>``, in a fixed order."""
    return tuple(f"scene-{seed}" for seed in SAMPLE_SEEDS)


def sample_size() -> tuple[int, int]:
    """(height, width) of every sample image."""
    return SAMPLE_CONFIG.height, SAMPLE_CONFIG.width


def sample_scene(name: str) -> Scene:
    """The sample called ``name`` (image ``(H, W, 3)`` uint8 and its masks); ``KeyError`` for
    a name not in :func:`sample_names`."""
    if name not in sample_names():
        raise KeyError(name)
    return generate_scene(int(name.split("-")[1]), SAMPLE_CONFIG)
