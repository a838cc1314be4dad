"""A byte-level BPE tokenizer for the embedded tiny model, trained on the synthetic corpus.

Saved in Hugging Face format (``PreTrainedTokenizerFast.save_pretrained``) next to the model's
weights, so the tiny model loads through ``transformers.AutoTokenizer`` exactly like any
checkpoint's tokenizer and the rest of the code never special-cases it.
"""
from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def train_tokenizer(texts: Iterable[str], out_dir: str, *, vocab_size: int = 1024, min_frequency: int = 2,
                    individual_digits: bool = True):
    """Train byte-level BPE on ``texts`` and save it to ``out_dir``; returns the HF tokenizer.

    Byte-level means every string round-trips exactly (indentation and newlines included), which
    matters for Python; the 256 byte symbols are always in the vocabulary. ``individual_digits``
    splits numbers into digits (as Llama and Qwen do), so a number never seen in training is still
    made of familiar tokens and a small model can copy it from a docstring into code digit by digit.
    """
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if individual_digits else byte_level)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
                                  bos_token=None, unk_token=None, padding_side="left",
                                  clean_up_tokenization_spaces=False)
    tok.save_pretrained(out_dir)
    return tok
