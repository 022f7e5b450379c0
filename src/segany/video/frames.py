"""Frames in and out: a video file (PyAV) or a folder of images as an indexable source of
``(H, W, 3)`` uint8 RGB frames, and an overlay video written atomically."""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..formats.images import list_images, read_image
from .prompts import VideoInputError

DEFAULT_FPS = 25.0  # for a folder of frames or arrays, which carry no rate of their own
CACHE_FRAMES = 32  # decoded frames kept: walking a clip backwards decodes each group once


class FrameSource(Protocol):
    """Frames by index: ``len()``, ``[i]`` -> ``(H, W, 3)`` uint8 RGB, and the rate."""

    fps: float

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


class ArrayFrames:
    """A sequence of ``(H, W, 3)`` uint8 arrays as a :class:`FrameSource`."""

    def __init__(self, frames: Sequence[np.ndarray], fps: float = DEFAULT_FPS) -> None:
        self.frames, self.fps = frames, fps

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.frames[check_index(index, len(self))]


class FolderFrames:
    """The images of a folder, sorted by name, as frames (all of one size)."""

    def __init__(self, folder: str | os.PathLike[str], fps: float = DEFAULT_FPS) -> None:
        self.paths = list_images(folder)
        if not self.paths:
            raise VideoInputError(f"{folder}: no image files in this folder")
        self.fps = fps
        self.size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        image = read_image(self.paths[check_index(index, len(self))])
        if self.size is not None and image.shape[:2] != self.size:
            raise VideoInputError(
                f"{self.paths[index]}: {image.shape[1]}x{image.shape[0]}, but the other frames "
                f"are {self.size[1]}x{self.size[0]}"
            )
        self.size = image.shape[:2]
        return image


class VideoFrames:
    """A video file's frames by index (PyAV). The packets are read once (no decoding) to list
    the frames' timestamps; a frame is then decoded from the keyframe before it, and the last
    :data:`CACHE_FRAMES` decoded frames are kept, so reading forwards decodes each frame once
    and reading backwards decodes each keyframe group about once per cached stretch. A stream
    without timestamps (a raw ``.h264`` file) is counted by decoding it once, and read from its
    start whenever a frame before the cached ones is asked for."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with self._reading():
            self._open()
            packets = [p for p in self._container.demux(self._stream) if p.size]
            self._timed = bool(packets) and all(p.pts is not None for p in packets)
            if self._timed:
                self._pts = sorted(p.pts for p in packets)
                self._keyframes = sorted(p.pts for p in packets if p.is_keyframe)
            else:
                self._open()
                self._pts = list(range(sum(1 for _ in self._container.decode(self._stream))))
        if not self._pts:
            raise VideoInputError(f"{self.path}: the video has no frames")
        self._index = {pts: i for i, pts in enumerate(self._pts)}
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else DEFAULT_FPS
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._decoder: Iterator[Any] | None = None
        self._position = -1  # index of the frame the open decoder gave last

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """FFmpeg's failures (an unreadable or damaged file) as :class:`VideoInputError`."""
        import av

        try:
            yield
        except (av.FFmpegError, IndexError, OSError, UnicodeDecodeError) as exc:
            raise VideoInputError(f"{self.path}: not a readable video ({_reason(exc)})") from None

    def _open(self) -> None:
        import av

        self._container = av.open(str(self.path))
        self._stream = self._container.streams.video[0]

    def __len__(self) -> int:
        return len(self._pts)

    def __getitem__(self, index: int) -> np.ndarray:
        check_index(index, len(self))
        if index in self._cache:
            return self._cache[index]
        with self._reading():
            self._decode_to(index)
        if index not in self._cache:
            raise VideoInputError(f"{self.path}: frame {index} could not be decoded")
        return self._cache[index]

    def _decode_to(self, index: int) -> None:
        """Decode on (or from a seek) until frame ``index``, keeping what passes by."""
        if self._decoder is None or not self._position < index <= self._position + CACHE_FRAMES:
            self._seek(index)
        for frame in self._decoder:  # type: ignore[union-attr]
            position = self._index.get(frame.pts) if self._timed else self._position + 1
            if position is None:
                continue
            self._position = position
            self._remember(position, frame.to_ndarray(format="rgb24"))
            if position >= index:
                break

    def _seek(self, index: int) -> None:
        """Restart decoding at the keyframe at or before ``index``, a cache's length earlier
        when possible (so a backward walk finds the frames before ``index`` cached)."""
        if self._timed:
            target = self._pts[max(0, index - CACHE_FRAMES + 1)]
            keyframe = max((k for k in self._keyframes if k <= target), default=self._pts[0])
            self._container.seek(keyframe, stream=self._stream, backward=True, any_frame=False)
        else:
            self._container.close()
            self._open()
        self._decoder = self._container.decode(self._stream)
        self._position = -1

    def _remember(self, index: int, image: np.ndarray) -> None:
        self._cache[index] = image
        self._cache.move_to_end(index)
        while len(self._cache) > CACHE_FRAMES:
            self._cache.popitem(last=False)

    def close(self) -> None:
        self._container.close()


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def check_index(index: int, count: int) -> int:
    """``index`` if within ``0 .. count - 1``, else :class:`VideoInputError`."""
    if not 0 <= index < count:
        raise VideoInputError(f"frame index {index} is out of range: the video has {count} frames")
    return index


