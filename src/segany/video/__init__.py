"""Video: prompt an object on one frame, follow it through the clip.

SAM segments single images; this room follows objects across frames with it. Each frame is
embedded once and shared by every object; each object's prompt on a frame comes from its
result on the previous one (:mod:`.follow`), a lost object is searched for again
(:mod:`.reacquire`). :class:`VideoTracker` takes frames one at a time (a stream);
:func:`track` walks a whole clip forwards and backwards from each prompt frame.
"""

from .frames import FrameSource, VideoWriter, open_frames, stream_frames
from .prompts import ObjectPrompt, TrackedMask, TrackSettings, VideoInputError
from .propagation import track
from .tracker import VideoTracker

__all__ = [
    "FrameSource",
    "ObjectPrompt",
    "TrackSettings",
    "TrackedMask",
    "VideoInputError",
    "VideoTracker",
    "VideoWriter",
    "open_frames",
    "stream_frames",
    "track",
]
