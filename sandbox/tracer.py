"""Bounded execution tracing of the solution, run inside the sandboxed child (stdlib only).

Only frames whose code comes from the solution (filename SOLUTION_FILENAME) are traced: other
frames get no local trace function, so library code runs at near full speed. Coverage counts every
solution line until `max_events`, after which tracing switches itself off; the first
`max_line_events` line events also keep bounded reprs of up to `max_locals` locals.
"""
from __future__ import annotations

import itertools
import re
import reprlib
import sys

SOLUTION_FILENAME = "<solution>"
COVERAGE_KEY = re.compile("[0-9]{1,7}")  # a coverage key as to_dict writes it: ASCII digits ("²".isdigit() is true)

class _HeadRepr(reprlib.Repr):
    """reprlib.Repr that sorts only the items it shows: reprlib sorts a whole set or dict to show 8 of them, which
    at each of the first 200 traced lines made a 0.2 s program with a 400k-item set a timeout.

    The values most locals hold (small ints, short strings, floats, bools, None; also as the items of containers)
    take a fast path to the text reprlib gives them, without its dispatch by type name (the snapshots of a HumanEval
    program and its tests, natively: 0.73 ms before, 0.15 ms after; tracing as a whole costs about 1 ms more)."""

    def repr1(self, x, level):
        t = type(x)
        if t is int:
            if -_SMALL_INT < x < _SMALL_INT:  # (reprlib shortens an int only past 40 digits)
                return repr(x)
        elif t is str:
            if len(x) <= self.maxstring:  # reprlib's own test, on the whole of a short string
                s = repr(x)
                if len(s) <= self.maxstring:
                    return s
        elif t is float or t is bool or x is None:
            return repr(x)  # (reprlib's repr_instance: at most 24 characters, under maxother)
        return super().repr1(x, level)

    def repr_set(self, x, level):
        return super().repr_set(_head(x, self.maxset), level) if x else "set()"

    def repr_frozenset(self, x, level):
        return super().repr_frozenset(_head(x, self.maxfrozenset), level) if x else "frozenset()"

    def repr_dict(self, x, level):
        if not x:
            return "{}"
        if level <= 0:
            return "{" + self.fillvalue + "}"
        pieces = [f"{self.repr1(k, level - 1)}: {self.repr1(x[k], level - 1)}"
                  for k in reprlib._possibly_sorted(_head(x, self.maxdict))[:self.maxdict]]
        if len(x) > self.maxdict:
            pieces.append(self.fillvalue)
        return "{" + ", ".join(pieces) + "}"


_SMALL_INT = 10 ** 15


def _head(items, n: int) -> list:
    """The first n + 1 items (one more than shown, so that reprlib still marks what it left out)."""
    return list(itertools.islice(items, n + 1))


_repr = _HeadRepr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = _repr.maxdeque = 8
_repr.maxlevel = 3


def bounded_repr(value) -> str:
    try:
        return _repr.repr(value)[:120]
    except BaseException as e:  # a hostile __repr__ must not break the tracer
        return f"<repr failed: {type(e).__name__}>"


def bounded_locals(f_locals: dict, max_locals: int) -> dict:
    out = {}
    for i, (k, v) in enumerate(f_locals.items()):
        if i >= max_locals:
            out["..."] = f"{len(f_locals) - max_locals} more"
            break
        if k.startswith("__") or type(v).__name__ in ("module", "function", "type", "builtin_function_or_method"):
            continue
        out[str(k)[:40]] = bounded_repr(v)
    return out


def _message(exc: BaseException) -> str:
    try:
        return str(exc)[:200]
    except BaseException:
        return "<unprintable>"


class Tracer:
    FRAMES = 1  # the trace function's own frame, on top of the program's at every event (program.py allows it)

    def __init__(self, max_events: int = 100_000, max_line_events: int = 200, max_locals: int = 8):
        self.max_events = max_events
        self.max_line_events = max_line_events
        self.max_locals = max_locals
        self.coverage: dict[int, int] = {}
        self.events: list[dict] = []
        self.n_events = 0
        self.truncated = False
        self.exception: dict | None = None

    # sys.settrace protocol -------------------------------------------------
    def _global(self, frame, event, arg):
        if frame.f_code.co_filename != SOLUTION_FILENAME or self.truncated:
            return None
        return self._local

    def _local(self, frame, event, arg):
        if event != "line":
            return self._local
        self.n_events += 1
        if self.n_events > self.max_events:
            # Off for good: the global function too, which every later call would still pay for (a recursive
            # fib ran 7x slower with only the frames' functions cleared, and a passing program timed out).
            self.truncated = True
            frame.f_trace = None
            sys.settrace(None)
            return None
        line = frame.f_lineno
        self.coverage[line] = self.coverage.get(line, 0) + 1
        if len(self.events) < self.max_line_events:
            try:
                self.events.append({"line": line, "fn": frame.f_code.co_name,
                                    "locals": bounded_locals(frame.f_locals, self.max_locals)})
            except RecursionError:  # the program runs at its recursion limit: that line's snapshot is skipped
                pass
        return self._local

    def start(self):
        if not self.truncated:
            sys.settrace(self._global)

    def stop(self):
        sys.settrace(None)

    # results ------------------------------------------------------------------
    def record_exception(self, exc: BaseException, frames: list | None = None):
        """Keep the first exception with its frames inside the solution (innermost last).

        `frames`: the traceback's (frame, lineno) pairs, when the caller already walked it.
        """
        if self.exception is not None:
            return
        if frames is None:
            frames, tb = [], exc.__traceback__
            while tb is not None:
                frames.append((tb.tb_frame, tb.tb_lineno))
                tb = tb.tb_next
        kept = []
        for f, lineno in frames:
            if f.f_code.co_filename == SOLUTION_FILENAME:
                kept.append({"line": lineno, "fn": f.f_code.co_name,
                             "locals": bounded_locals(f.f_locals, self.max_locals)})
        frames = kept
        self.exception = {"type": type(exc).__name__, "message": _message(exc),
                          "frames": frames[-20:]}

    def to_dict(self) -> dict:
        return {
            "coverage": {str(k): v for k, v in sorted(self.coverage.items())},
            "events": self.events,
            "events_total": self.n_events if not self.truncated else None,
            "exception": self.exception,
            "truncated": self.truncated or self.n_events > len(self.events),
        }
