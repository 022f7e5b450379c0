"""Open videos: an upload is checked against the limits and decoded once into a folder of JPEG
frames (the page shows them and the tracker reads them, so both see the same pixels); a
session holds the objects' prompts, the embeddings of the frames last prompted, and the
tracked masks.

Sessions live in memory under random tokens; their folders sit in one temporary folder of the
server, removed when it stops (after a crash, by the next server a day later). Beyond
``Limits.max_video_sessions`` the least recently used session is closed.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from .errors import ApiError
from .limits import Limits

VIDEO_FILE = "video"
FRAMES_DIR = "frames"
JPEG_QUALITY = 92
FOLDER_PREFIX = "videos-"
STALE_SECONDS = 24 * 3600
NOT_INSTALLED = "videos need PyAV: pip install 'segany[video]'"
UNKNOWN = "unknown video session (never opened here, closed, or the server restarted): open the video again"


def frame_name(index: int) -> str:
    """The file of frame ``index`` (names sort in frame order)."""
    return f"{index:06d}.jpg"


@dataclass
class TrackJob:
    """A propagation in progress or finished: ``done`` frames of ``total`` given out, and
    ``steps`` frames embedded by the tracker of ``steps_total`` (its walk back comes first)."""

    total: int
    objects: list[int]
    steps_total: int
    state: str = "running"
    done: int = 0
    steps: Callable[[], int] = lambda: 0
    error: str | None = None
    cancelled: bool = False
    task: asyncio.Task[None] | None = None


@dataclass
class VideoSession:
    """One open video: its frames on disk, the prompts per (object, frame), the embeddings of
    the last prompted frames, and the tracked masks per frame in the order the tracker gave
    them."""

    id: str
    name: str
    folder: Path
    width: int
    height: int
    frames: int
    fps: float
    prompts: dict[tuple[int, int], Any] = field(default_factory=dict)
    embeddings: OrderedDict[int, Any] = field(default_factory=OrderedDict)
    tracked: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    job: TrackJob | None = None

    @property
    def frames_dir(self) -> Path:
        return self.folder / FRAMES_DIR

    def frame_path(self, index: int) -> Path:
        """The JPEG of frame ``index``; 404 outside the video."""
        if not 0 <= index < self.frames:
            raise ApiError(404, f"no frame {index}: the video has frames 0 to {self.frames - 1}")
        return self.frames_dir / frame_name(index)

    def add_tracked(self, index: int, records: list[dict[str, Any]]) -> None:
        """A tracked frame's masks (JSON records, one per object)."""
        if index not in self.tracked:
            self.order.append(index)
        self.tracked[index] = records

    def forget_tracking(self) -> None:
        """Drop the tracked masks (the prompts changed) and stop a running job."""
        if self.job is not None and self.job.state == "running":
            self.job.cancelled = True
        self.job = None
        self.tracked.clear()
        self.order.clear()


def check_length(frames: int, fps: float, limits: Limits) -> None:
    """422 for a clip longer than the limits allow (checked before decoding it)."""
    if frames < 1:
        raise ApiError(422, "the video has no frames")
    if frames > limits.max_video_frames:
        raise ApiError(
            422, f"video too long: {frames} frames, the limit is {limits.max_video_frames}"
        )
    seconds = frames / fps if fps > 0 else 0.0
    if seconds > limits.max_video_seconds:
        raise ApiError(
            422,
            f"video too long: {seconds:.1f} s, the limit is {limits.max_video_seconds:g} s",
        )


def check_frame_size(height: int, width: int, limits: Limits) -> None:
    if height * width > limits.max_video_pixels:
        raise ApiError(
            413,
            f"video frames too large: {width}x{height} pixels, the limit is "
            f"{limits.max_video_pixels:,} pixels a frame",
        )


def decode_video(data: bytes, folder: Path, limits: Limits) -> tuple[int, int, int, float]:
    """Write the upload into ``folder`` and decode it into JPEG frames there: (frames, height,
    width, fps). 415 for what is not a video, 422/413 past the limits."""
    try:
        from ..video import VideoInputError, open_frames
    except ImportError:
        raise ApiError(501, NOT_INSTALLED) from None
    path = folder / VIDEO_FILE
    path.write_bytes(data)
    try:
        source = open_frames(path)
    except ImportError:  # PyAV is imported when a video file is opened
        raise ApiError(501, NOT_INSTALLED) from None
    except VideoInputError as exc:
        reason = _without_path(exc, path)
        raise ApiError(415, f"upload: {reason}; accepted: MP4, WebM, MOV, AVI, GIF…") from None
    try:
        count, fps = len(source), float(source.fps)
        check_length(count, fps, limits)
        (folder / FRAMES_DIR).mkdir()
        height = width = 0
        for index in range(count):  # in order: each frame is decoded once
            frame = source[index]
            height, width = frame.shape[:2]
            check_frame_size(height, width, limits)
            Image.fromarray(frame).save(
                folder / FRAMES_DIR / frame_name(index), quality=JPEG_QUALITY
            )
    except VideoInputError as exc:  # a frame FFmpeg fails to decode
        raise ApiError(
            422, f"upload: a frame does not decode ({_without_path(exc, path)})"
        ) from None
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    path.unlink()  # the frames are what the session uses
    return count, height, width, fps


def _without_path(exc: Exception, path: Path) -> str:
    """The error's message without the server's file name (the client knows its file)."""
    text = str(exc).replace(f"{path}: ", "")
    return text.replace(f": '{path}'", "").replace(str(path), "the upload")


class VideoSessions:
    """The open sessions, least recently used first, in one temporary folder under ``root``."""

    def __init__(self, root: Path, limits: Limits) -> None:
        self.root = root
        self.limits = limits
        self._sessions: OrderedDict[str, VideoSession] = OrderedDict()
        self._folder: Path | None = None

    def folder(self) -> Path:
        """This server's folder of sessions (made on first use; folders that a server which
        did not stop cleanly left a day ago are removed then)."""
        if self._folder is None:
            self.root.mkdir(parents=True, exist_ok=True)
            stale = time.time() - STALE_SECONDS
            for old in self.root.glob(f"{FOLDER_PREFIX}*"):
                if old.stat().st_mtime < stale:
                    shutil.rmtree(old, ignore_errors=True)
            self._folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=self.root))
        return self._folder

    def new_folder(self) -> tuple[str, Path]:
        """A fresh session token and its (empty) folder."""
        token = secrets.token_hex(16)
        path = self.folder() / token
        path.mkdir()
        return token, path

    def add(self, session: VideoSession) -> None:
        """Open ``session``, closing the least recently used one beyond the limit."""
        self._sessions[session.id] = session
        while len(self._sessions) > self.limits.max_video_sessions:
            _, oldest = self._sessions.popitem(last=False)
            self.close(oldest)

    def get(self, token: str) -> VideoSession:
        """The session ``token``, marked as just used; 404 for an unknown one."""
        session = self._sessions.get(token)
        if session is None:
            raise ApiError(404, UNKNOWN)
        self._sessions.move_to_end(token)
        return session

    def close(self, session: VideoSession) -> None:
        session.forget_tracking()
        self._sessions.pop(session.id, None)
        shutil.rmtree(session.folder, ignore_errors=True)

    def close_all(self) -> None:
        for session in list(self._sessions.values()):
            self.close(session)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
