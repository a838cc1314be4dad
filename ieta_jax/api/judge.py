"""The AI judge: a model endpoint states which of two programs for a task is better, with a short reason.

The judge sees the task prompt and, for each program, its source and what the sandbox saw (status, tests
passed, error type/line/message, the execution trace). Its answer is parsed leniently (a JSON object, "better: A",
"Program B is better", a bare "A"/"B"/"tie"); an answer that names neither program is recorded as unparsed
and decides nothing.

Feedback modes (`rlaif.feedback`):
  execution  the sandbox decides (feedback.build_pairs); no judge.
  judge      the judge decides every pair of distinct programs.
  both       execution decides wherever it can (feedback.compare); the judge breaks the ties it leaves (same
             outcome, same tests passed, e.g. two passing programs). With `audit=True` the judge is also asked
             about the pairs execution decided, to measure agreement (cached, so asked once).
Every judgement is recorded (labels, reasons, raw answers, the execution label) and `summarize` reports the
judge's agreement with execution on the pairs execution can decide. `Judge(swap=True)` asks each pair in both
orders and keeps only verdicts that survive the swap (position bias decides nothing).
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Sequence

from ieta_jax import feedback, repair
from ieta_jax.api.policy import APIPolicy

FEEDBACK_MODES = ("execution", "judge", "both")
TRACE_CHARS = 1500
ANSWER_FORMAT = '{"better": "A" or "B" or "tie", "reason": "<one short sentence>"}'
JUDGE_INSTRUCTION = (
    "You are reviewing two Python programs written for the same programming task. Each was run against the "
    "task's hidden tests; you see what happened. Decide which program is the better solution (correct first, "
    "then closer to correct, then clearer). Answer with one JSON object and nothing else: " + ANSWER_FORMAT)


def describe_run(result: Any) -> str:
    """What the sandbox saw for one program, as text for the judge. Status and counts are the sandbox's; the
    error and the trace are the program's own report, so they are labelled as such and shown escaped on one line
    each (`repair.escape_untrusted`): a message cannot close a fence or print a line in this format."""
    get = (lambda k: result.get(k)) if isinstance(result, dict) else (lambda k: getattr(result, k, None))
    lines = [f"status: {get('status')}, tests passed: {get('tests_passed') or 0}/{get('tests_total') or 0}"]
    if get("error_type") and get("status") != "passed":
        claim = f"{get('error_type')} at line {get('error_line')}: {get('error_message') or ''}"
        lines.append("error (as the program reported it): " + repair.escape_untrusted(claim, 300))
    trace = get("trace")
    if trace:
        lines.append("execution trace (as the program reported it): "
                     + repair.escape_untrusted(json.dumps(trace, ensure_ascii=False), TRACE_CHARS))
    return "\n".join(lines)


def _fenced(code: str) -> str:
    """`code` in a Markdown fence longer than any run of backticks inside it, so nothing in it can close the fence."""
    runs = [len(r) for r in re.findall(r"`+", code)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return f"{fence}python\n{code.rstrip()}\n{fence}"


def judge_prompt(task: Any, program_a: str, result_a: Any, program_b: str, result_b: Any) -> str:
    return (f"{JUDGE_INSTRUCTION}\n\nTask:\n{_fenced(task.prompt)}\n\n"
            f"Program A:\n{_fenced(program_a)}\n{describe_run(result_a)}\n\n"
            f"Program B:\n{_fenced(program_b)}\n{describe_run(result_b)}\n")


_JSON = re.compile(r"\{[^{}]*\}", re.DOTALL)
_LABEL = r"(A|B|tie|neither|equal|both)"
_PATTERNS = [re.compile(p, flags) for p, flags in (
    (r"\bbetter\W{0,3}\s*(?:is|:|=)?\s*(?:program\s+)?\W?" + _LABEL + r"\b", re.IGNORECASE),
    (r"\bbetter\s+(?:program|solution|one)\s+is\s+(?:program\s+)?(A|B)\b", re.IGNORECASE),
    (r"\b(?:answer|verdict|winner|choice)\W{0,3}\s*(?:is|:|=)?\s*(?:program\s+)?\W?" + _LABEL + r"\b",
     re.IGNORECASE),
    (r"\b(?:[Pp]rogram\s+)?(A|B)\s+is\s+(?:the\s+)?better\b", 0),      # case-sensitive: not the article "a"
    (r"^\W*" + _LABEL + r"\W*$", re.IGNORECASE | re.MULTILINE),
)]


def _norm(label: str) -> str:
    return {"a": "A", "b": "B"}.get(label.strip().lower(), "tie")


def parse_verdict(text: str) -> tuple[str | None, str]:
    """("A" | "B" | "tie" | None, reason) from a judge's answer; None when it names no verdict.

    A JSON object with "better" (or "winner"/"answer") wins; otherwise the first phrase that states a verdict.
    An echo of the answer format itself is ignored (a weak model that repeats the instruction says nothing).
    """
    text = (text or "").replace(ANSWER_FORMAT, "")
    for blob in _JSON.findall(text):
        try:
            obj = json.loads(blob)
        except ValueError:
            continue
        better = obj.get("better", obj.get("winner", obj.get("answer"))) if isinstance(obj, dict) else None
        if isinstance(better, str) and re.fullmatch(_LABEL, better.strip(), re.IGNORECASE):
            return _norm(better), " ".join(str(obj.get("reason", "")).split())[:300]
    for pattern in _PATTERNS:
        m = pattern.search(text)
        if m:
            reason = text[m.end():].strip(" \n.:-,") or text.strip()
            return _norm(m.group(1)), " ".join(reason.split())[:300]
    return None, ""


@dataclasses.dataclass
class Judgement:
    """One compared pair (indices into the task's samples) and how it was decided."""

    task_id: str
    a: int
    b: int
    label: str | None            # the decision: "A", "B", "tie", or None (undecided)
    source: str                  # "execution" or "judge"
    judge_label: str | None      # the judge's own answer (None: not asked or unparsed)
    reason: str
    raw: str | None              # the judge's raw answer
    execution_label: str         # "A", "B" or "tie" by feedback.compare
    execution_rule: str
    raw_swapped: str | None = None  # with swap=True: the answer with the programs in the other order

    @property
    def agrees(self) -> bool | None:
        """Judge vs execution on a pair execution decides (None where either abstains)."""
        if self.execution_label == "tie" or self.judge_label not in ("A", "B"):
            return None
        return self.judge_label == self.execution_label

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "agrees": self.agrees}


