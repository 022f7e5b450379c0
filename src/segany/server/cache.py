"""The on-disk embedding cache: one folder per image, named by the SHA-256 of its bytes.

An entry holds the uploaded bytes (``image``), the :class:`~segany.Embedding`
(``embedding.safetensors``) and files derived later (the display PNG, segment-everything
results). Entries appear atomically (written in a temporary folder, then renamed), and the
least recently used ones are evicted when the total size passes the budget. Keys are checked
against :data:`KEY_PATTERN` before they name anything on disk, so no request can reach a path
outside the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..formats.files import atomic_write_bytes
from ..inference.embedding import Embedding

KEY_PATTERN = r"^[0-9a-f]{64}$"
_KEY = re.compile(KEY_PATTERN)
IMAGE_FILE = "image"
EMBEDDING_FILE = "embedding.safetensors"
TMP_PREFIX = ".tmp-"


def content_key(data: bytes) -> str:
    """The cache key of some bytes: their SHA-256, hex."""
    return hashlib.sha256(data).hexdigest()


def check_key(key: str) -> str:
    """``key`` itself if it is a well-formed content key; ``ValueError`` otherwise."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError("malformed image id: expected 64 lowercase hex digits")
    return key


@dataclass(frozen=True)
class CacheEntry:
    """One cached image; paths are inside the cache folder."""

    key: str
    folder: Path

    @property
    def image_path(self) -> Path:
        return self.folder / IMAGE_FILE

    @property
    def embedding_path(self) -> Path:
        return self.folder / EMBEDDING_FILE

    def file(self, name: str) -> Path:
        """A derived file of this entry (``name`` is chosen by the server, never a request)."""
        if "/" in name or name.startswith(".") or name in (IMAGE_FILE, EMBEDDING_FILE):
            raise ValueError(f"bad cache file name {name!r}")
        return self.folder / name


def _folder_size(folder: Path) -> int:
    total = 0
    for path in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile
            total += path.stat().st_size
    return total


class EmbeddingCache:
    """Content-addressed, size-bounded, thread-safe.

    ``max_bytes``: the budget; after every write the least recently used entries are removed
    until the total fits (the entry just written is kept even if it alone is over budget).
    Existing entries in ``root`` are adopted at start, oldest first.
    """

    def __init__(self, root: str | os.PathLike[str], max_bytes: int) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self.evictions = 0
        self._adopt()

    def _adopt(self) -> None:
        found = []
        for folder in self.root.iterdir():
            if folder.name.startswith(TMP_PREFIX):  # left by a crash mid-write
                shutil.rmtree(folder, ignore_errors=True)
            elif folder.is_dir() and _KEY.match(folder.name):
                if (folder / EMBEDDING_FILE).is_file() and (folder / IMAGE_FILE).is_file():
                    found.append((folder.stat().st_mtime, folder.name, _folder_size(folder)))
                else:
                    shutil.rmtree(folder, ignore_errors=True)
        for _, key, size in sorted(found):
            self._sizes[key] = size
        with self._lock:
            self._evict(keep=None)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._sizes)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._sizes

    def get(self, key: str) -> CacheEntry | None:
        """The entry for ``key`` (marked as just used), or ``None``."""
        check_key(key)
        with self._lock:
            if key not in self._sizes:
                return None
            self._sizes.move_to_end(key)
        folder = self.root / key
        try:
            os.utime(folder)  # the order survives a restart
        except FileNotFoundError:  # evicted by another thread just now
            return None
        return CacheEntry(key, folder)

    def put(self, key: str, image: bytes, embedding: Embedding) -> CacheEntry:
        """Store an image and its embedding under ``key`` (atomically), then evict."""
        check_key(key)
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.root))
        try:
            (tmp / IMAGE_FILE).write_bytes(image)
            embedding.save(tmp / EMBEDDING_FILE)
            size = _folder_size(tmp)
            target = self.root / key
            with self._lock:
                if key in self._sizes:  # stored meanwhile by another request: keep that one
                    shutil.rmtree(tmp, ignore_errors=True)
                    self._sizes.move_to_end(key)
                else:
                    if target.exists():  # a stale folder not in the index
                        shutil.rmtree(target)
                    os.replace(tmp, target)
                    self._sizes[key] = size
                self._evict(keep=key)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return CacheEntry(key, target)

    def add_file(self, entry: CacheEntry, name: str, data: bytes) -> Path | None:
        """Write a derived file into an entry (atomically) and count it; ``None`` if the entry
        was evicted meanwhile."""
        path = entry.file(name)
        with self._lock:
            if entry.key not in self._sizes:
                return None
            try:
                atomic_write_bytes(path, data)
            except FileNotFoundError:
                return None
            self._sizes[entry.key] = _folder_size(entry.folder)
            self._sizes.move_to_end(entry.key)
            self._evict(keep=entry.key)
        return path

    def read_or_make(self, entry: CacheEntry, name: str, make: Callable[[], bytes]) -> bytes:
        """The derived file ``name`` of ``entry``, made and stored on first use."""
        path = entry.file(name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            data = make()
            self.add_file(entry, name, data)
            return data

    def _evict(self, keep: str | None) -> None:
        """Drop least recently used entries until the total fits (caller holds the lock)."""
        total = sum(self._sizes.values())
        for key in list(self._sizes):
            if total <= self.max_bytes:
                break
            if key == keep:
                continue
            total -= self._sizes.pop(key)
            shutil.rmtree(self.root / key, ignore_errors=True)
            self.evictions += 1
