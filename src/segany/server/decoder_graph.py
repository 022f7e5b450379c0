"""The decoder graph the page runs: exported once per model into the cache folder, or a graph
exported beforehand, checked against the loaded model."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from ..modeling.sam import Sam

DECODER_FILE = "decoder.onnx"


class DecoderGraph:
    """The ONNX file of ``model``'s prompt encoder + mask decoder (official interface, all 4
    masks): ``given`` (exported beforehand) or ``<root>/models/<encoder id>/decoder.onnx``."""

    def __init__(
        self, model: Sam, encoder_id: str, root: Path, given: str | os.PathLike[str] | None
    ) -> None:
        self.model = model
        self.encoder_id = encoder_id
        self.given = given is not None
        self.path = Path(given) if given else root / "models" / encoder_id / DECODER_FILE
        self._lock = threading.Lock()

    def ensure(self) -> Path:
        """The graph's path, exported on first use."""
        from ..export import export_onnx, read_metadata

        with self._lock:
            if self.path.is_file():
                if self.given:
                    self._check(read_metadata(self.path))
                return self.path
            if self.given:
                raise ValueError(f"{self.path}: no such decoder graph")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{os.getpid()}-{DECODER_FILE}")
            export_onnx(self.model, tmp)
            os.replace(tmp, self.path)
            return self.path

    def _check(self, meta: dict[str, str]) -> None:
        """Refuse a given graph of other weights, or one that returns a single mask."""
        options = json.loads(meta.get("options", "{}"))
        if meta.get("encoder_id") and meta["encoder_id"] != self.encoder_id:
            raise ValueError(f"{self.path}: exported from other weights than the loaded model")
        if options.get("return_single_mask"):
            raise ValueError(
                f"{self.path}: exported with --return-single-mask; the page needs all 4 masks"
            )