def open_frames(path: str | os.PathLike[str]) -> FrameSource:
    """A video file or a folder of frame images as a :class:`FrameSource`."""
    path = Path(path)
    if not path.exists():
        raise VideoInputError(f"{path}: no such file or folder")
    if path.is_dir():
        return FolderFrames(path)
    return VideoFrames(path)


def stream_frames(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    options: dict[str, str] | None = None,
) -> Iterator[np.ndarray]:
    """``(H, W, 3)`` uint8 RGB frames of any FFmpeg input, read once in order and none kept:
    a file, a URL (``rtsp://``, ``http://``), or a camera (``format="v4l2"`` with
    ``/dev/video0``, ``"avfoundation"``, ``"dshow"``); ``options`` go to FFmpeg. For
    :class:`~segany.video.tracker.VideoTracker`, which needs no index."""
    import av

    try:
        container = av.open(str(source), format=format, options=options or {})
        stream = container.streams.video[0]
    except (av.FFmpegError, IndexError, OSError, UnicodeDecodeError) as exc:
        raise VideoInputError(f"{source}: not a readable video ({_reason(exc)})") from None
    with container:
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def as_frame_source(frames: FrameSource | Sequence[np.ndarray]) -> FrameSource:
    """A source as is, or a list of arrays wrapped."""
    if isinstance(frames, (list, tuple)):
        return ArrayFrames(frames)
    return frames  # type: ignore[return-value]


class VideoWriter:
    """Writes RGB frames to a video file (H.264 in mp4 where FFmpeg has it, else MPEG-4 Part 2),
    into a temporary file beside ``path`` renamed into place on :meth:`close`: a killed run
    leaves no half video. Odd sizes are padded by one pixel (the codecs' 4:2:0 needs even)."""

    def __init__(self, path: str | os.PathLike[str], fps: float, width: int, height: int) -> None:
        import av

        self.path = Path(path)
        handle, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=self.path.suffix or ".mp4", dir=self.path.parent
        )
        os.close(handle)
        self._tmp = Path(name)
        self._container = av.open(name, mode="w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._stream = self._container.add_stream(codec, rate=_rate(fps))
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        self._size = (height, width)

    def write(self, image: np.ndarray) -> None:
        import av

        if image.shape[:2] != self._size:
            raise ValueError(f"frame is {image.shape[:2]}, the video is {self._size}")
        padded = np.pad(image, ((0, self._size[0] % 2), (0, self._size[1] % 2), (0, 0)), "edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._container.close()
        self._tmp.unlink(missing_ok=True)


def _rate(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)
