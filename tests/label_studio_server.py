"""A throwaway Label Studio server for the ML backend's end-to-end test: the ``label-studio``
of its own virtual environment (``make .venv-label-studio/migrated-data``, as ``make test``
does; its pinned dependencies never meet the project's), in a temporary data folder (a copy of
the database the Makefile migrated, when there), on a free localhost port, with a new user and
token; stopped and removed on exit.

Label Studio refuses ML backends and webhooks on local addresses unless told
(``ML_BLOCK_LOCAL_IP``, ``SSRF_PROTECTION_ENABLED``); its update check and error reporting
(which would reach the internet) are off.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from postgres_server import free_port

REPO = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("SEGANY_LABEL_STUDIO_VENV") or REPO / ".venv-label-studio")
MIGRATED = VENV / "migrated-data"  # a migrated database to start from (Makefile), if there
QUIET = {
    "ML_BLOCK_LOCAL_IP": "false",
    "SSRF_PROTECTION_ENABLED": "false",
    "LATEST_VERSION_CHECK": "false",
    "COLLECT_ANALYTICS": "false",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
}


class LabelStudioMissingError(RuntimeError):
    """No Label Studio environment here."""


def venv_python() -> Path:
    """The Label Studio environment's Python (its SDK decodes brush RLE as Label Studio does)."""
    python, command = VENV / "bin" / "python", VENV / "bin" / "label-studio"
    if not (python.is_file() and command.is_file()):
        raise LabelStudioMissingError(
            f"no Label Studio in {VENV}: `make .venv-label-studio/migrated-data` installs it "
            "(label-studio from PyPI, in a virtual environment of its own)"
        )
    return python


@dataclass
class LabelStudio:
    """A starting or running server; :meth:`api` calls its REST API with the user's token."""

    url: str
    token: str
    folder: Path
    process: subprocess.Popen[bytes]

    def wait_ready(self, timeout: float = 180) -> None:
        """Until ``/health`` answers (the first start runs Django's migrations)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Label Studio exited ({self.process.returncode}):\n{self.log}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"Label Studio did not start in {timeout:.0f} s:\n{self.log}")

    @property
    def log(self) -> str:
        path = self.folder / "log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Token {self.token}"}
        response = httpx.request(
            method, f"{self.url}{path}", headers=headers, timeout=120, **kwargs
        )
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server and any child it started
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_label_studio() -> LabelStudio:
    """Launch a fresh server and return at once (:meth:`LabelStudio.wait_ready` waits)."""
    venv_python()
    folder = Path(tempfile.mkdtemp(prefix="segany-ls-"))
    port, token = free_port(), secrets.token_hex(20)
    command = [
        str(VENV / "bin" / "label-studio"),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(folder / "data"),
        "--username",
        "annotator@example.com",
        "--password",
        secrets.token_hex(12),
        "--user-token",
        token,
        "--enable-legacy-api-token",
    ]
    if MIGRATED.is_dir():  # made by the Makefile: no migrations to run here
        shutil.copytree(MIGRATED, folder / "data")
    env = {**os.environ, **QUIET, "LABEL_STUDIO_BASE_DATA_DIR": str(folder / "data")}
    with open(folder / "log", "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return LabelStudio(f"http://127.0.0.1:{port}", token, folder, process)


SDK_SCRIPT = """
import json, sys
import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle
jobs, answers = json.load(sys.stdin), []
for job in jobs:
    if "rle" in job:
        values = decode_rle(job["rle"]).reshape(job["height"], job["width"], 4)
        answers.append({"mask": (values[..., 3] > 0).astype(int).tolist(),
                        "values": sorted(int(v) for v in np.unique(values))})
    else:
        answers.append({"rle": mask2rle(np.array(job["mask"], dtype=np.uint8) * 255)})
json.dump(answers, sys.stdout)
"""


def label_studio_sdk(python: Path, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Label Studio's own brush codec (label_studio_sdk.converter.brush) on each job, in its
    environment: ``{"rle", "height", "width"}`` decodes (the mask and the RGBA values seen),
    ``{"mask"}`` encodes."""
    result = subprocess.run(
        [str(python), "-c", SDK_SCRIPT],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
