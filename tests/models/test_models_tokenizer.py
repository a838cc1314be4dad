"""A tokenizer saved next to our checkpoint loads with AutoTokenizer; decode_text applies lengths and stop strings."""
import numpy as np
from flax import nnx

from ieta_jax import models, sampling


def _byte_level_tokenizer():
    from tokenizers import Tokenizer, decoders, models as tok_models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["def add(a, b):\n    return a + b\n", "def g(x):\n    return x * 2\n"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def test_tokenizer_roundtrip_and_decode_text(tmp_path):
    tok = _byte_level_tokenizer()
    cfg = models.ModelConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    models.save_pretrained(models.CausalLM(cfg, rngs=nnx.Rngs(0)), str(tmp_path), tokenizer=tok)
    loaded = models.load_tokenizer(str(tmp_path))
    text = "def add(a, b):\n    return a + b\ndef g(x):"
    ids = loaded(text)["input_ids"]
    assert ids == tok(text)["input_ids"] and loaded.decode(ids) == text
    assert models.load_config(str(tmp_path)).eos_token_id == tok.eos_token_id

    row = ids + [tok.eos_token_id, tok.pad_token_id, tok.pad_token_id]
    out = sampling.GenerateOutput(tokens=np.array([row, row]), logprobs=np.zeros((2, len(row))),
                                  lengths=np.array([len(ids) + 1, 3]), prompt_ids=np.zeros((2, 1), np.int32),
                                  prompt_mask=np.ones((2, 1), bool))
    full, short = sampling.decode_text(loaded, out)
    assert full == text and short == loaded.decode(ids[:3])
    assert sampling.decode_text(loaded, out, stop=["\ndef "])[0] == "def add(a, b):\n    return a + b"
