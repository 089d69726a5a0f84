"""The real server (uvicorn on 127.0.0.1, a random port) on the tiny model, driven by the official openai client."""

from __future__ import annotations

import io
import json
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from serve_helpers import ROUTED, tiny_server

from hyperadapt.data.prompts import render
from hyperadapt.evaluation.generate import generate_batch
from hyperadapt.serve import RunningServer, create_app, vllm_problems

KEY = "secret"
CONDITIONS = ["Answer in capitals.", "Reverse the list.", "Write the plural form."]


@pytest.fixture(scope="module")
def served():
    server = tiny_server(api_key=KEY)
    running = RunningServer(create_app(server))
    yield server, running
    running.stop()


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served[1].url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def chat(client, model: str, text: str, condition: str | None = None, max_tokens: int = 6):
    extra = {"condition": condition} if condition is not None else None
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        max_tokens=max_tokens,
        temperature=0,
        extra_body=extra,
    )


def metric(url: str, name: str) -> float:
    lines = httpx.get(url + "/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name + " ") or line.startswith(name + "{"))


REQUESTS = [
    ("base", "the answer is", None),
    ("tagi", "a b c", CONDITIONS[0]),
    ("tagi", "a b c", CONDITIONS[1]),
    ("megan", "the answer is", CONDITIONS[0]),
    ("megan", "the answer is", CONDITIONS[2]),
    ("megan-channel", "a b c", CONDITIONS[1]),
    ("cl", ROUTED["plural"], None),
    ("cl", ROUTED["upper"], None),
    ("tagi", "the answer is", CONDITIONS[2]),
    ("base", "1 2 3 4", None),
]


def test_mixed_conditions_in_one_batch_equal_one_at_a_time(served, client):
    alone = [chat(client, m, t, c).choices[0].message.content for m, t, c in REQUESTS]
    before = metric(served[1].url, "hyperadapt_batch_size_count")
    with ThreadPoolExecutor(len(REQUESTS)) as pool:
        together = list(pool.map(lambda r: chat(client, *r).choices[0].message.content, REQUESTS))
    assert together == alone
    forwards = metric(served[1].url, "hyperadapt_batch_size_count") - before
    assert forwards < len(REQUESTS) * 7  # batched: fewer forward passes than requests × (prefill + 6 tokens)
    assert len(set(alone)) > 3  # the conditions do change the answers


def test_server_decoding_equals_transformers_generate(served, client):
    server, _ = served
    method = next(t.method for n, t in server.targets.items() if n == "megan")
    prompt = render(server.tokenizer, "the answer is")
    with method.condition([CONDITIONS[0]]):
        expected = generate_batch(server.model, server.tokenizer, [prompt], max_new_tokens=8)[0]
    got = chat(client, "megan", "the answer is", CONDITIONS[0], max_tokens=8).choices[0].message.content
    assert got.strip() == expected
    base = generate_batch(server.model, server.tokenizer, [prompt], max_new_tokens=8)[0]
    assert chat(client, "base", "the answer is", max_tokens=8).choices[0].message.content.strip() == base


def test_continual_run_routes_and_rejects(served, client):
    server, _ = served
    for task, text in ROUTED.items():
        assert chat(client, "cl", text).model_extra["route"] == f"cl:{task}"
    router = server.targets["cl"].method.router
    router.threshold = float("inf")  # every input below the threshold: rejected, answered by the base model
    try:
        rejected = chat(client, "cl", ROUTED["plural"])
    finally:
        router.threshold = float("-inf")
    assert rejected.model_extra["route"] == "cl:rejected->base"
    assert rejected.choices[0].message.content == chat(client, "base", ROUTED["plural"]).choices[0].message.content


def test_streaming_gives_the_same_text(served, client):
    whole = chat(client, "tagi", "a b c", CONDITIONS[0], max_tokens=10).choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="tagi",
            messages=[{"role": "user", "content": "a b c"}],
            max_tokens=10,
            temperature=0,
            stream=True,
            extra_body={"condition": CONDITIONS[0]},
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert chunks[-1].usage.completion_tokens >= 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    plain = client.completions.create(model="base", prompt="a b c", max_tokens=5, temperature=0)
    streamed = client.completions.create(model="base", prompt="a b c", max_tokens=5, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == plain.choices[0].text


def test_models_metrics_health_and_cache_hits(served, client):
    listed = {m.id: m.model_extra for m in client.models.list()}
    assert {"base", "tagi", "megan", "megan-channel", "cl"} <= set(listed)
    # how each run wants its prompt: TAGI with fusion reads the instruction in the prompt too
    assert listed["tagi"]["prompt_setting"] == "def" and listed["megan"]["prompt_setting"] == "none"
    assert listed["base"]["prompt_setting"] is None
    chat(client, "tagi", "x", "A condition seen twice.")
    again = chat(client, "tagi", "y", "A condition seen twice.")
    assert again.model_extra["cache_hit"] is True
    url = served[1].url
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    assert metric(url, "hyperadapt_condition_cache_hits_total") >= 1
    assert metric(url, "hyperadapt_generated_tokens_total") > 0


def test_auth_is_enforced(served):
    bad = openai.OpenAI(base_url=served[1].url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert httpx.post(served[1].url + "/v1/completions", json={"model": "base", "prompt": "x"}).status_code == 401


BAD = [
    ("/v1/completions", b"{not json", 400),
    ("/v1/completions", b"[1, 2]", 400),
    ("/v1/completions", {"prompt": "x"}, 400),
    ("/v1/completions", {"model": "nope", "prompt": "x"}, 404),
    ("/v1/completions", {"model": "tagi", "prompt": "x"}, 400),
    ("/v1/completions", {"model": "base", "prompt": "x", "condition": "c"}, 400),
    ("/v1/completions", {"model": "base", "prompt": "x", "max_tokens": 10_000}, 400),
    ("/v1/completions", {"model": "base", "prompt": "x", "max_tokens": 0}, 400),
    ("/v1/completions", {"model": "base", "prompt": "x", "temperature": 5}, 400),
    ("/v1/completions", {"model": "base", "prompt": "x", "n": 2}, 400),
    ("/v1/completions", {"model": "base", "prompt": ""}, 400),
    ("/v1/completions", {"model": "base", "prompt": "a " * 500}, 400),
    ("/v1/completions", {"model": "base", "prompt": ["a", "b"], "stream": True}, 400),
    ("/v1/completions", {"model": "base", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 400),
    ("/v1/completions", {"model": "tagi", "prompt": "x", "condition": "c" * 5000}, 400),
    ("/v1/completions", {"model": "base", "prompt": "x" * 2_000_000}, 413),
    ("/v1/chat/completions", {"model": "base", "messages": []}, 400),
    ("/v1/chat/completions", {"model": "base", "messages": [{"role": "robot", "content": "x"}]}, 400),
    ("/v1/chat/completions", {"model": "base", "messages": "hello"}, 400),
    ("/v1/adapters", {"model": "megan", "condition": "c"}, 400),
    ("/v1/adapters", {"model": "tagi"}, 400),
    ("/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "/no/such/folder"}, 400),
    ("/v1/load_lora_adapter", {"lora_name": "base", "lora_path": "/tmp"}, 409),
    ("/v1/unload_lora_adapter", {"lora_name": "tagi"}, 404),
    ("/v1/nothing", {}, 404),
]


@pytest.mark.parametrize(("path", "body", "status"), BAD)
def test_bad_requests_get_a_4xx_with_a_message(served, path, body, status):
    headers = {"authorization": f"Bearer {KEY}"}
    if isinstance(body, bytes):
        r = httpx.post(served[1].url + path, content=body, headers={**headers, "content-type": "application/json"})
    else:
        r = httpx.post(served[1].url + path, json=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


def test_generated_adapter_meets_vllm_constraints_and_loads_back(served, client, tmp_path):
    url, headers = served[1].url, {"authorization": f"Bearer {KEY}"}
    r = httpx.post(url + "/v1/adapters", json={"model": "tagi", "condition": CONDITIONS[1]}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    folder = tmp_path / "adapter"
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(folder)
    assert vllm_problems(folder, max_lora_rank=8) == []
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 2 and not config.get("rank_pattern")
    body = {"lora_name": "reverse", "lora_path": str(folder)}
    assert httpx.post(url + "/v1/load_lora_adapter", json=body, headers=headers).status_code == 200
    loaded = chat(client, "reverse", "a b c")
    assert loaded.model_extra["route"] == "adapter:reverse"
    assert loaded.choices[0].message.content == chat(client, "tagi", "a b c", CONDITIONS[1]).choices[0].message.content
    gone = httpx.post(url + "/v1/unload_lora_adapter", json={"lora_name": "reverse"}, headers=headers)
    assert gone.status_code == 200
    with pytest.raises(openai.NotFoundError):
        chat(client, "reverse", "a b c")


def test_client_disconnect_frees_its_slot(served):
    url = served[1].url
    body = {"model": "base", "prompt": "a b c", "max_tokens": 64, "temperature": 0, "stream": True}
    before = metric(url, "hyperadapt_cancelled_total")
    with httpx.stream("POST", url + "/v1/completions", json=body, headers={"authorization": f"Bearer {KEY}"}) as r:
        next(r.iter_lines())
    deadline = time.monotonic() + 10
    while metric(url, "hyperadapt_active_sequences") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(url, "hyperadapt_active_sequences") == 0
    assert metric(url, "hyperadapt_cancelled_total") >= before  # cancelled, or it had finished already
