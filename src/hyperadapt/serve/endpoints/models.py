"""``GET /v1/models``: every name a request may use, with what it is and how its prompts are rendered."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hyperadapt.serve.endpoints.common import Json, authorize, server_of

router = APIRouter()


@router.get("/v1/models")
async def models(request: Request) -> Json:
    authorize(request)
    server = server_of(request)
    created = int(server.started)
    data = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "hyperadapt",
            "root": server.base_id,
            "kind": t.kind,
            "needs_condition": t.needs_condition,
            "prompt_setting": t.prompt_style.setting if t.prompt_style else None,
        }
        for name, t in server.targets.items()
    ]
    return {"object": "list", "data": data}
