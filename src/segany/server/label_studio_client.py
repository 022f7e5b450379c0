"""Fetching a task's image from Label Studio.

A task's data holds the image as a URL: relative to Label Studio for uploaded and served files
(``/data/upload/...``, ``/data/local-files/?d=...``), or absolute. Label Studio's own URLs
need its API token: a legacy token goes as ``Authorization: Token ...``; a personal access
token (a JWT) is exchanged for a short-lived access token first (``/api/token/refresh``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from anyio import to_thread

from .errors import ApiError

TIMEOUT_SECONDS = 30
ACCESS_SECONDS = 240  # reuse an exchanged access token this long (Label Studio's last 5 min)


@dataclass
class LabelStudioClient:
    """Label Studio at ``url`` with ``token`` (either may come later, from ``/setup``)."""

    url: str | None = None
    token: str | None = None
    max_bytes: int = 32 * 2**20
    _access: tuple[str, float] | None = None

    def configure(self, hostname: object, access_token: object) -> None:
        """Take what ``/setup`` tells (Label Studio's address and the project owner's token)
        when neither was given on the command line: both from one source, so a token given
        here never goes to an address someone else named."""
        if self.url or self.token:
            return
        if isinstance(hostname, str) and hostname.startswith(("http://", "https://")):
            self.url = hostname.rstrip("/")
            self.token = access_token if isinstance(access_token, str) and access_token else None

    def resolve(self, location: str) -> tuple[str, bool]:
        """The absolute URL of a task's image and whether it is Label Studio's own (so the
        token goes with it)."""
        parsed = urllib.parse.urlsplit(location)
        if parsed.scheme in ("http", "https"):
            own = bool(self.url) and location.startswith(self.url.rstrip("/") + "/")
            return location, own
        if parsed.scheme or not location.startswith("/"):
            raise ApiError(
                422,
                f"the task's image {location[:80]!r} is not an http(s) URL or a Label Studio "
                "path; cloud storage URLs are not supported",
            )
        if not self.url:
            raise ApiError(
                422,
                f"the task's image {location[:80]!r} is on Label Studio, whose address is not "
                "known: start segany with --label-studio-url (or LABEL_STUDIO_URL)",
            )
        return self.url.rstrip("/") + location, True

    def _authorization(self) -> dict[str, str]:
        if not self.token:
            return {}
        if self.token.count(".") != 2:  # a legacy token
            return {"Authorization": f"Token {self.token}"}
        if self._access is None or self._access[1] < time.monotonic():
            body = json.dumps({"refresh": self.token}).encode()
            answer = self._get(
                f"{self.url}/api/token/refresh",
                {"Content-Type": "application/json"},
                body,
            )
            try:
                access = json.loads(answer)["access"]
            except (ValueError, KeyError, TypeError):
                raise ApiError(502, "Label Studio did not exchange the token") from None
            self._access = (access, time.monotonic() + ACCESS_SECONDS)
        return {"Authorization": f"Bearer {self._access[0]}"}

    def _get(self, url: str, headers: dict[str, str], body: bytes | None = None) -> bytes:
        request = urllib.request.Request(url, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                data = response.read(self.max_bytes + 1)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise ApiError(
                    403,
                    f"Label Studio refused {url} ({exc.code}): give segany a valid token "
                    "(--label-studio-token or LABEL_STUDIO_API_KEY)",
                ) from None
            status = 404 if exc.code == 404 else 502
            raise ApiError(status, f"fetching {url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(502, f"fetching {url}: {reason}") from None
        if len(data) > self.max_bytes:
            raise ApiError(413, f"{url}: larger than {self.max_bytes / 2**20:.0f} MB")
        return data

    def _fetch(self, location: str) -> bytes:
        url, own = self.resolve(location)
        return self._get(url, self._authorization() if own else {})

    async def fetch(self, location: str) -> bytes:
        """The bytes of the image at ``location`` (fetched in a worker thread)."""
        return await to_thread.run_sync(self._fetch, location)
