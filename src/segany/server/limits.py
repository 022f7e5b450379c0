"""What the server accepts: upload size, pixel count, cache size, queue length, video length."""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request (and the server as a whole) may cost.

    ``max_upload_bytes``: an upload's body; ``max_pixels``: width x height of an uploaded image,
    checked from the header before decoding (decompression bombs); ``max_pending``: embeddings
    waiting for the encoder before new uploads get 503; ``max_export_masks``: masks in one
    export request; ``cache_bytes``: the on-disk embedding cache (least recently used entries
    are evicted beyond it). Videos: ``max_video_frames`` and ``max_video_seconds`` bound a
    clip's length, ``max_video_pixels`` a frame's width x height, ``max_video_sessions`` the
    videos kept open (the least recently used one is closed beyond it).
    """

    max_upload_bytes: int = 32 * MB
    max_pixels: int = 40_000_000
    max_pending: int = 64
    max_export_masks: int = 1000
    cache_bytes: int = 2048 * MB
    max_video_frames: int = 300
    max_video_seconds: float = 60.0
    max_video_pixels: int = 1920 * 1080
    max_video_sessions: int = 8

    def __post_init__(self) -> None:
        for name in (
            "max_upload_bytes",
            "max_pixels",
            "max_pending",
            "max_export_masks",
            "max_video_frames",
            "max_video_pixels",
            "max_video_sessions",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.max_video_seconds > 0:
            raise ValueError(f"max_video_seconds must be > 0, got {self.max_video_seconds}")
        if self.cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {self.cache_bytes}")
