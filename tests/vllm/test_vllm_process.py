"""Starting, watching and stopping vLLM, with stand-in interpreters for vLLM's environment (no vLLM needed)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from hyperadapt.vllm import VllmProcess, VllmServerConfig, VllmUnavailable, vllm_python

# answers GET /health on the --port it is given, as vLLM's server does once it is ready
HEALTH_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port = int(sys.argv[sys.argv.index("--port") + 1])
class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
print("fake vLLM up with", " ".join(sys.argv[1:]), flush=True)
HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def fake_python(tmp_path: Path, body: str) -> Path:
    """A stand-in for ``.venv-vllm/bin/python``: a shell script run with vLLM's arguments."""
    path = tmp_path / "venv" / "bin" / "python"
    path.parent.mkdir(parents=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def config(tmp_path: Path, python: Path, **kw) -> VllmServerConfig:
    return VllmServerConfig(model=str(model_dir(tmp_path)), python=python, log_file=tmp_path / "vllm.log", **kw)


def test_a_missing_environment_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.delenv("HYPERADAPT_VLLM_PYTHON", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"\.venv-vllm/bin/python does not exist\): run `make vllm`"):
        vllm_python()
    with pytest.raises(FileNotFoundError, match="make vllm"):
        VllmProcess(VllmServerConfig(model=str(model_dir(tmp_path)))).start()


def test_the_environment_variable_names_vllms_python(tmp_path, monkeypatch):
    python = fake_python(tmp_path, "exit 0")
    monkeypatch.setenv("HYPERADAPT_VLLM_PYTHON", str(python))
    assert vllm_python() == python


def test_a_folder_that_is_no_model_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a model folder"):
        VllmServerConfig(model=str(tmp_path)).command(Path("python"), 8000)


def test_the_command_and_environment_are_vllms(tmp_path):
    cfg = VllmServerConfig(model=str(model_dir(tmp_path)), max_cpu_loras=8, cpu_threads="0", kv_cache_gib=2)
    cmd = cfg.command(Path("/env/bin/python"), 8123)
    assert cmd[:3] == ["/env/bin/python", "-m", "vllm.entrypoints.openai.api_server"]

    def flag(name: str) -> str:
        return cmd[cmd.index(name) + 1]

    assert "--enable-lora" in cmd and flag("--port") == "8123" and flag("--max-cpu-loras") == "8"
    assert flag("--max-lora-rank") == "16" and flag("--dtype") == "float32"
    env = cfg.environment()
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0"


def test_a_server_that_dies_at_start_gives_its_exit_code_and_log(tmp_path):
    python = fake_python(tmp_path, 'echo "ValueError: this model is not supported" >&2\nexit 3')
    with pytest.raises(VllmUnavailable, match=r"vLLM exited with code 3(.|\n)*this model is not supported") as err:
        VllmProcess(config(tmp_path, python)).start()
    assert err.value.status == 503


def test_a_server_that_never_gets_healthy_times_out_and_is_stopped(tmp_path):
    python = fake_python(tmp_path, f"echo $$ > {tmp_path}/pid\nexec sleep 60")
    with pytest.raises(VllmUnavailable, match="was not healthy within 1s"):
        VllmProcess(config(tmp_path, python, startup_timeout=1)).start()
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_started_server_answers_then_its_death_is_detected(tmp_path):
    python = fake_python(tmp_path, f'exec "{sys.executable}" -c \'{HEALTH_SERVER}\' "$@"')
    vllm = VllmProcess(config(tmp_path, python, startup_timeout=30))
    with vllm:
        assert httpx.get(f"{vllm.url}/health").status_code == 200
        vllm.check()
        assert "--enable-lora" in (tmp_path / "vllm.log").read_text()
        os.kill(vllm._proc.pid, 9)
        vllm._proc.wait()
        with pytest.raises(VllmUnavailable, match="vLLM exited with code -9"):
            vllm.check()


def test_a_connected_server_is_waited_for_and_checked_not_started(tmp_path):
    python = fake_python(tmp_path, f'exec "{sys.executable}" -c \'{HEALTH_SERVER}\' "$@"')
    with VllmProcess(config(tmp_path, python)) as running:
        remote = VllmProcess.connect(running.url + "/", timeout=5)
        assert remote.start() == running.url and not remote.owned
        remote.stop()  # not ours: still running
        remote.check()
    with pytest.raises(VllmUnavailable, match="does not answer /health"):
        remote.check()
    with pytest.raises(VllmUnavailable, match="was not healthy within 1s"):
        VllmProcess.connect(running.url, timeout=1).start()


def test_one_of_config_or_url():
    with pytest.raises(ValueError, match="either a config"):
        VllmProcess()