class Judge:
    """An endpoint (see ieta_jax.api.client) asked to compare programs; greedy, cached, batched."""

    def __init__(self, uri: str, model_name: str, *, mode: str | None = "chat", max_tokens: int = 200,
                 temperature: float = 0.0, swap: bool = False, cache_dir: str | None = None, **client_options):
        """swap=True asks every pair in both orders and keeps a verdict only when the two agree (a judge that
        prefers whichever program comes first decides nothing); it doubles the requests."""
        self.policy = APIPolicy(uri, model_name, mode=mode, cache_dir=cache_dir, **client_options)
        self.max_tokens, self.temperature, self.swap = max_tokens, temperature, swap

    @property
    def usage(self):
        return self.policy.usage

    def ask(self, prompts: Sequence[str]) -> list[str]:
        if not prompts:
            return []
        out = self.policy.generate(list(prompts), 1, self.temperature, 1.0, self.max_tokens, seed=0)
        return [o[0] for o in out]

    def compare(self, task: Any, programs: Sequence[str], results: Sequence[Any], pairs: Sequence[tuple[int, int]],
                *, feedback_mode: str = "judge", audit: bool = True) -> list[Judgement]:
        """Decide each (a, b) pair of `programs` (sample indices) under `feedback_mode` (module docstring)."""
        if feedback_mode not in ("judge", "both"):
            raise ValueError(f"feedback mode must be 'judge' or 'both' here, got {feedback_mode!r}")
        execution = []
        for a, b in pairs:
            order, rule = feedback.compare(results[a], results[b])
            execution.append(({1: "A", -1: "B", 0: "tie"}[order], rule))
        ask = [i for i, (label, _) in enumerate(execution)
               if feedback_mode == "judge" or label == "tie" or audit]
        def prompt(x, y):
            return judge_prompt(task, programs[x], results[x], programs[y], results[y])

        prompts = [prompt(*pairs[i]) for i in ask]
        if self.swap:
            prompts += [prompt(*pairs[i][::-1]) for i in ask]
        replies = self.ask(prompts)
        answers = dict(zip(ask, replies))
        swapped = dict(zip(ask, replies[len(ask):]))
        out = []
        for i, ((a, b), (exec_label, rule)) in enumerate(zip(pairs, execution)):
            raw = answers.get(i)
            judge_label, reason = parse_verdict(raw) if raw is not None else (None, "")
            if i in swapped:
                other, _ = parse_verdict(swapped[i])
                other = {"A": "B", "B": "A"}.get(other, other)
                if other != judge_label:
                    judge_label, reason = None, f"inconsistent when the programs are swapped ({reason})"
            if feedback_mode == "both" and exec_label != "tie":
                label, source, reason = exec_label, "execution", rule if raw is None else reason
            else:
                label, source = judge_label, "judge"
            out.append(Judgement(task.task_id, a, b, label, source, judge_label, reason, raw, exec_label, rule,
                                 swapped.get(i)))
        return out


