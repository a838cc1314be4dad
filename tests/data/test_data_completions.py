"""Prompt formatting, stop sequences and fenced-code extraction, checked by running the programs."""
import pytest

from ieta_jax import data


@pytest.fixture(scope="module")
def he0():
    return data.load_tasks("humaneval", limit=1)[0]


def _tokenizer(chat_template=None):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {"<unk>": 0, "<eos>": 1, "def": 2, "return": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    if chat_template:
        fast.chat_template = chat_template
    return fast


TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def test_stop_sequences():
    assert data.STOP_SEQUENCES == ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
    body = "    return sorted(xs)\n"
    for tail in ("\ndef helper():\n    pass", "\nclass A: pass", "\nif __name__ == '__main__':\n    f()",
                 "\nprint(f([1]))", "\n# test\nassert f([])"):
        assert data.truncate_at_stop(body + tail) == body
    assert data.truncate_at_stop("    x = 1\n    # keep indented comments\n    return x\n") == \
        "    x = 1\n    # keep indented comments\n    return x\n"
    assert data.truncate_at_stop("a\nprint(1)\ndef b", stop=("\ndef ",)) == "a\nprint(1)"
    assert data.truncate_at_stop("abc", stop=()) == "abc"


def test_fenced_code_extraction():
    answer = "Here you go:\n```python\ndef f(x):\n    return x\n```\nand a test:\n```\nassert f(1) == 1\n```\n"
    assert data.extract_fenced_code(answer) == "def f(x):\n    return x\n"
    assert data.extract_fenced_code("```\nx = 1\n```") == "x = 1\n"
    assert data.extract_fenced_code("text\n```bash\nls\n```\n```py\ny = 2\n```") == "y = 2\n"
    assert data.extract_fenced_code("```python\ndef g():\n    return 1") == "def g():\n    return 1"   # cut off
    assert data.extract_fenced_code("    return 3\n") == "    return 3\n"                          # bare code


def test_format_prompt_plain_and_chat(he0):
    assert data.format_prompt(he0) == he0.prompt
    plain_tok = _tokenizer()
    assert not data.has_chat_template(plain_tok)
    assert data.format_prompt(he0, plain_tok) == he0.prompt          # no template -> plain completion
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        data.format_prompt(he0, plain_tok, chat=True)
    chat_tok = _tokenizer(TEMPLATE)
    text = data.format_prompt(he0, chat_tok, system="You are a careful programmer.")
    assert text.startswith("<|system|>\nYou are a careful programmer.<|end|>\n<|user|>\n" + data.CHAT_INSTRUCTION)
    assert "```python\n" + he0.prompt.rstrip() + "\n```<|end|>\n" in text
    assert text.endswith("<|assistant|>\n")
    assert data.format_prompt(he0, chat_tok, chat=False) == he0.prompt


def test_samples_become_programs_that_run(executor, he0):
    # Completion model: the canonical body followed by junk the stop sequences must cut off.
    raw = he0.reference + "\nprint(undefined_name)\n"
    chat_answer = ("Sure! Here is the function:\n\n```python\nfrom typing import List\n\n\n"
                   + he0.prompt.split("from typing import List\n\n\n", 1)[1] + he0.reference
                   + "```\n\nIt compares every pair.")
    completions = {
        "plain": data.completion_from_sample(raw, he0),
        "plain_uncut": raw,
        "chat": data.completion_from_sample(chat_answer, he0, chat=True),
        "chat_body_only": data.completion_from_sample("```python\n" + he0.reference + "```", he0, chat=True),
    }
    assert completions["plain"] == he0.reference
    reqs = [data.to_request(he0, c, name) for name, c in completions.items()]
    results = {r.id: r for r in executor.run(reqs)}
    assert results["plain"].status == "passed"
    assert results["plain_uncut"].status == "error" and results["plain_uncut"].error_type == "NameError"
    assert results["chat"].status == "passed"
    assert results["chat_body_only"].status == "passed"
