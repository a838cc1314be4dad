"""Prompt formatting and turning raw model samples into completions.

Completion models see the task prompt as is and continue it; their sample is cut at the first stop
sequence (STOP_SEQUENCES: a new top-level `def`/`class`/`if __name__`/`print(`/comment ends the
function body). Chat models get the prompt inside the tokenizer's chat template and answer in
Markdown; the code is taken from the first fenced block.

Either way the result is a *completion*: text that `build_program(task, completion)` appends to the
task's program prefix. A chat answer usually restates the whole function at column 0; appended to a
HumanEval-style prompt (which ends in a docstring, itself a valid body) that simply redefines the
function, so the same `build_program` serves both.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from ieta_jax.data.task import STOP_SEQUENCES, Task

CHAT_INSTRUCTION = ("Complete the following Python code. Answer with the complete code in a single "
                    "```python code block.")

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def truncate_at_stop(text: str, stop: Sequence[str] = STOP_SEQUENCES) -> str:
    """`text` up to (not including) the earliest occurrence of any stop sequence."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


def extract_fenced_code(text: str) -> str:
    """The code of the first ```python (or ```py / untagged) fenced block in a chat answer.

    A block cut off by the length limit (no closing fence) still counts. Without any fence the text is
    returned unchanged (the model answered with bare code).
    """
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    for lang, body in blocks:
        if lang in ("python", "py", "python3"):
            return body
    for lang, body in blocks:
        if lang == "":
            return body
    return blocks[0][1] if blocks else text


def completion_from_sample(sample: str, task: Task | None = None, *, chat: bool = False,
                           stop: Sequence[str] | None = None) -> str:
    """The completion a raw sample stands for.

    Completion models: the sample cut at the task's stop sequences (or `stop`, or STOP_SEQUENCES).
    Chat models: the code of the first fenced block, starting on a fresh line so that it can follow
    the prompt.
    """
    if chat:
        code = extract_fenced_code(sample)
        return code if code.startswith("\n") else "\n" + code
    if stop is None:
        stop = task.stop if task is not None else STOP_SEQUENCES
    return truncate_at_stop(sample, stop)


def has_chat_template(tokenizer: Any) -> bool:
    """Whether a (Hugging Face) tokenizer defines a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(task: Task, tokenizer: Any = None, *, chat: bool | None = None,
                  system: str | None = None, instruction: str = CHAT_INSTRUCTION) -> str:
    """The text to feed the model for `task`.

    chat=None uses the tokenizer's chat template when it has one, plain completion otherwise;
    chat=True requires a template (error otherwise); chat=False always gives the plain prompt.
    """
    if chat is None:
        chat = tokenizer is not None and has_chat_template(tokenizer)
    if not chat:
        return task.prompt
    if tokenizer is None or not has_chat_template(tokenizer):
        raise ValueError(f"chat formatting for {task.task_id!r} needs a tokenizer with a chat "
                         "template; this tokenizer has none (use chat=False for plain completion)")
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user",
                     "content": f"{instruction}\n\n```python\n{task.prompt.rstrip()}\n```"})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