def judged_pairs(judge: Judge, task: Any, programs: Sequence[str], results: Sequence[Any], *,
                 feedback_mode: str = "both", completions: Sequence[str] | None = None,
                 max_pairs: int | None = feedback.DEFAULT_MAX_PAIRS, audit: bool = True
                 ) -> tuple[list[feedback.Pair], list[Judgement]]:
    """Preference pairs among the samples of one task, decided under `feedback_mode`, and every judgement.

    Distinct programs only (sandbox errors left out), as feedback.build_pairs. Pairs decided by execution
    come first (in build_pairs' order of strength), then those the judge decided; at most `max_pairs`.
    """
    if feedback_mode == "execution":
        return feedback.build_pairs(task, programs, results, max_pairs=max_pairs, completions=completions), []
    if completions is None:
        completions = [p[len(task.prefix):] if p.startswith(task.prefix) else p for p in programs]
    seen, unique = set(), []
    for i, p in enumerate(programs):
        if p not in seen and feedback._status(results[i]) != "sandbox_error":
            seen.add(p)
            unique.append(i)
    candidates = [(i, j) for x, i in enumerate(unique) for j in unique[x + 1:]]
    judgements = judge.compare(task, programs, results, candidates, feedback_mode=feedback_mode, audit=audit)
    decided = [j for j in judgements if j.label in ("A", "B")]
    decided.sort(key=lambda j: j.source != "execution")
    pairs = []
    for j in decided[:len(decided) if max_pairs is None else max_pairs]:
        win, lose = (j.a, j.b) if j.label == "A" else (j.b, j.a)
        pairs.append(feedback.Pair(task_id=task.task_id, prompt=task.prompt, chosen=completions[win],
                                   rejected=completions[lose], chosen_program=programs[win],
                                   rejected_program=programs[lose], chosen_result=results[win],
                                   rejected_result=results[lose], reason=f"{j.source}: {j.reason}"))
    return pairs, judgements


def summarize(judgements: Sequence[Judgement]) -> dict:
    """Counts for the report: pairs, who decided them, unparsed answers, agreement with execution."""
    asked = [j for j in judgements if j.raw is not None]
    scored = [j.agrees for j in judgements if j.agrees is not None]
    return {"num_pairs": len(judgements),
            "decided_by_execution": sum(j.source == "execution" and j.label in ("A", "B") for j in judgements),
            "decided_by_judge": sum(j.source == "judge" and j.label in ("A", "B") for j in judgements),
            "ties_broken_by_judge": sum(j.source == "judge" and j.execution_label == "tie" and j.label in ("A", "B")
                                        for j in judgements),
            "judge_asked": len(asked), "judge_unparsed": sum(j.judge_label is None for j in asked),
            "judge_inconsistent": sum(j.raw_swapped is not None and j.judge_label is None
                                      and parse_verdict(j.raw)[0] is not None for j in asked),
            "judge_agreement": sum(scored) / len(scored) if scored else None,
            "judge_agreement_pairs": len(scored)}
