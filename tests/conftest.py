"""Fixtures: tiny random-weight HF models, built and saved locally (nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis profiles, chosen with HYPOTHESIS_PROFILE: "dev" (the default) runs
# tests/test_properties.py in about 35 s on a 2-core machine; "ci" (.ci/run) six times as many
# examples, in about 3 minutes. Both draw the same examples every run (a failure reproduces, and
# a change cannot fail CI by the luck of the draw). No deadline (a
# model's forward pass varies in time) and no example database, so nothing is written into the
# repository; a failure prints the blob that reproduces it.
settings.register_profile("dev", max_examples=100, deadline=None, database=None, derandomize=True)
settings.register_profile(
    "ci", max_examples=600, deadline=None, database=None, derandomize=True, print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

CORPUS = [
    "the movie was great and the acting was wonderful",
    "the plot was boring and the ending was terrible",
    "i watched this film last night with my friends",
    "a quiet drama about a family in a small town",
    "the soundtrack is loud but the story is thin",
] * 4


def build_tiny_lm(out: Path, arch: str = "gpt2", with_pad: bool = False, seed: int = 0) -> Path:
    """Save a tiny random-weight causal LM and a byte-level BPE tokenizer to ``out``.

    ``arch`` is ``"gpt2"`` (absolute positions, no BOS) or ``"llama"`` (rotary positions,
    BOS prepended). Without ``with_pad`` the tokenizer has no pad token, like GPT-2's and
    Llama's own.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    specials = (
        ["<|endoftext|>"] + (["<s>"] if arch == "llama" else []) + (["<pad>"] if with_pad else [])
    )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    kwargs = {"eos_token": "<|endoftext|>"}
    if arch == "llama":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
        kwargs["bos_token"] = "<s>"
    if with_pad:
        kwargs["pad_token"] = "<pad>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    if arch == "gpt2":
        config = GPT2Config(
            vocab_size=vocab,
            n_positions=128,
            n_embd=32,
            n_layer=2,
            n_head=2,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.eos_token_id,
        )
        model = GPT2LMHeadModel(config)
    elif arch == "llama":
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
        model = LlamaForCausalLM(config)
    else:
        raise ValueError(arch)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread: as fast for these tiny models, and immune to the 100x slowdowns
    that oversubscribed OpenMP threads suffer when something else runs on a 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_gpt2_padded(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-gpt2-pad"), "gpt2", with_pad=True)


@pytest.fixture(scope="session")
def tiny_reward_model(tiny_gpt2, tmp_path_factory) -> Path:
    """A random-weight single-logit sequence classifier on tiny_gpt2's trunk and tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-rm")
    AutoModelForSequenceClassification.from_pretrained(
        str(tiny_gpt2), num_labels=1
    ).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_gpt2)).save_pretrained(out)
    return out


@pytest.fixture
def cli_error(capsys):
    """``cli_error(argv)``: run ``textgym argv``, which must refuse with exit status 2, and
    return the one line it printed on stderr."""
    from textgym_agents.cli import main

    def run(argv: list[str]) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"textgym {argv[0]}: ")
        return line

    return run


# Prompts of clearly different token lengths (the second is cut at 24 tokens), so rows are
# left-padded differently.
MIXED_PROMPTS = ["the movie", "a quiet drama about a family in a small town and", "the plot"]


def length_rm(prompts, texts):
    """A reward model that needs no model: a tenth of the text's length in characters."""
    return [len(t) / 10.0 for t in texts]


def small_textgen(model, **extra) -> dict:
    """TextGen arguments for a tiny test model: mixed prompts, the length RM, kl_coef 0.3."""
    base = dict(
        model=str(model),
        prompts=MIXED_PROMPTS,
        max_new_tokens=6,
        max_prompt_tokens=24,
        reward_model=length_rm,
        kl_coef=0.3,
    )
    return base | extra
