"""The load test (``benchmarks/load_test.py``) at its acceptance size: 20 concurrent uploads
and 200 embedding fetches against a real `segany serve` on localhost, no error, no lost
upload, within a time bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[1]


def test_concurrent_uploads_and_fetches(tmp_path):
    output = tmp_path / "load.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "load_test.py"),
        "--uploads",
        "20",
        "--fetches",
        "200",
        "--deadline",
        "240",
        "--json",
        str(output),
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result["errors"] == []
    assert result["fetches"] == 200
    assert result["server_status"]["encoder_runs"] == 20
    assert result["server_status"]["cache_entries"] == 20
