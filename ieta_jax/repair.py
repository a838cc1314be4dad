"""Repair feedback: what a failing program's public-test run says about it, and the turn-2 prompt.

`render_feedback` turns the sandbox Result of a program run against its task's *public* test (with
`trace=True`) into a few labelled lines:

    Public tests: 1 of 2 passed (error)
    Error: IndexError: list index out of range
    Line 8: return xs[i]
    Test: element_at([46, 39, 32])
    Expected: None
    Got: 39                                  (failed equality examples only)
    Locals: xs = [46, 39, 32], i = 3

The failing test is the one named by the failure message ("case i: ..." of public asserts and of the
sandbox's call/stdio mismatches), or the only public test; with several and a runtime error the
locals show the input instead. The failing line is the Result's `error_line` (for a timeout: the
most executed line of the trace, where the program looped), the locals those of the innermost
solution frame of the exception (for a timeout: the last traced event at that line).

Everything except the line labels is data the program reported about itself (messages, reprs, its
source, and the trace, which the program can tamper with): every field is escaped (memory addresses
dropped, then `escape_untrusted`: control and format characters as `\\xNN` escapes, so a field is
one line and cannot forge a new one; chat-template and tokenizer special tokens and code fences
broken with a backslash) and bounded (per field, per local, and in total) before it enters a prompt.

Sizes, with the tiny model's 1k BPE: the synthetic suite's repair prompts (completion form, one
warm-start repair example per train task) are 203 tokens on average, 289 at the 95th percentile,
496 at most (17% over 256, 0.3% over 384); turn-1 prompts, which now carry docstring examples, 55 /
80 / 125 (23% over 64). `max_prompt_len` and the tiny model's positions must grow to fit.
"""
from __future__ import annotations

import ast
import dataclasses
import random
import re
import unicodedata
from typing import Any, Mapping, Sequence

from ieta_jax.data import public, synthetic
from ieta_jax.data.completions import CHAT_INSTRUCTION, has_chat_template
from ieta_jax.data.task import Task, build_program, to_request
from sandbox.judge import shown_expected
from sandbox.tracer import COVERAGE_KEY

FIELDS = ("outcome", "error", "line", "test", "locals")
REPAIR_INSTRUCTION = ("Running the program on the public tests gave this feedback:\n\n{feedback}\n\n"
                      "Fix the program. Answer with the complete code in a single ```python code block.")
COMMENT = "# "

# Chat-template / special-token shapes of common model families, and Markdown code fences.
_MARKERS = re.compile(
    r"<\|[^<>|\n]{0,64}\|>"             # ChatML, Llama 3, Qwen, GPT: <|im_start|>, <|eot_id|>, <|endoftext|>
    r"|<｜[^<>｜\n]{0,64}｜>"             # DeepSeek: <｜begin▁of▁sentence｜>
    r"|</?s>|\[/?INST\]|<</?SYS>>"      # Llama 2 / Mistral
    r"|<(?:start|end)_of_turn>"         # Gemma
    r"|</?(?:bos|eos|pad|unk|think|tool_call)>"
    r"|`{3,}|~{3,}")                    # code fences

# "<generator object f at 0x7f...>": addresses differ from run to run and say nothing; dropped.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]{4,16}")


@dataclasses.dataclass(frozen=True)
class FeedbackConfig:
    """What `render_feedback` shows and how much of it.

    fields: sections to include, in FIELDS order ("test" covers input, expected and actual value).
    max_field_chars: cap on each escaped field (message, source line, input, values).
    max_local_chars: cap on each local's value; max_locals: locals shown.
    max_chars: cap on the whole feedback; lines that do not fit are dropped (the outcome stays).
    """

    fields: tuple[str, ...] = FIELDS
    max_field_chars: int = 160
    max_local_chars: int = 48
    max_locals: int = 6
    max_chars: int = 800

    def __post_init__(self):
        unknown = set(self.fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown feedback fields {sorted(unknown)}; known: {FIELDS}")
        for name in ("max_field_chars", "max_local_chars", "max_chars"):
            if getattr(self, name) < 16:
                raise ValueError(f"FeedbackConfig.{name} must be >= 16, got {getattr(self, name)}")
        if self.max_locals < 0:
            raise ValueError(f"FeedbackConfig.max_locals must be >= 0, got {self.max_locals}")


def _escape_char(ch: str) -> str:
    if ch in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch]
    cp = ord(ch)
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def _break(match: re.Match) -> str:
    marker = match.group(0)
    if marker[0] in "`~":  # a fence of any length: no three fence characters stay adjacent
        return "\\".join(marker[i:i + 2] for i in range(0, len(marker), 2))
    return marker[0] + "\\" + marker[1:]


