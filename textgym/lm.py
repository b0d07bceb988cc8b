"""Loading a causal LM and its tokenizer: local directories, bundled assets and the Hub
(offline-aware), safetensors only, remote code only on opt-in. The KV-cached incremental
scoring of a loaded model is `textgym.kv_cache`."""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import snapshot_download
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

BUNDLED_MODEL = Path(__file__).resolve().parent / "assets" / "model"

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device={device!r} is not a torch device: expected e.g. 'cpu', 'cuda' or 'cuda:1'"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available here; expected 'cpu'")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype={dtype!r} is not supported: expected one of {sorted(_DTYPES)}")


def _model_source(name_or_path: str | os.PathLike | None, argument: str) -> str:
    """Return a loadable name or directory; raise a clear error for a path that does not
    exist, or fast for a Hub name that is not cached while the Hub is off or out of reach."""
    if name_or_path is None:
        return str(BUNDLED_MODEL)
    if not isinstance(name_or_path, str | os.PathLike):
        raise TypeError(
            f"{argument}={name_or_path!r} has type {type(name_or_path).__name__}: expected a "
            "Hugging Face model name or a path to a local model directory"
        )
    source = os.fspath(name_or_path)
    if os.path.exists(source):
        return source
    # Hub names look like "gpt2" or "org/name"; anything else is meant as a local path.
    looks_like_path = (
        source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or os.sep in source.replace("/", "")
    )
    if looks_like_path or not source:
        raise FileNotFoundError(
            f"{argument}={source!r} does not exist: expected a Hugging Face model name or a "
            "local directory saved with save_pretrained"
        )
    offline = _hub_offline()
    if not offline and _hub_reachable():
        return source  # a normal load, which also looks for a newer revision on the Hub
    # Without the Hub, transformers would retry for a minute before failing: load the cached
    # snapshot, or fail now.
    try:
        return snapshot_download(source, local_files_only=True)
    except (OSError, ValueError):
        reason = (
            "offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)"
            if offline
            else f"the Hub at {_hub_endpoint()} cannot be reached"
        )
        raise ValueError(
            f"{argument}={source!r} is neither a local directory nor in the Hugging Face "
            f"cache, and {reason}, so nothing is downloaded: expected a local directory "
            "saved with save_pretrained or a Hub name that is cached or reachable"
        ) from None


def _hub_offline() -> bool:
    """Offline mode, read from the environment now (huggingface_hub reads it at import)."""
    flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return hf_constants.HF_HUB_OFFLINE or any(
        flag.upper() in ("1", "ON", "YES", "TRUE") for flag in flags
    )


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or hf_constants.ENDPOINT


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub (or to the proxy in front of it) opens in time."""
    url = urlsplit(_hub_endpoint())
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urlsplit(proxy)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No weight-loading progress bar: one bar per env or policy construction is noise in RL
    logs. The previous setting is restored afterwards."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_tokenizer(
    name_or_path: str | os.PathLike | None = None,
    *,
    trust_remote_code: bool = False,
    argument: str = "model",
) -> PreTrainedTokenizerBase:
    """Load a tokenizer and make sure it can end and pad sequences.

    A tokenizer without a pad token gets its EOS token as pad (the attention mask tells
    padding apart); one without an EOS token cannot end an episode and is rejected.
    """
    source = _model_source(name_or_path, argument)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{argument}={source!r}: could not load a tokenizer ({err}); expected a Hugging "
            "Face model name or a local directory with tokenizer files"
        ) from err
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"{argument}={source!r}: the tokenizer has no eos_token, so an episode could not "
            "end on end-of-sequence; expected a tokenizer that defines eos_token"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    name_or_path: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    argument: str = "model",
) -> PreTrainedModel:
    """Load a causal LM from safetensors, frozen and in eval mode (dropout off)."""
    source = _model_source(name_or_path, argument)
    try:
        with quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(
                source,
                dtype=resolve_dtype(dtype),
                trust_remote_code=trust_remote_code,
                use_safetensors=True,
            )
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{argument}={source!r}: could not load a causal LM ({err}); expected a Hugging "
            "Face model name or a local directory with config.json and model.safetensors"
        ) from err
    model.to(resolve_device(device))
    model.eval()
    model.requires_grad_(False)
    return model
