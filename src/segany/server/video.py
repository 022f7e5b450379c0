"""Videos for the page: open one (decoded into frames), prompt an object on a frame and see its
mask at once, then follow every object through the clip in a background job (the tracker of
:mod:`segany.video`, forward and backward from the prompts) whose masks the page reads as they
come, as COCO RLE per object per frame.

The frame of a prompt is embedded once and kept (a few per session), so each further click on it
costs one decoder run. The job advances the tracker one frame per compute slot (:mod:`.workers`),
so uploads and clicks interleave with a long propagation (but for the walk back from the
prompts, which :func:`~segany.video.track` does before its first frame).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from anyio import to_thread

from ..formats.images import decode_image
from ..formats.rle import encode_coco_rle
from ..inference.embedding import Embedding
from ..inference.predictor import Predictor
from .errors import ApiError, too_large_message
from .limits import Limits
from .video_schemas import PromptRequest
from .video_sessions import TrackJob, VideoSession, VideoSessions, decode_video
from .workers import Workers

EMBEDDINGS_KEPT = 4  # frame embeddings kept per session for further clicks
MAX_PAGE = 1000  # tracked frames in one answer
EXPORT_DIR = "export"  # the download, written while tracking
log = logging.getLogger(__name__)


def object_record(object_id: int, mask: np.ndarray, score: float, lost: bool) -> dict[str, Any]:
    """The JSON of one object's mask on one frame (compressed COCO RLE)."""
    return {
        "object_id": int(object_id),
        "mask": encode_coco_rle(mask),
        "score": float(score),
        "lost": bool(lost),
    }


