"""``hyperadapt serve`` as a process: a load that fails in the engine thread is answered, and SIGTERM ends it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from safetensors.torch import save_file

from hyperadapt.testing import save_tiny_model


def test_a_failing_adapter_load_is_answered_and_sigterm_stops_the_server(tmp_path):
    model = save_tiny_model(tmp_path / "tiny")
    empty = tmp_path / "empty"  # a PEFT folder whose safetensors file holds no tensors (a StopIteration once)
    empty.mkdir()
    (empty / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 2, "lora_alpha": 2}')
    save_file({}, empty / "adapter_model.safetensors")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hyperadapt", "serve", "--model", str(model), "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url, seen = None, []
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline and (line := proc.stdout.readline()):
            seen.append(line)
            if m := re.search(r"Uvicorn running on (http://\S+)", line):
                url = m.group(1)
        assert url, "".join(seen)
        r = httpx.post(url + "/v1/load_lora_adapter", json={"lora_name": "e", "lora_path": str(empty)}, timeout=60)
        assert r.status_code == 400 and "holds no tensors" in r.json()["error"]["message"]
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