def neutralize_markers(text: str, markers: Sequence[str] = ()) -> str:
    """`text` with every chat-template/special-token marker and code fence broken by a backslash
    after its first character, so no tokenizer reads it as a special token or delimiter."""
    extra = [m for m in markers if m]
    for _ in range(8):  # breaking one marker cannot create another, but stay bounded regardless
        before = text
        text = _MARKERS.sub(_break, text)
        for m in extra:
            text = text.replace(m, m[0] + "\\" + m[1:])
        if text == before:
            break
    return text


def escape_untrusted(value: Any, max_chars: int, markers: Sequence[str] = ()) -> str:
    """One line of at most `max_chars` characters showing `value` (program-reported data): control,
    format, separator and unassigned characters as escapes, markers broken, the rest cut off with a
    note of how much was dropped."""
    text = value if isinstance(value, str) else str(value)
    total = len(text)
    text = text[:max_chars * 2]  # bounds the work on a huge message; the cut below is exact
    out = "".join(_escape_char(c) if unicodedata.category(c)[0] in "CZ" and c != " " else c for c in text)
    out = neutralize_markers(out, markers)
    if len(out) > max_chars or total > len(text):
        note = f"...[{total} chars]"
        out = out[:max_chars - len(note)] + note
    return out


def _get(result: Any, name: str) -> Any:
    return result.get(name) if isinstance(result, Mapping) else getattr(result, name, None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _failing_case(message: str | None, test: dict | None, status: str) -> tuple[int | None, bool]:
    """(index of the failing public case or None, whether the failure message named it)."""
    n = public.num_cases(test)
    m = re.match(r"case (\d{1,6})(?::|\Z)", message or "")
    if m and status == "failed" and int(m.group(1)) < n:
        return int(m.group(1)), True
    return (0 if n == 1 else None), False


def _actual(message: str | None, test: dict, case: int) -> str | None:
    """The actual value in case `case`'s mismatch message: "case i: got X" (asserts) or "case i: ... expected E,
    got X" (stdio/call), split after exactly the E the sandbox shows for that case (either side may hold ", got ")."""
    if not message:
        return None
    m = re.match(r"case \d+: got (.*)\Z", message, re.DOTALL)
    if m:
        return m.group(1)
    if test.get("kind") not in ("stdio", "call"):
        return None
    head, sep, tail = message.partition(f"expected {shown_expected(test, case)}, got ")
    return tail if sep and head.startswith(f"case {case}: ") else None


def _unquote(text: str) -> str:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return value if isinstance(value, str) else text


def _hottest_line(trace: dict) -> int | None:
    coverage = trace.get("coverage")
    if not isinstance(coverage, dict):
        return None
    best = None
    for line, hits in coverage.items():
        if isinstance(line, str) and COVERAGE_KEY.fullmatch(line) and _int(hits) is not None:
            if best is None or hits > best[1]:
                best = (int(line), hits)
    return best[0] if best else None


def _frame_locals(trace: Any, line: int | None, status: str) -> dict | None:
    """Locals at the failing line: the innermost solution frame of the exception, or for a timeout
    the last traced event at the looping line."""
    if not isinstance(trace, dict):
        return None
    if status == "timeout":
        events = trace.get("events")
        candidates = [e for e in events if isinstance(e, dict) and e.get("line") == line] if isinstance(
            events, list) else []
        found = candidates[-1] if candidates else None
    else:
        exc = trace.get("exception")
        frames = exc.get("frames") if isinstance(exc, dict) else None
        found = frames[-1] if isinstance(frames, list) and frames else None
    values = found.get("locals") if isinstance(found, dict) else None
    return values if isinstance(values, dict) else None


def render_feedback(result: Any, program: str, public_test: dict | None,
                    config: FeedbackConfig = FeedbackConfig(), *, markers: Sequence[str] = ()) -> str:
    """Feedback lines for a program's public-test run (see the module docstring for the format).

    result: the sandbox Result (or its dict) of running `program` against `public_test`, ideally
      with trace=True (the locals and a timeout's line come from the trace).
    markers: extra strings to neutralize, e.g. the tokenizer's special tokens.
    """
    status = str(_get(result, "status") or "error")
    passed, total = _int(_get(result, "tests_passed")), _int(_get(result, "tests_total"))
    message = _get(result, "error_message")
    message = message if isinstance(message, str) else None
    trace = _get(result, "trace")
    trace = trace if isinstance(trace, dict) else None

    def esc(value: Any, limit: int = config.max_field_chars) -> str:
        text = _ADDRESS.sub("", value if isinstance(value, str) else str(value))
        return escape_untrusted(text, limit, markers)

    lines: list[str] = []
    counts = f"{passed} of {total} passed" if passed is not None and total is not None else "not run"
    lines.append(f"Public tests: {counts} ({esc(status, 24)})")
    if status == "passed":
        return lines[0]

    case, named = _failing_case(message, public_test, status)
    error_type = _get(result, "error_type")
    # A failed example the message names is shown as Test/Expected/Got below; its message says no more.
    if "error" in config.fields and (error_type or message) and not (named and "test" in config.fields):
        lines.append("Error: " + esc(": ".join(str(x) for x in (error_type, message) if x)))

    line = _int(_get(result, "error_line"))
    if line is None and status == "timeout" and trace is not None:
        line = _hottest_line(trace)
    source = program.split("\n")
    if "line" in config.fields and line is not None and 1 <= line <= len(source) and source[line - 1].strip():
        lines.append(f"Line {line}: " + esc(source[line - 1].strip()))

    described = public.describe_case(public_test, case) if case is not None else None
    if "test" in config.fields and described is not None:
        test_input, expected = described
        lines.append("Test: " + esc(test_input))
        if expected is not None:
            lines.append("Expected: " + esc(expected))
        actual = _actual(message, public_test, case) if status == "failed" else None
        if actual is not None and public_test.get("kind") == "stdio":
            actual = _unquote(actual)  # the sandbox quotes stdio output; Expected shows it bare
        if actual is not None:
            lines.append("Got: " + esc(actual))

    values = _frame_locals(trace, line, status) if "locals" in config.fields else None
    if values and config.max_locals:
        shown = [f"{esc(k, 24)} = {esc(v, config.max_local_chars)}" for k, v in list(values.items())
                 [:config.max_locals] if k != "..."]
        if shown:
            lines.append("Locals: " + ", ".join(shown))

    out = lines[0]
    for extra in lines[1:]:
        if len(out) + 1 + len(extra) > config.max_chars:
            break
        out += "\n" + extra
    return out[:config.max_chars]


def repair_prompt(task: Task, previous_program: str, feedback: str, tokenizer: Any = None, *,
                  chat: bool | None = None, system: str | None = None,
                  instruction: str = CHAT_INSTRUCTION) -> str:
    """The prompt of the next turn: the task, the program that failed, and its feedback.

    `feedback` is `render_feedback`'s text. chat=None uses the tokenizer's chat template when it has
    one (as data.format_prompt does). Completion form:

        <previous program (after the task prompt when the program does not contain it)>
        # Public tests: 1 of 2 passed (error)
        # ...
        <task prompt>

    The feedback and the previous program are neutralized again here (markers of this tokenizer
    included), so a caller passing unescaped text cannot open a fake turn.
    """
    if chat is None:
        chat = tokenizer is not None and has_chat_template(tokenizer)
    markers = list(getattr(tokenizer, "all_special_tokens", None) or []) if tokenizer is not None else []
    feedback_lines = [escape_untrusted(line, 4 * len(line) + 16, markers) for line in feedback.split("\n")]
    # The task prompt is trusted; what follows it in the program is the model's and is neutralized.
    own = previous_program[len(task.prompt):] if previous_program.startswith(task.prompt) else previous_program
    own = neutralize_markers(own, markers)
    if not chat:
        context = task.prompt + own
        comments = "".join(f"{COMMENT}{line}\n" for line in feedback_lines)
        return context.rstrip("\n") + "\n" + comments + task.prompt
    if tokenizer is None or not has_chat_template(tokenizer):
        raise ValueError(f"chat formatting for {task.task_id!r} needs a tokenizer with a chat "
                         "template; this tokenizer has none (use chat=False for plain completion)")
    program = previous_program[:len(previous_program) - len(own)] + own
    messages = [{"role": "system", "content": system}] if system else []
    messages += [
        {"role": "user", "content": f"{instruction}\n\n```python\n{task.prompt.rstrip()}\n```"},
        {"role": "assistant", "content": f"```python\n{program.rstrip()}\n```"},
        {"role": "user", "content": REPAIR_INSTRUCTION.format(feedback="\n".join(feedback_lines))},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def repair_corpus(tasks: Sequence[Task], executor: Any, *, examples_per_task: int = 1, bug_fraction: float = 0.5,
                  bug_weights: dict[str, float] | None = None, config: FeedbackConfig = FeedbackConfig(),
                  seed: int = 0) -> list[synthetic.CorpusExample]:
    """Warm-start repair examples for synthetic train tasks (CorpusExamples with `repairs` set).

    Per task and example: a buggy variant of the family (drawn with `bug_weights`) runs against the
    task's public test in the sandbox (`executor`, trace on); when it fails there, the example's
    prompt is `repair_prompt(task, that program, render_feedback(...))` in completion form, exactly
    what the experiment shows the policy at turn 2, and its completion another variant: a correct one,
    or with probability `bug_fraction` a different buggy one (so that repairs, too, sometimes fail).
    A variant that passes the public test gets no feedback and no example.
    """
    if examples_per_task < 0:
        raise ValueError(f"examples_per_task must be >= 0, got {examples_per_task}")
    if not 0.0 <= bug_fraction <= 1.0:
        raise ValueError(f"bug_fraction must be in [0, 1], got {bug_fraction}")
    weights = synthetic.bug_weights_or_default(bug_weights)
    plans = []  # (task, buggy solution, fix, request)
    for task in tasks:
        synthetic.check_corpus_task(task)
        if task.public_test is None:
            continue
        rng = random.Random(f"{seed}/repair/{task.task_id}")
        sols = synthetic.solutions(task)
        correct = [s for s in sols if s.bug is None]
        buggy = [s for s in sols if s.bug is not None and weights.get(s.bug, 0.0) > 0]
        for k in range(examples_per_task if buggy else 0):
            broken = rng.choices(buggy, weights=[weights[s.bug] for s in buggy])[0]
            others = [s for s in buggy if s.completion != broken.completion]
            if others and rng.random() < bug_fraction:
                fix = rng.choices(others, weights=[weights[s.bug] for s in others])[0]
            else:
                fix = rng.choice(correct)
            plans.append((task, broken, fix, to_request(task, broken.completion, f"{task.task_id}#repair{k}",
                                                        public=True, trace=True)))
    results = executor.run([p[3] for p in plans])
    examples = []
    for (task, broken, fix, _), result in zip(plans, results):
        if result.status == "passed":
            continue
        program = build_program(task, broken.completion)
        feedback = render_feedback(result, program, task.public_test, config)
        examples.append(synthetic.CorpusExample(task.task_id, task.metadata["family"],
                                                repair_prompt(task, program, feedback, chat=False),
                                                fix.completion, fix.bug, repairs=broken.bug))
    return examples
