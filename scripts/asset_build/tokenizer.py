"""The byte-level BPE tokenizer with distinct BOS, EOS and pad tokens."""

from __future__ import annotations

from collections.abc import Sequence

BOS, EOS, PAD = "<|bos|>", "<|endoftext|>", "<|pad|>"

# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------


def train_tokenizer(texts: Sequence[str], vocab_size: int, max_length: int):
    """Byte-level BPE with distinct BOS/EOS/PAD; encoding prepends BOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    return fast_tokenizer(tok, max_length)


def fast_tokenizer(tok, max_length: int, **special_tokens: str):
    """``tok`` (a `tokenizers.Tokenizer`) as transformers' tokenizer, with BOS, EOS and PAD
    (and ``special_tokens``, e.g. ``unk_token``)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        **special_tokens,
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
        # GPT-2 embeds token_type_ids with the word embeddings: never return them
        # (transformers 4.x would by default).
        model_input_names=["input_ids", "attention_mask"],
    )
