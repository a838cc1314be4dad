"""The tiny model's tokenizer: BPE trained on the synthetic corpus, loaded back through AutoTokenizer."""
from transformers import AutoTokenizer

from ieta_jax.data import synthetic
from ieta_jax.tokenizer import EOS_TOKEN, PAD_TOKEN, train_tokenizer


def test_trained_tokenizer_loads_with_autotokenizer_and_round_trips(tmp_path):
    corpus = synthetic.warm_start_corpus(synthetic.make_tasks("train", limit=120), solutions_per_task=2)
    train_tokenizer([ex.text for ex in corpus], str(tmp_path), vocab_size=600)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(tok) == 600
    assert tok.convert_ids_to_tokens(tok.eos_token_id) == EOS_TOKEN
    assert tok.convert_ids_to_tokens(tok.pad_token_id) == PAD_TOKEN
    assert tok.padding_side == "left"
    # Held-out prompts (never in the corpus) and arbitrary bytes round-trip exactly: byte-level BPE.
    for task in synthetic.make_tasks("heldout", limit=40):
        text = task.prompt + task.reference
        assert tok.decode(tok(text)["input_ids"]) == text
    odd = "x = '\u00e9\u4e2d\\t'\n\t\tif a  !=  b:\r\n"
    assert tok.decode(tok(odd)["input_ids"]) == odd
    # Merges learned from code: an indented `return` is far fewer tokens than its bytes.
    assert len(tok("        return result\n")["input_ids"]) <= 6
    # Numbers are split into digits, so unseen numbers are made of familiar tokens.
    assert tok.tokenize("x + 1234") == ["x", "Ġ+", "Ġ", "1", "2", "3", "4"]
    # No BOS/EOS is added implicitly: prompts end exactly where the text ends.
    ids = tok("def f(x):\n")["input_ids"]
    assert tok.eos_token_id not in ids
