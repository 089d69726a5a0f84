"""``hyperadapt serve``: runs and PEFT adapters behind one OpenAI-compatible HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from hyperadapt.cli._errors import console
from hyperadapt.errors import UserError

SHUTDOWN_GRACE_S = 10  # seconds an open request gets to finish after SIGTERM


def check_listenable(host: str, port: int) -> None:
    """Fail in one line, before any model loads, when ``host:port`` cannot be listened on (the port is taken,
    or the address is not this machine's). Raises ``UserError``."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise UserError(f"--host {host!r} is not an address of this machine: {err.strerror}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closed port is free
        try:
            probe.bind(address)
        except OSError as err:
            raise UserError(
                f"cannot listen on {host}:{port}: {err.strerror}; pick another --port or stop what holds it"
            ) from None


def serve(
    runs: Annotated[
        list[str] | None, typer.Argument(help="runs (any that eval --run loads): PATH or NAME=PATH")
    ] = None,
    model: Annotated[str | None, typer.Option(help="base model (default: the runs' own)")] = None,
    lora_modules: Annotated[list[str] | None, typer.Option(help="NAME=PEFT_DIR (repeatable)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 8000,
    api_key: Annotated[str | None, typer.Option(envvar="HYPERADAPT_API_KEY", help="require this bearer token")] = None,
    max_batch: Annotated[int, typer.Option(help="most sequences decoded together")] = 32,
    gather_ms: Annotated[float, typer.Option(help="how long an idle server waits to fill a batch")] = 5.0,
    cache_mb: Annotated[float, typer.Option(help="memory for generated adapters and β, per condition (LRU)")] = 512.0,
    max_tokens: Annotated[int, typer.Option(help="largest max_tokens a request may ask for")] = 512,
    max_prompt_tokens: Annotated[int, typer.Option(help="longest prompt in tokens")] = 2048,
    max_prompts: Annotated[int, typer.Option(help="most prompts in one request's list")] = 64,
    export_lora_rank: Annotated[int, typer.Option(help="largest rank /v1/adapters exports (a vLLM rank)")] = 16,
    max_loras: Annotated[int, typer.Option(help="most adapters loaded at run time")] = 32,
    max_lora_rank: Annotated[int, typer.Option(help="largest rank of an adapter loaded at run time")] = 64,
    lora_cache_mb: Annotated[float, typer.Option(help="memory for adapters loaded at run time")] = 512.0,
    allow_runtime_lora: Annotated[bool, typer.Option(help="allow /v1/load_lora_adapter and unload")] = True,
    engine: Annotated[
        str,
        typer.Option(help="own (hyperadapt's decoding loop) or vllm (a vLLM server answers; `make vllm` installs it)"),
    ] = "own",
    vllm_url: Annotated[
        str | None,
        typer.Option(
            help="with --engine vllm: a running vLLM server to use instead of starting one (e.g. http://gpu-host:8000)"
        ),
    ] = None,
    vllm_max_loras: Annotated[int, typer.Option(min=1, help="with --engine vllm: adapters in one vLLM batch")] = 8,
    vllm_adapters: Annotated[
        int, typer.Option(min=1, help="with --engine vllm: generated adapters kept on disk")
    ] = 512,
) -> None:
    """Serve runs over an OpenAI-compatible HTTP API; the request's model field picks the run or adapter.

    Example: hyperadapt serve runs/tagi runs/megan cl=runs/cl/switchcit --port 8000
    """
    import uvicorn

    from hyperadapt.serve import ServeConfig, build_server, create_app

    cfg = ServeConfig(
        max_batch=max_batch,
        gather_ms=gather_ms,
        cache_mb=cache_mb,
        max_tokens=max_tokens,
        max_prompt_tokens=max_prompt_tokens,
        max_prompts=max_prompts,
        export_lora_rank=export_lora_rank,
        max_loras=max_loras,
        max_lora_rank=max_lora_rank,
        lora_cache_mb=lora_cache_mb,
        allow_runtime_lora=allow_runtime_lora,
        api_key=api_key,
    )
    if engine not in ("own", "vllm"):
        raise typer.BadParameter(f"--engine is 'own' or 'vllm', not {engine!r}")
    check_listenable(host, port)
    if engine == "vllm" and vllm_url is None:
        from hyperadapt.vllm import vllm_python

        vllm_python()  # a missing `make vllm` is one line, before the model loads
    server = build_server(runs or [], cfg, adapters=lora_modules or [], model=model)
    if engine == "vllm":
        from hyperadapt.serve.vllm_engine import use_vllm, vllm_config

        vllm = use_vllm(
            server,
            None if vllm_url else vllm_config(server, export_lora_rank, vllm_max_loras),
            url=vllm_url,
            max_adapters=vllm_adapters,
        )
        from hyperadapt.vllm import VllmUnavailable

        console.print("starting vLLM" if vllm_url is None else f"connecting to vLLM at {vllm_url}", markup=False)
        try:  # before the app, so that a vLLM that cannot serve is one line, not uvicorn's traceback
            vllm.start()
        except VllmUnavailable as err:
            vllm.stop()
            raise UserError(str(err)) from err
    console.print(f"serving {', '.join(server.targets)} on http://{host}:{port}/v1", markup=False)
    # a request still open at SIGTERM gets SHUTDOWN_GRACE_S to finish; then the engine ends it with a 503
    try:
        uvicorn.run(
            create_app(server), host=host, port=port, log_level="info", timeout_graceful_shutdown=SHUTDOWN_GRACE_S
        )
    finally:  # the app stops the engine when it ran; a vLLM started above must not outlive a failed start
        server.engine.stop()
