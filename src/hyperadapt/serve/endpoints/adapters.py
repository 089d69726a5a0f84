"""Adapters: ``POST /v1/adapters`` (a run's generated adapter as a zipped PEFT folder, by the method's own
export) and vLLM's ``/v1/load_lora_adapter`` / ``/v1/unload_lora_adapter`` (PEFT folders by name, through
the server's :class:`hyperadapt.serve.adapters.AdapterStore`: its limits, name rule and 409s; ``replace: true``
swaps a loaded adapter for a new folder under the same name)."""

from __future__ import annotations

import asyncio
import io
import tempfile
import zipfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import Field

from hyperadapt.serve.endpoints.common import ApiError, Body, parse, server_of
from hyperadapt.serve.errors import RequestRefused
from hyperadapt.serve.runs import MethodTarget
from hyperadapt.serve.vllm_compat import vllm_problems

router = APIRouter()


class AdapterRequest(Body):
    model: str
    condition: str | None = None
    instruction: str | None = None


class LoadLoraRequest(Body):
    lora_name: str = Field(min_length=1, max_length=200)
    lora_path: str = Field(min_length=1)
    replace: bool = False


class UnloadLoraRequest(Body):
    lora_name: str = Field(min_length=1)


@router.post("/v1/adapters")
async def adapters(request: Request) -> Response:
    req = await parse(request, AdapterRequest)
    server, cfg = server_of(request), server_of(request).config
    target = server.targets.get(req.model)
    if not isinstance(target, MethodTarget) or not target.exports_adapters:
        names = [n for n, t in server.targets.items() if isinstance(t, MethodTarget) and t.exports_adapters]
        raise ApiError(
            400 if target else 404,
            f"model {req.model!r} does not generate adapters: use a TAGI or "
            f"Hypter run ({', '.join(names) or 'none loaded'})",
            "model",
        )
    condition = req.condition or req.instruction or ""
    if not condition.strip() or len(condition) > cfg.max_condition_chars:
        raise ApiError(400, f"give 'condition' (the instruction), 1..{cfg.max_condition_chars} characters", "condition")

    def export() -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = target.export_adapter(condition, Path(tmp) / "adapter")
            problems = vllm_problems(folder, cfg.export_lora_rank)
            if problems:
                raise ValueError("the generated adapter would not load in vLLM: " + "; ".join(problems))
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(folder.iterdir()):
                    zf.write(f, f.name)
            return buf.getvalue()

    try:
        data = await asyncio.wrap_future(server.engine.call(export))
    except ValueError as err:
        raise ApiError(422, str(err), "model") from err
    return Response(
        data, media_type="application/zip", headers={"content-disposition": 'attachment; filename="adapter.zip"'}
    )


@router.post("/v1/load_lora_adapter")
async def load_lora_adapter(request: Request) -> Response:
    req = await parse(request, LoadLoraRequest)
    server = server_of(request)
    if not server.config.allow_runtime_lora:
        raise ApiError(403, "loading adapters at run time is off: start the server with --allow-runtime-lora")
    try:
        await server.adapters.load(server.engine, req.lora_name, req.lora_path, server.model, req.replace)
    except RequestRefused:
        raise
    except (ValueError, FileNotFoundError, OSError) as err:
        raise ApiError(400, f"cannot load {req.lora_path!r}: {err}", "lora_path") from err
    done = "replaced" if req.replace else "added"
    return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' {done} successfully.")


@router.post("/v1/unload_lora_adapter")
async def unload_lora_adapter(request: Request) -> Response:
    req = await parse(request, UnloadLoraRequest)
    server = server_of(request)
    if not server.config.allow_runtime_lora:
        raise ApiError(403, "unloading adapters at run time is off: start the server with --allow-runtime-lora")
    server.adapters.unload(req.lora_name)
    return PlainTextResponse(f"Success: LoRA adapter '{req.lora_name}' removed successfully.")