class VideoService:
    """Video sessions over the server's predictor, limits and worker slots."""

    def __init__(self, predictor: Predictor, root: Path, limits: Limits, workers: Workers) -> None:
        self.predictor = predictor
        self.limits = limits
        self.workers = workers
        self.sessions = VideoSessions(root, limits)

    def stop(self) -> None:
        """Close every session and remove their frames."""
        self.sessions.close_all()

    # ----------------------------------------------------------------------- opening
    async def open(self, data: bytes, name: str) -> VideoSession:
        """Decode an uploaded video into a new session."""
        if len(data) > self.limits.max_upload_bytes:
            raise ApiError(413, too_large_message(self.limits))
        token, folder = self.sessions.new_folder()
        try:
            frames, height, width, fps = await self.workers.decode(
                decode_video, data, folder, self.limits
            )
        except BaseException:
            await to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
            raise
        session = VideoSession(token, name, folder, width, height, frames, fps)
        self.sessions.add(session)
        return session

    def get(self, token: str) -> VideoSession:
        return self.sessions.get(token)

    async def frame_jpeg(self, token: str, index: int) -> bytes:
        path = self.get(token).frame_path(index)
        try:
            return await to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:  # closed meanwhile
            raise ApiError(404, "this video was closed: open it again") from None

    def close(self, token: str) -> None:
        self.sessions.close(self.get(token))

    # ----------------------------------------------------------------------- prompts
    async def prompt(self, token: str, request: PromptRequest) -> dict[str, Any]:
        """Set an object's prompts on a frame; its mask there (the tracker's own start)."""
        from ..video import ObjectPrompt, VideoInputError
        from ..video.follow import start

        session = self.get(token)
        index = request.frame_index
        if index >= session.frames:
            raise ApiError(
                422, f"frame_index {index} is past the last frame ({session.frames - 1})"
            )
        try:
            prompt = ObjectPrompt(
                object_id=request.object_id,
                frame_index=index,
                points=np.asarray(request.points, np.float64) if request.points else None,
                labels=np.asarray(request.labels) if request.labels else None,
                box=np.asarray(request.box, np.float64) if request.box is not None else None,
            )
            prompt.check_frame(session.height, session.width)
        except VideoInputError as exc:
            raise ApiError(422, str(exc)) from None
        image, embedding = await self._embedded(session, index)
        state, mask, score = await self.workers.compute(
            start, self.predictor, embedding, image, prompt
        )
        if self.sessions.get(token) is not session:  # closed meanwhile
            raise ApiError(404, "this video was closed: open it again")
        record = object_record(prompt.object_id, mask, score, state.lost)
        session.prompts[(prompt.object_id, index)] = prompt
        session.forget_tracking()
        return {**record, "frame_index": index}

    async def _embedded(self, session: VideoSession, index: int) -> tuple[np.ndarray, Embedding]:
        """Frame ``index`` as RGB and its embedding (kept for the next clicks on it)."""
        image = await self.workers.decode(_read_frame, session.frame_path(index))
        embedding = session.embeddings.get(index)
        if embedding is None:
            embedding = await self.workers.compute(self.predictor.embed, image)
            session.embeddings[index] = embedding
            while len(session.embeddings) > EMBEDDINGS_KEPT:
                session.embeddings.popitem(last=False)
        session.embeddings.move_to_end(index)
        return image, embedding

    def clear(self, token: str, object_id: int, frame_index: int | None) -> None:
        """Remove an object's prompts on one frame, or everywhere (the object itself)."""
        session = self.get(token)
        keys = [k for k in session.prompts if k[0] == object_id]
        keys = [k for k in keys if frame_index is None or k[1] == frame_index]
        if not keys:
            raise ApiError(404, f"object {object_id} has no prompts there")
        for key in keys:
            session.prompts.pop(key, None)
        session.forget_tracking()

    # ----------------------------------------------------------------------- tracking
    def track(self, token: str) -> dict[str, Any]:
        """Start following every prompted object through the clip; a job running or done for
        the same prompts is kept (a change of prompts drops it)."""
        session = self.get(token)
        if not session.prompts:
            raise ApiError(409, "nothing to track: prompt an object on a frame first")
        if session.job is None or session.job.state in ("failed", "cancelled"):
            session.tracked.clear()
            session.order.clear()
            objects = sorted({k[0] for k in session.prompts})
            steps = tracker_steps(session.frames, list(session.prompts))
            session.job = TrackJob(total=session.frames, objects=objects, steps_total=steps)
            session.job.task = asyncio.ensure_future(self._run(session, session.job))
        return self.status(token)

    async def _run(self, session: VideoSession, job: TrackJob) -> None:
        """The job: the tracker one frame per compute slot, each frame's masks kept for the
        page and written to the download (the writer of ``segany track``'s masklets.json)."""
        from ..video import open_frames, track
        from ..video.outputs import TrackOutputs

        prompts = list(session.prompts.values())
        outputs = None
        try:
            frames = await to_thread.run_sync(open_frames, session.frames_dir)
            outputs = TrackOutputs(
                session.folder / EXPORT_DIR,
                (),
                video_name=session.name,
                size=(session.height, session.width),
                frame_count=session.frames,
                fps=session.fps,
                object_ids=job.objects,
            )
            predictor = CountingPredictor(self.predictor)
            job.steps = lambda: min(predictor.embedded, job.steps_total)
            steps = iter(track(predictor, frames, prompts))  # type: ignore[arg-type]
            while not job.cancelled:
                item = await self.workers.compute(_next_frame, steps, outputs)
                if item is None or job.cancelled:
                    break
                session.add_tracked(*item)
                job.done = len(session.order)
            if job.cancelled:
                outputs.abort()
                job.state = "cancelled"
            else:
                await to_thread.run_sync(outputs.close)
                job.state = "done"
        except Exception as exc:  # the job's answer, read by the page through its status
            if outputs is not None:
                outputs.abort()
            if job.cancelled:  # the session closed under it: nobody waits for this job
                return
            log.exception("tracking failed")
            job.state, job.error = "failed", f"tracking failed: {exc}"

    def cancel(self, token: str) -> dict[str, Any]:
        session = self.get(token)
        if session.job is not None and session.job.state == "running":
            session.job.cancelled = True
            session.job.state = "cancelled"
        return self.status(token)

    def status(self, token: str) -> dict[str, Any]:
        session = self.get(token)
        job = session.job
        if job is None:
            objects = sorted({k[0] for k in session.prompts})
            counts = {"done": 0, "total": session.frames, "steps_done": 0, "steps_total": 0}
            return {"state": "idle", "objects": objects, **counts}
        return {
            "state": job.state,
            "done": job.done,
            "total": job.total,
            "steps_done": job.steps(),
            "steps_total": job.steps_total,
            "objects": job.objects,
            "error": job.error,
        }

    def masks(self, token: str, start: int) -> dict[str, Any]:
        """Tracked frames from position ``start`` of the tracker's order."""
        session = self.get(token)
        stop = min(len(session.order), start + MAX_PAGE)
        frames = [
            {"frame_index": i, "objects": session.tracked[i]} for i in session.order[start:stop]
        ]
        state = session.job.state if session.job is not None else "idle"
        return {"frames": frames, "next": max(stop, start), "state": state}

    def export(self, token: str) -> tuple[bytes, str]:
        """The tracked masks as ``segany track``'s SA-V-like ``masklets.json``: (content,
        file name)."""
        session = self.get(token)
        if session.job is None or session.job.state != "done":
            raise ApiError(409, "no tracked masks yet: track the objects first, then download")
        from ..video.outputs import MASKLETS

        try:
            data = (session.folder / EXPORT_DIR / MASKLETS).read_bytes()
        except FileNotFoundError:  # closed meanwhile
            raise ApiError(404, "this video was closed: open it again") from None
        stem = re.sub(r"[^\w.-]+", "_", Path(session.name).stem).strip("._") or "video"
        return data, f"{stem}.masklets.json"  # a plain name: it goes in a header


class CountingPredictor:
    """The predictor, counting the frames the tracker embeds (each frame once per walk): the
    job's progress during the walk back, before :func:`~segany.video.track` gives a frame."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.embedded = 0

    def embed(self, image: np.ndarray, image_format: str = "RGB") -> Embedding:
        self.embedded += 1
        return self.predictor.embed(image, image_format)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)


def tracker_steps(frames: int, keys: list[tuple[int, int]]) -> int:
    """Frames :func:`~segany.video.track` embeds for prompts at (object, frame) ``keys``: from
    the latest first prompt of an object back to frame 0, then from the earliest one forwards."""
    first: dict[int, int] = {}
    for object_id, index in sorted(keys, key=lambda k: k[1]):
        first.setdefault(object_id, index)
    back = max(first.values())
    return frames - min(first.values()) + (back + 1 if back > 0 else 0)


def _next_frame(steps: Any, outputs: Any) -> tuple[int, list[dict[str, Any]]] | None:
    """The tracker's next frame (in the worker thread): written to ``outputs`` and returned as
    JSON records; ``None`` at the end."""
    item = next(steps, None)
    if item is None:
        return None
    index, masks = item
    outputs.add(index, None, masks)
    records = [
        object_record(m.object_id, m.mask, m.score, m.lost) for _, m in sorted(masks.items())
    ]
    return int(index), records


def _read_frame(path: Path) -> np.ndarray:
    try:
        return decode_image(path.read_bytes(), max_pixels=None)
    except FileNotFoundError:
        raise ApiError(404, "this video was closed: open it again") from None
