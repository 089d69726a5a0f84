"""(No tests here.) A server on the tiny model with every kind of target, built in code."""

from __future__ import annotations

import torch

from hyperadapt.core import AdapterBank, inject
from hyperadapt.methods.megan import BetaHypernetwork, HypernetSpec, MeganMethod
from hyperadapt.methods.switch import RouterConfig, SwitchMethod, SwitchRouter
from hyperadapt.methods.switch.router import make_router_encoder
from hyperadapt.serve import ServeConfig, build_server
from hyperadapt.testing import random_tagi_method, tiny_model

ROUTED = {
    "plural": "Definition: Write the plural form.\n\nInput: box",
    "upper": "Definition: Upper case it.\n\nInput: x",
}


def tagi_method(model, tok):
    """A TAGI method with a random (untrained) hypernetwork whose B head is not zero: conditions differ."""
    return random_tagi_method(model, tok, rank=2, hidden=16, blocks=1, std=0.5, run="tiny")


def megan_method(model, tok, per_token: bool = True):
    torch.manual_seed(1)
    hyper = BetaHypernetwork(HypernetSpec.for_model(model, bottleneck=16, per_token=per_token))
    with torch.no_grad():
        for head in hyper.heads:
            head.out_proj.weight.normal_(std=2.0)
            head.out_proj.bias.normal_(std=2.0)
    return MeganMethod(model, tok, hyper.eval())


def switch_method(model, tok, routed=ROUTED, *, rank=2, std=0.5, epochs=200, confidence="softmax", threshold=None):
    """Two task adapters (random B of ``std``) and a switch fitted to tell ``routed``'s two texts apart (task
    name -> text); a ``threshold`` (with ``confidence="knn"``: cosine to a retained input) rejects other inputs."""
    inject(model, ("q_proj", "v_proj"), gating=False)
    torch.manual_seed(2)
    bank = AdapterBank.for_model(model, num_adapters=2, rank=rank)
    with torch.no_grad():
        for b in bank.lora_B:
            b.normal_(std=std)
    encoder = make_router_encoder("base", model, tok)
    router = SwitchRouter(encoder.dim, 2, RouterConfig(encoder="base", hidden=16, epochs=epochs, confidence=confidence))
    router.fit(encoder.encode(list(routed.values())), torch.tensor([0, 1]), seed=0)
    if threshold is not None:
        router.threshold = threshold
    return SwitchMethod(model, tok, bank, router, encoder, list(routed))


def tiny_server(**config):
    model, tok = tiny_model("llama")
    methods = {
        "tagi": tagi_method(model, tok),
        "megan": megan_method(model, tok),
        "megan-channel": megan_method(model, tok, per_token=False),
        "cl": switch_method(model, tok),
    }
    cfg = ServeConfig(**{"gather_ms": 100.0, "max_tokens": 64, "max_prompt_tokens": 200, **config})
    return build_server([], cfg, model_and_tokenizer=(model, tok), methods=methods)
