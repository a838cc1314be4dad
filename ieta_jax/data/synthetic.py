"""The synthetic suite: procedurally generated small Python function tasks with a buggy warm-start corpus.

Why it exists: a tiny model trained for a few minutes on a CPU must sample both correct and buggy
programs, so that execution feedback has something real to teach. Every family below is a small
function whose behaviour depends on one parameter (a constant, an index, a separator, a default,
...). A family yields one task per parameter value. Two held-out splits:
  * "heldout" (alias "test"): unseen parameter values of the training families (interpolation:
    what feedback teaches on the train tasks, for this family write the guarded variant, not the
    off-by-one one, transfers to them);
  * "heldout_families" (alias "test_families"): every task of HELDOUT_FAMILIES, one family per
    category, never seen in training or in the warm-start corpus (generalisation).

Each family carries
  * correct bodies (several variants, so the corpus is not a lookup table),
  * realistic, family-specific buggy bodies, each labelled with the failure it produces on the
    hidden tests: one of BUG_KINDS (IndexError, TypeError, ValueError, ZeroDivisionError, KeyError,
    wrong_answer, infinite_loop),
  * a test-case generator; expected values come from running the first correct body, and all
    correct bodies are checked to agree when the suite is built.

Prompt = signature + docstring (one line, then up to MAX_PUBLIC_EXAMPLES `>>>` examples), completion
= the indented body. The examples are the task's public test (repair feedback comes from them); the
NUM_CASES hidden asserts are drawn separately from the same generator and decide every score. The
examples are drawn from that generator too, with their own seed: the set of at most
MAX_PUBLIC_EXAMPLES draws that exposes the most of the family's known bugs, then repeats the fewest
hidden cases, then is the smallest and shortest, as a careful docstring author would choose them
(infinite-loop bugs are not run at build time); a bug no draw exposes stays unexposed. 118 of the 711
examples repeat a hidden case where no other input exposes the bug: empty inputs (115) and one
fixed-shape long_words case.

Two parameter styles:
  "argument" (default)  def element_at(xs, i=3):
                            \"\"\"Return the element of xs at index i, or None if xs is too short.
                            >>> element_at([46, 39, 32])
                            None
                            >>> element_at([19, 35, 5, 10])
                            10
                            \"\"\"
                        the body uses `i`, so a family's bodies are the same for every parameter value.
  "literal"             def element_at(xs):
                            \"\"\"Return the element of xs at index 3, or None if xs is too short.
                            ...
                        the body must copy `3` from the docstring. A 0.5M-parameter model warm-started
                        for 300 steps wrote the right body with the wrong constant (held-out pass@1
                        0.010, train tasks 0.048), hence the default.
Hidden tests are sandbox `asserts` tests with NUM_CASES cases, so partial credit exists.

Sizes (defaults): 32 families, 593 tasks: 26 training families give 367 train and 119 held-out
tasks (heldout_fraction=0.25), the 6 HELDOUT_FAMILIES 107 tasks; warm-start corpus 4 x 367 = 1468
examples, half of them buggy. The public examples expose 1271 of the 1289 buggy variants of all
tasks (all but pad_left's infinite loop). Knobs: seed, heldout_fraction, tasks_per_family, families,
heldout_families, param_style; for the corpus solutions_per_task, bug_fraction, bug_weights.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import logging
import random
import sys
import textwrap
from typing import Any, Callable, Sequence

from ieta_jax.data import public
from ieta_jax.data.task import Task

log = logging.getLogger(__name__)

BUG_KINDS = ("IndexError", "TypeError", "ValueError", "ZeroDivisionError", "KeyError",
             "wrong_answer", "infinite_loop")
SPLITS = ("train", "heldout", "heldout_families")
SPLIT_ALIASES = {"test": "heldout", "test_families": "heldout_families"}
PARAM_STYLES = ("argument", "literal")
DEFAULT_PARAM_STYLE = "argument"
# Seconds; the programs run in microseconds, so this only bounds what an infinite loop costs.
TIMEOUT_S = 2.0
NUM_CASES = 5
MAX_PUBLIC_EXAMPLES = 2
# Whole families held out of training (split "heldout_families"): one per category, each with a
# training family that uses the same idioms (scale_all ~ add_to_all, word_at ~ element_at, ...).
HELDOUT_FAMILIES = ("scale_all", "word_at", "make_label", "keys_above", "share_of", "sum_fields")

# Default relative frequency of each bug kind in the warm-start corpus. Runtime errors dominate (they
# are what execution traces explain and what the error-frequency metrics track); wrong answers are
# down-weighted because the families define many of them; infinite loops are rarer still because
# each one costs a full timeout in the sandbox.
DEFAULT_BUG_WEIGHTS = {"IndexError": 1.0, "TypeError": 1.0, "ValueError": 1.0,
                       "ZeroDivisionError": 1.0, "KeyError": 1.0, "wrong_answer": 0.5,
                       "infinite_loop": 0.1}


def expected_outcome(bug: str | None) -> tuple[str, str | None]:
    """The sandbox (status, error_type) a solution with this bug label produces on its hidden tests."""
    if bug is None:
        return "passed", None
    if bug == "wrong_answer":
        return "failed", "AssertionError"
    if bug == "infinite_loop":
        return "timeout", None
    return "error", bug


@dataclasses.dataclass(frozen=True)
class Family:
    """A parameterised task family.

    `{P}` in `doc` and the bodies stands for the parameter: its name `param_name` in the "argument"
    style (the signature gets `param_name=<value>` as a default argument), or repr(value) in the
    "literal" style.
    """

    name: str
    category: str
    args: str
    param_name: str
    doc: str
    params: tuple
    correct: tuple[str, ...]
    bugs: tuple[tuple[str, str], ...]
    cases: Callable[[random.Random, Any], list[tuple]]

    def render(self, template: str, param: Any, style: str = "argument") -> str:
        return template.replace("{P}", self.param_name if style == "argument" else repr(param))

    def signature(self, param: Any, style: str = "argument") -> str:
        extra = f", {self.param_name}={param!r}" if style == "argument" else ""
        return f"def {self.name}({self.args}{extra}):\n"

    def prompt(self, param: Any, style: str = "argument", examples: Sequence[tuple[tuple, Any]] = ()) -> str:
        """Signature and docstring; `examples` ((args, expected) pairs) become `>>>` lines."""
        doc = self.render(self.doc, param, style)
        if not examples:
            return self.signature(param, style) + f'    """{doc}"""\n'
        lines = "".join(f"    >>> {_call(self.name, args)}\n    {expected!r}\n" for args, expected in examples)
        return self.signature(param, style) + f'    """{doc}\n{lines}    """\n'


@dataclasses.dataclass(frozen=True)
class Solution:
    """One body for a task: `bug` is None for a correct variant, else its BUG_KINDS label."""

    completion: str
    bug: str | None


@dataclasses.dataclass(frozen=True)
class CorpusExample:
    """One warm-start training example: prompt + completion, labelled with its intended bug.

    A repair example (`repair.repair_corpus`) has a repair prompt (a buggy program and its public-test
    feedback) and `repairs` = the bug label of that program; `bug` is the label of the fix.
    """

    task_id: str
    family: str
    prompt: str
    completion: str
    bug: str | None
    repairs: str | None = None

    @property
    def text(self) -> str:
        return self.prompt + self.completion


def _body(src: str) -> str:
    """Dedent a body template and indent it as a function body, ending with a newline."""
    return textwrap.indent(textwrap.dedent(src).strip("\n"), "    ") + "\n"


def _fam(name, category, args, param_name, doc, params, correct, bugs, cases) -> Family:
    fam = Family(name=name, category=category, args=args, param_name=param_name, doc=doc,
                 params=tuple(params),
                 correct=tuple(_body(c) for c in correct),
                 bugs=tuple((kind, _body(b)) for kind, b in bugs), cases=cases)
    for kind, _ in fam.bugs:
        if kind not in BUG_KINDS:
            raise ValueError(f"family {name}: unknown bug kind {kind!r}")
    if len(set(fam.params)) != len(fam.params):
        raise ValueError(f"family {name}: duplicate parameter values")
    return fam


# ----------------------------------------------------------------------------- case generators
def _ints(rng, n, lo=0, hi=30):
    return [rng.randint(lo, hi) for _ in range(n)]


def _distinct(rng, n, lo=0, hi=50):
    return rng.sample(range(lo, hi), n)


_WORDS = ("ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "owl", "pig", "ram", "yak",
          "apple", "kiwi", "fig", "lemon", "mango", "pear", "plum", "lime")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _cases_add(rng, p):
    return [(_ints(rng, 4),), (_ints(rng, 3, -9, 9),), ([],), (_ints(rng, 1),), (_ints(rng, 6),)]


def _cases_element_at(rng, p):
    lengths = [p + 1, p, p + 3, max(p - 1, 0), p + 2]
    return [(_distinct(rng, n),) for n in lengths]


def _cases_count_above(rng, p):
    out = []
    for n in (5, 4, 6, 3):
        xs = _ints(rng, n, p - 8, p + 8)
        xs[rng.randrange(n)] = p  # the boundary value itself
        out.append((xs,))
    return out + [([],)]


def _cases_join(rng, p):
    return [(_ints(rng, 4),), (_ints(rng, 2, -5, 99),), ([],), (_ints(rng, 1),), (_ints(rng, 5),)]


def _cases_sum_fields(rng, p):
    def line(n):
        return p.join(str(x) for x in _ints(rng, n, 0, 99))
    return [(line(3),), (line(1),), ("",), (line(5),), (line(2),)]


def _cases_mean_above(rng, p):
    return [(_ints(rng, 5, 0, p + 10) + [p + 1],), (_ints(rng, 4, 0, p + 10) + [p + 3, 0],),
            (_ints(rng, 3, 0, p),), ([],), (_ints(rng, 6, 0, p + 20) + [p + 5],)]


def _cases_count_char(rng, p):
    def word(n, with_p):
        s = [rng.choice(_LETTERS) for _ in range(n)]
        if with_p:
            s[rng.randrange(n)] = p
        return "".join(s)
    return [(word(7, True),), (word(4, False).replace(p, ""),), (word(10, True),), ("",),
            (p * 3 + word(3, True),)]


def _cases_lookup(rng, p):
    keys = rng.sample(_WORDS, 6)
    d = {k: rng.randint(-20, 40) for k in keys[:4]}
    return [(d, keys[0]), (d, keys[4]), (d, keys[1]), ({}, keys[2]), (d, keys[5])]


def _cases_word_counts(rng, p):
    def text(n):
        return p.join(rng.choice(_WORDS[:5]) for _ in range(n))
    return [(text(6),), (text(1),), (text(8),), ("cat",), (p.join(["dog", "dog", "owl"]),)]


def _cases_clamp(rng, p):
    return [(_ints(rng, 5, -10, p + 10) + [-3, p + 4],), ([],), (_ints(rng, 3, 0, p),),
            (_ints(rng, 4, -20, -1),), (_ints(rng, 6, -5, 2 * p),)]


def _cases_divide_into(rng, p):
    return [(_ints(rng, 4, 1, 9) + [0],), (_ints(rng, 3, -9, -1),), ([],), ([0, 0],),
            (_ints(rng, 5, 1, 20) + [0, 3],)]


def _cases_digit_score(rng, p):
    return [(rng.randint(10, 999),), (-rng.randint(10, 999),), (0,), (rng.randint(1000, 99999),),
            (-rng.randint(1, 9),)]


def _sentence(rng, n):
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _cases_word_at(rng, p):
    return [(_sentence(rng, p + 2),), (_sentence(rng, p),), (_sentence(rng, p + 4),), ("",),
            (_sentence(rng, p + 1),)]


def _cases_pad_left(rng, p):
    def s(n):
        return "".join(rng.choice(_LETTERS) for _ in range(n))
    return [(s(max(p - 2, 0)),), (s(p + 3),), ("",), (s(p),), (s(1),)]


def _cases_label(rng, p):
    return [(rng.randint(0, 99),), (rng.randint(100, 9999),), (0,), (-rng.randint(1, 50),),
            (rng.randint(1, 9),)]


def _cases_multiples(rng, p):
    return [(_ints(rng, 5, 0, 60) + [p * 3],), (_ints(rng, 4, 0, 60) + [p, 2 * p],),
            ([x * p + 1 for x in range(3)],), ([],), (_ints(rng, 6, 0, 90) + [p * 5],)]


def _cases_reverse_words(rng, p):
    def text(n):
        return p.join(rng.sample(_WORDS, n))
    return [(text(3),), (text(5),), (text(2),), (text(1),), (text(4),)]


def _cases_column_sum(rng, p):
    def row(long, n=None):
        if n is None:
            n = rng.randint(p + 1, p + 3) if long else rng.randint(0, p)
        return _distinct(rng, n, 1, 60)
    return [([row(True), row(False, p), row(True)],), ([row(True), row(True)],), ([],),
            ([row(False), row(True), row(False), row(True)],), ([row(False)],)]


def _cases_running(rng, p):
    return [(_ints(rng, 4, -5, 20),), ([],), (_ints(rng, 1, 1, 9),), (_ints(rng, 6, 0, 9),),
            (_ints(rng, 3, -9, 9),)]


def _cases_gaps(rng, p):
    return [(_distinct(rng, p + 3, 0, 60),), (_distinct(rng, p + 1, 0, 60),), ([],),
            (_distinct(rng, p + 5, 0, 60),), (_distinct(rng, max(p - 1, 1), 0, 60),)]


def _cases_keys_above(rng, p):
    keys = [w for w in _WORDS if len(w) != 2]

    def d(n):
        return {k: rng.randint(p - 10, p + 10) for k in rng.sample(keys, n)}
    return [({**d(4), "apple": p + 1},), ({**d(3), "fig": p},), ({},), (d(6),), ({"kiwi": p + 5},)]


def _cases_parse_pairs(rng, p):
    def text(n):
        return p.join(f"{k}={rng.randint(0, 99)}" for k in rng.sample(_WORDS, n))
    return [(text(3),), (text(1),), ("",), (text(4),), (text(2),)]


def _cases_shift(rng, p):
    def s(n, wrap):
        letters = _LETTERS[26 - p:] if wrap else _LETTERS[:26 - p]
        return "".join(rng.choice(letters) for _ in range(n))
    return [(s(3, False) + s(2, True),), (s(4, False),), ("",), (s(3, True),), (s(6, False) + "z",)]


def _cases_sum_multiples(rng, p):
    return [(rng.randint(2, 12),), (1,), (0,), (rng.randint(13, 40),), (rng.randint(3, 9),)]


def _cases_tail(rng, p):
    def s(n):
        return "".join(rng.choice(_LETTERS) for _ in range(n))
    return [(s(p + 4),), (s(max(p - 1, 1)),), ("",), (s(p + 1),), (s(p + 7),)]


def _cases_chunk(rng, p):
    return [(_ints(rng, 2 * p + 1),), (_ints(rng, p),), ([],), (_ints(rng, 3 * p),),
            (_ints(rng, max(p - 1, 1)),)]


def _cases_share(rng, p):
    return [(_ints(rng, 5, 0, 12) + [p, p],), (_ints(rng, 3, 20, 30),), ([],),
            ([p] + _ints(rng, 6, 0, 15),), ([p, p + 1, p, p + 2],)]


def _cases_long_words(rng, p):
    return [(_sentence(rng, 5),), (_sentence(rng, 3),), ("",), (_sentence(rng, 7),),
            ("a " + "x" * (p + 1) + " " + "y" * p,)]


def _cases_to_int(rng, p):
    return [(str(rng.randint(0, 999)),), ("abc",), (str(-rng.randint(1, 99)),), ("",),
            (" " + str(rng.randint(1, 50)),)]


def _cases_find_first(rng, p):
    others = [x for x in range(0, 40) if x != p]
    return [(rng.sample(others, 3) + [p] + rng.sample(others, 2),), (rng.sample(others, 5),),
            ([p, p],), ([],), (rng.sample(others, 2) + [p],)]


_SEPS = (", ", "-", "|", " ", ";", "/", ":", "+", "_", "::", " - ", "->", " | ", "*", "#", "~",
         ".", ",", " + ", "=", "&", "@", "^", "<>", "; ")
_FIELD_SEPS = (",", ";", "|", " ", "/", ":", "+", "_", "#", "&", ", ", "; ", " | ", "::", "~",
               "*", "@", "^", "--", " / ")
_WORD_SEPS = (" ", ",", ";", "|", "-", "/", ":", "+", "_", ", ", "; ", "#", "&", "~", "::",
              " | ", "*", "@")
_PAIR_SEPS = (",", ";", "|", " ", "&", "/", ", ", "; ", "#", "::", "~", " | ", "+", "*", "@",
              ":", "^", "--")
_PREFIXES = ("item", "id-", "No. ", "x", "row ", "#", "v", "step_", "page ", "user", "node:",
             "key=", "ticket ", "P", "run-", "case ", "lot", "bin ", "id_", "slot ")


FAMILIES: tuple[Family, ...] = (
    _fam("add_to_all", "lists", "xs", "k", "Return a new list with {P} added to every element of xs.",
         range(1, 31),
         ["return [x + {P} for x in xs]",
          """
          result = []
          for x in xs:
              result.append(x + {P})
          return result
          """],
         [("IndexError", "return [xs[i + 1] + {P} for i in range(len(xs))]"),
          ("TypeError", "return xs + {P}"),
          ("wrong_answer", "return [x + {P} for x in xs[1:]]")],
         _cases_add),
    _fam("scale_all", "lists", "xs", "k", "Return a new list with every element of xs multiplied by {P}.",
         range(2, 26),
         ["return [x * {P} for x in xs]",
          """
          result = []
          for x in xs:
              result.append(x * {P})
          return result
          """],
         [("wrong_answer", "return xs * {P}"),
          ("IndexError", "return [xs[i] * {P} for i in range(len(xs) + 1)]")],
         _cases_add),
    _fam("element_at", "indexing", "xs", "i",
         "Return the element of xs at index {P}, or None if xs is too short.", range(0, 10),
         ["""
          if len(xs) > {P}:
              return xs[{P}]
          return None
          """,
          "return xs[{P}] if {P} < len(xs) else None"],
         [("IndexError", "return xs[{P}]"),
          ("IndexError", """
          if len(xs) >= {P}:
              return xs[{P}]
          return None
          """),
          ("wrong_answer", """
          if len(xs) > {P}:
              return xs[{P} - 1]
          return None
          """)],
         _cases_element_at),
    _fam("count_above", "lists", "xs", "limit", "Return how many elements of xs are greater than {P}.",
         range(-5, 21),
         ["return sum(1 for x in xs if x > {P})",
          """
          count = 0
          for x in xs:
              if x > {P}:
                  count += 1
          return count
          """,
          "return len([x for x in xs if x > {P}])"],
         [("wrong_answer", "return sum(1 for x in xs if x >= {P})"),
          ("infinite_loop", """
          count = 0
          i = 0
          while i < len(xs):
              if xs[i] > {P}:
                  count += 1
                  i += 1
          return count
          """)],
         _cases_count_above),
    _fam("join_numbers", "strings", "xs", "sep",
         "Return the numbers in xs converted to strings and joined by {P}.", _SEPS,
         ["return {P}.join(str(x) for x in xs)",
          "return {P}.join(map(str, xs))"],
         [("TypeError", "return {P}.join(xs)"),
          ("wrong_answer", """
          result = ''
          for x in xs:
              result += str(x) + {P}
          return result
          """)],
         _cases_join),
    _fam("sum_fields", "parsing", "s", "sep",
         "Return the sum of the integers in s, which are separated by {P}.", _FIELD_SEPS,
         ["return sum(int(part) for part in s.split({P}) if part)",
          """
          total = 0
          for part in s.split({P}):
              if part:
                  total += int(part)
          return total
          """],
         [("ValueError", "return sum(int(part) for part in s.split({P}))"),
          ("TypeError", "return sum(s.split({P}))")],
         _cases_sum_fields),
    _fam("mean_above", "arithmetic", "xs", "limit",
         "Return the mean of the elements of xs greater than {P}, rounded to 2 decimals, "
         "or 0.0 if there are none.", range(0, 16),
         ["""
          vals = [x for x in xs if x > {P}]
          if not vals:
              return 0.0
          return round(sum(vals) / len(vals), 2)
          """],
         [("ZeroDivisionError", """
          vals = [x for x in xs if x > {P}]
          return round(sum(vals) / len(vals), 2)
          """),
          ("wrong_answer", """
          vals = [x for x in xs if x > {P}]
          if not vals:
              return 0.0
          return round(sum(vals) / len(xs), 2)
          """)],
         _cases_mean_above),
    _fam("count_char", "strings", "s", "ch", "Return how many times the character {P} occurs in s.",
         tuple(_LETTERS),
         ["return s.count({P})",
          "return sum(1 for c in s if c == {P})",
          """
          count = 0
          for c in s:
              if c == {P}:
                  count += 1
          return count
          """],
         [("IndexError", """
          count = 0
          for i in range(len(s) + 1):
              if s[i] == {P}:
                  count += 1
          return count
          """),
          ("wrong_answer", "return len(s.split({P}))")],
         _cases_count_char),
    _fam("lookup", "dicts", "d, key", "default", "Return d[key] if key is in d, otherwise {P}.",
         range(-1, 26),
         ["return d.get(key, {P})",
          """
          if key in d:
              return d[key]
          return {P}
          """],
         [("KeyError", "return d[key]"),
          ("wrong_answer", "return d.get(key)")],
         _cases_lookup),
    _fam("word_counts", "dicts", "s", "sep",
         "Return a dict mapping each word of s, split on {P}, to the number of times it occurs.",
         _WORD_SEPS,
         ["""
          counts = {}
          for w in s.split({P}):
              counts[w] = counts.get(w, 0) + 1
          return counts
          """,
          """
          counts = {}
          for w in s.split({P}):
              if w in counts:
                  counts[w] += 1
              else:
                  counts[w] = 1
          return counts
          """],
         [("KeyError", """
          counts = {}
          for w in s.split({P}):
              counts[w] += 1
          return counts
          """),
          ("wrong_answer", """
          counts = {}
          for w in s.split({P}):
              counts[w] = 1
          return counts
          """)],
         _cases_word_counts),
    _fam("clamp_all", "lists", "xs", "hi", "Return xs with every element clamped to the range 0 to {P}.",
         range(3, 31),
         ["return [min(max(x, 0), {P}) for x in xs]",
          """
          result = []
          for x in xs:
              if x < 0:
                  x = 0
              elif x > {P}:
                  x = {P}
              result.append(x)
          return result
          """],
         [("wrong_answer", "return [min(x, {P}) for x in xs]"),
          ("TypeError", "return min(max(xs, 0), {P})")],
         _cases_clamp),
    _fam("divide_into", "arithmetic", "xs", "n",
         "Return {P} floor-divided by each element of xs, using 0 where the element is zero.",
         range(10, 61, 2),
         ["return [{P} // x if x != 0 else 0 for x in xs]",
          """
          result = []
          for x in xs:
              if x == 0:
                  result.append(0)
              else:
                  result.append({P} // x)
          return result
          """],
         [("ZeroDivisionError", "return [{P} // x for x in xs]"),
          ("wrong_answer", "return [x // {P} if x != 0 else 0 for x in xs]")],
         _cases_divide_into),
    _fam("digit_score", "arithmetic", "n", "k",
         "Return the sum of the decimal digits of n, ignoring its sign, multiplied by {P}.",
         range(1, 21),
         ["return sum(int(c) for c in str(abs(n))) * {P}",
          """
          n = abs(n)
          total = 0
          while n > 0:
              total += n % 10
              n //= 10
          return total * {P}
          """],
         [("ValueError", "return sum(int(c) for c in str(n)) * {P}"),
          ("TypeError", "return sum(str(abs(n))) * {P}"),
          ("infinite_loop", """
          total = 0
          while n != 0:
              total += n % 10
              n //= 10
          return total * {P}
          """)],
         _cases_digit_score),
    _fam("word_at", "indexing", "s", "i",
         "Return word number {P} (counting from 0) of the space-separated words in s, "
         "or '' if there is none.", range(0, 9),
         ["""
          words = s.split()
          if len(words) > {P}:
              return words[{P}]
          return ''
          """,
          """
          words = s.split()
          return words[{P}] if {P} < len(words) else ''
          """],
         [("IndexError", "return s.split()[{P}]"),
          ("IndexError", """
          words = s.split()
          if len(words) >= {P}:
              return words[{P}]
          return ''
          """)],
         _cases_word_at),
    _fam("pad_left", "strings", "s", "width", "Return s padded on the left with '*' to length {P}.",
         range(3, 21),
         ["return s.rjust({P}, '*')",
          "return '*' * ({P} - len(s)) + s",
          """
          while len(s) < {P}:
              s = '*' + s
          return s
          """],
         [("wrong_answer", "return s.ljust({P}, '*')"),
          ("TypeError", "return '*' * {P} - len(s) + s"),
          ("infinite_loop", """
          while len(s) != {P}:
              s = '*' + s
          return s
          """)],
         _cases_pad_left),
    _fam("make_label", "strings", "n", "prefix", "Return the string {P} followed by the number n.", _PREFIXES,
         ["return {P} + str(n)",
          "return '{}{}'.format({P}, n)"],
         [("TypeError", "return {P} + n"),
          ("wrong_answer", "return {P} + ' ' + str(n)")],
         _cases_label),
    _fam("largest_multiple", "lists", "xs", "k",
         "Return the largest element of xs divisible by {P}, or None if there is none.",
         range(2, 16),
         ["""
          vals = [x for x in xs if x % {P} == 0]
          return max(vals) if vals else None
          """,
          """
          best = None
          for x in xs:
              if x % {P} == 0 and (best is None or x > best):
                  best = x
          return best
          """],
         [("ValueError", "return max(x for x in xs if x % {P} == 0)"),
          ("TypeError", """
          best = None
          for x in xs:
              if x % {P} == 0 and x > best:
                  best = x
          return best
          """)],
         _cases_multiples),
    _fam("keep_multiples", "lists", "xs", "k",
         "Return the elements of xs that are divisible by {P}, in order.", range(2, 16),
         ["return [x for x in xs if x % {P} == 0]",
          """
          result = []
          for x in xs:
              if x % {P} == 0:
                  result.append(x)
          return result
          """,
          "return list(filter(lambda x: x % {P} == 0, xs))"],
         [("wrong_answer", "return [x for x in xs if x % {P}]"),
          ("IndexError", """
          result = []
          for i in range(1, len(xs) + 1):
              if xs[i] % {P} == 0:
                  result.append(xs[i])
          return result
          """)],
         _cases_multiples),
    _fam("reverse_words", "strings", "s", "sep",
         "Return the words of s, which are separated by {P}, in reverse order joined by {P}.",
         _WORD_SEPS,
         ["return {P}.join(s.split({P})[::-1])",
          "return {P}.join(reversed(s.split({P})))"],
         [("wrong_answer", "return s[::-1]"),
          ("TypeError", "return {P}.join(s.split({P}).reverse())")],
         _cases_reverse_words),
    _fam("column_sum", "indexing", "rows", "i",
         "Return the sum of the elements at index {P} of the rows, skipping rows that are too short.",
         range(0, 7),
         ["return sum(row[{P}] for row in rows if len(row) > {P})",
          """
          total = 0
          for row in rows:
              if len(row) > {P}:
                  total += row[{P}]
          return total
          """],
         [("IndexError", "return sum(row[{P}] for row in rows)"),
          ("IndexError", """
          total = 0
          for row in rows:
              if len(row) >= {P}:
                  total += row[{P}]
          return total
          """)],
         _cases_column_sum),
    _fam("running_totals", "lists", "xs", "start", "Return the running totals of xs, starting from {P}.",
         range(0, 21),
         ["""
          total = {P}
          result = []
          for x in xs:
              total += x
              result.append(total)
          return result
          """],
         [("wrong_answer", """
          total = {P}
          result = []
          for x in xs:
              result.append(total)
              total += x
          return result
          """),
          ("IndexError", """
          result = [xs[0] + {P}]
          for x in xs[1:]:
              result.append(result[-1] + x)
          return result
          """)],
         _cases_running),
    _fam("gaps", "indexing", "xs", "k",
         "Return the differences xs[i + {P}] - xs[i] for every index i where both exist.",
         range(1, 7),
         ["return [xs[i + {P}] - xs[i] for i in range(len(xs) - {P})]",
          "return [b - a for a, b in zip(xs, xs[{P}:])]"],
         [("IndexError", "return [xs[i + {P}] - xs[i] for i in range(len(xs))]"),
          ("wrong_answer", "return [xs[i] - xs[i + {P}] for i in range(len(xs) - {P})]")],
         _cases_gaps),
    _fam("keys_above", "dicts", "d", "limit", "Return the sorted keys of d whose values are greater than {P}.",
         range(0, 21),
         ["return sorted(k for k, v in d.items() if v > {P})",
          """
          keys = []
          for k, v in d.items():
              if v > {P}:
                  keys.append(k)
          return sorted(keys)
          """],
         [("ValueError", "return sorted(k for k, v in d if v > {P})"),
          ("wrong_answer", "return sorted(v for k, v in d.items() if v > {P})")],
         _cases_keys_above),
    _fam("parse_pairs", "parsing", "s", "sep",
         "Parse s, key=value items separated by {P}, into a dict with int values.", _PAIR_SEPS,
         ["""
          result = {}
          for item in s.split({P}):
              if item:
                  key, value = item.split('=')
                  result[key] = int(value)
          return result
          """],
         [("ValueError", """
          result = {}
          for item in s.split({P}):
              key, value = item.split('=')
              result[key] = int(value)
          return result
          """),
          ("wrong_answer", """
          result = {}
          for item in s.split({P}):
              if item:
                  key, value = item.split('=')
                  result[key] = value
          return result
          """)],
         _cases_parse_pairs),
    _fam("shift_letters", "strings", "s", "k",
         "Return s with every lowercase letter shifted {P} places forward in the alphabet, "
         "wrapping around.", range(1, 26),
         ["return ''.join(chr((ord(c) - 97 + {P}) % 26 + 97) for c in s)",
          """
          letters = 'abcdefghijklmnopqrstuvwxyz'
          return ''.join(letters[(letters.index(c) + {P}) % 26] for c in s)
          """],
         [("wrong_answer", "return ''.join(chr(ord(c) + {P}) for c in s)"),
          ("IndexError", """
          letters = 'abcdefghijklmnopqrstuvwxyz'
          return ''.join(letters[letters.index(c) + {P}] for c in s)
          """)],
         _cases_shift),
    _fam("sum_of_multiples", "arithmetic", "n", "k",
         "Return the sum of the first n positive multiples of {P}.", range(2, 21),
         ["return {P} * n * (n + 1) // 2",
          "return sum({P} * i for i in range(1, n + 1))"],
         [("wrong_answer", "return sum({P} * i for i in range(n))"),
          ("infinite_loop", """
          total = 0
          i = 1
          while i <= n:
              total += {P} * i
          return total
          """)],
         _cases_sum_multiples),
    _fam("tail", "strings", "s", "k", "Return the last {P} characters of s, or all of s if it is shorter.",
         range(1, 11),
         ["return s[-{P}:]",
          "return s[len(s) - {P}:] if len(s) > {P} else s"],
         [("wrong_answer", "return s[{P}:]"),
          ("wrong_answer", "return s[-{P} + 1:]")],
         _cases_tail),
    _fam("chunk", "lists", "xs", "size",
         "Split xs into consecutive chunks of length {P}; the last chunk may be shorter.",
         range(2, 9),
         ["return [xs[i:i + {P}] for i in range(0, len(xs), {P})]",
          """
          result = []
          i = 0
          while i < len(xs):
              result.append(xs[i:i + {P}])
              i += {P}
          return result
          """],
         [("infinite_loop", """
          result = []
          i = 0
          while i < len(xs):
              result.append(xs[i:i + {P}])
          return result
          """),
          ("wrong_answer", "return [xs[i:i + {P}] for i in range(0, len(xs) - {P}, {P})]")],
         _cases_chunk),
    _fam("share_of", "arithmetic", "xs", "value",
         "Return the fraction of elements of xs equal to {P}, rounded to 3 decimals, "
         "or 0.0 for an empty list.", range(0, 13),
         ["""
          if not xs:
              return 0.0
          return round(xs.count({P}) / len(xs), 3)
          """],
         [("ZeroDivisionError", "return round(xs.count({P}) / len(xs), 3)"),
          ("wrong_answer", """
          if not xs:
              return 0.0
          return xs.count({P})
          """)],
         _cases_share),
    _fam("long_words", "strings", "s", "k",
         "Return the space-separated words of s that have more than {P} characters.",
         range(1, 7),
         ["return [w for w in s.split() if len(w) > {P}]",
          """
          result = []
          for w in s.split():
              if len(w) > {P}:
                  result.append(w)
          return result
          """],
         [("TypeError", "return [w for w in s.split() if w > {P}]"),
          ("wrong_answer", "return [w for w in s.split() if len(w) >= {P}]")],
         _cases_long_words),
    _fam("to_int", "parsing", "s", "default",
         "Convert s to an int, returning {P} if s is not a valid integer.", range(-5, 21),
         ["""
          try:
              return int(s)
          except ValueError:
              return {P}
          """],
         [("ValueError", "return int(s)"),
          ("wrong_answer", "return int(s) if s.isdigit() else {P}")],
         _cases_to_int),
    _fam("find_first", "indexing", "xs", "value",
         "Return the index of the first element of xs equal to {P}, or -1 if there is none.",
         range(0, 25),
         ["""
          if {P} in xs:
              return xs.index({P})
          return -1
          """,
          """
          for i, x in enumerate(xs):
              if x == {P}:
                  return i
          return -1
          """],
         [("ValueError", "return xs.index({P})"),
          ("IndexError", """
          i = 0
          while xs[i] != {P}:
              i += 1
          return i
          """),
          ("infinite_loop", """
          i = 0
          while i < len(xs):
              if xs[i] == {P}:
                  return i
          return -1
          """)],
         _cases_find_first),
)

FAMILY_BY_NAME = {f.name: f for f in FAMILIES}


# ----------------------------------------------------------------------------- building the suite
@functools.lru_cache(maxsize=None)
def _function(source: str, name: str) -> Callable:
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 - the suite's own bodies
    return namespace[name]


def _run_body(family: Family, body: str, param: Any, style: str, args: tuple) -> Any:
    """Run one of the family's own bodies in-process (correct ones compute expected values)."""
    return _function(family.signature(param, style) + body, family.name)(*args)


def _call(name: str, args: tuple) -> str:
    return f"{name}({', '.join(repr(a) for a in args)})"


def _assert_line(name: str, args: tuple, expected: Any) -> str:
    return f"assert {_call(name, args)} == {expected!r}"


def _rng(seed: int, *keys: Any) -> random.Random:
    return random.Random(f"{seed}/" + "/".join(str(k) for k in keys))


def _split_params(family: Family, seed: int, heldout_fraction: float) -> set[int]:
    """Indices of the family's parameter values that are held out (at least one, at most all but one)."""
    n = len(family.params)
    n_heldout = min(max(1, round(n * heldout_fraction)), n - 1)
    order = list(range(n))
    _rng(seed, "split", family.name).shuffle(order)
    return set(order[:n_heldout])


def _expected(family: Family, correct: list[str], param: Any, style: str, args: tuple) -> Any:
    """The value every correct body returns on `args` (they must agree)."""
    expected = _run_body(family, correct[0], param, style, args)
    for other in correct[1:]:
        got = _run_body(family, other, param, style, args)
        if got != expected or type(got) is not type(expected):
            raise AssertionError(f"synthetic family {family.name}({param!r}): correct "
                                 f"variants disagree on {args!r}: {expected!r} vs {got!r}")
    return expected


class _Budget(Exception):
    pass


def _exposes(family: Family, body: str, param: Any, style: str, args: tuple, expected: Any,
             max_lines: int = 5000) -> bool:
    """Whether a (buggy, family-defined) body fails on `args`: raises, answers wrongly, or runs
    more than `max_lines` line events (a safety net for `while` bodies: infinite-loop bugs are
    never passed here)."""
    if "while" not in body:  # no unbounded loop: run at full speed
        try:
            got = _run_body(family, body, param, style, copy.deepcopy(args))
        except Exception:  # noqa: BLE001 - any failure exposes the bug
            return True
        return bool(got != expected)  # the public asserts compare with ==
    lines = [0]

    def tracer(frame, event, arg):
        if event == "line":
            lines[0] += 1
            if lines[0] > max_lines:
                raise _Budget()
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        got = _run_body(family, body, param, style, copy.deepcopy(args))
    except Exception:  # noqa: BLE001 - any failure exposes the bug (_Budget included)
        return True
    finally:
        sys.settrace(previous)
    return bool(got != expected)


def _public_examples(family: Family, i: int, param: Any, style: str, correct: list[str],
                     hidden_args: list[tuple], seed: int) -> list[tuple[tuple, Any]]:
    """Up to MAX_PUBLIC_EXAMPLES (args, expected) examples exposing as many of the family's
    (terminating) bugs as possible, drawn from the case generator with their own seed."""
    candidates = []
    for draw in range(2):
        for args in family.cases(_rng(seed, "public", family.name, i, draw), param):
            if all(args != c for c, _ in candidates):
                candidates.append((args, _expected(family, correct, param, style, args)))
    bugs = [family.render(b, param, style) for kind, b in family.bugs if kind != "infinite_loop"]
    exposed = [{j for j, body in enumerate(bugs) if _exposes(family, body, param, style, args, expected)}
               for args, expected in candidates]
    # The set exposing the most bugs; then fewer copies of hidden cases; then the smallest, shortest.
    in_hidden = [args in hidden_args for args, _ in candidates]
    length = [len(repr(c)) for c in candidates]

    def score(subset):
        return (len(set().union(*(exposed[k] for k in subset))), -sum(in_hidden[k] for k in subset), -len(subset),
                -sum(length[k] for k in subset))
    subsets = [c for n in range(1, MAX_PUBLIC_EXAMPLES + 1) for c in itertools.combinations(range(len(candidates)), n)]
    chosen = max(subsets, key=score)  # the first of equals: deterministic
    return [candidates[k] for k in sorted(chosen)]


def family_tasks(family: Family, seed: int = 0, heldout_fraction: float = 0.25,
                 param_style: str = DEFAULT_PARAM_STYLE, heldout_family: bool = False) -> list[Task]:
    """All tasks of one family, in parameter order, with their split in metadata (every task is in
    "heldout_families" when `heldout_family`)."""
    if param_style not in PARAM_STYLES:
        raise ValueError(f"param_style must be one of {PARAM_STYLES}, got {param_style!r}")
    heldout = _split_params(family, seed, heldout_fraction)
    tasks = []
    for i, param in enumerate(family.params):
        correct = [family.render(b, param, param_style) for b in family.correct]
        hidden_args = list(family.cases(_rng(seed, "cases", family.name, i), param))
        asserts = [_assert_line(family.name, args, _expected(family, correct, param, param_style, args))
                   for args in hidden_args]
        examples = _public_examples(family, i, param, param_style, correct, hidden_args, seed)
        split = "heldout_families" if heldout_family else "heldout" if i in heldout else "train"
        tasks.append(Task(
            task_id=f"synthetic/{family.name}/{i}",
            prompt=family.prompt(param, param_style, examples),
            test={"kind": "asserts", "asserts": asserts, "setup": ""},
            entry_point=family.name,
            reference=correct[0],
            metadata={"family": family.name, "category": family.category, "param": param,
                      "param_style": param_style, "split": split, "timeout_s": TIMEOUT_S},
            public_test=public.examples_test([(_call(family.name, args), repr(expected))
                                              for args, expected in examples]),
        ))
    return tasks


def make_tasks(split: str | None = None, *, seed: int = 0, heldout_fraction: float = 0.25,
               tasks_per_family: int | None = None, families: Sequence[str] | None = None,
               limit: int | None = None, param_style: str = DEFAULT_PARAM_STYLE,
               heldout_families: Sequence[str] = HELDOUT_FAMILIES) -> list[Task]:
    """The synthetic suite (deterministic in `seed`).

    Args:
      split: "train", "heldout" (alias "test": unseen parameter values of the training families),
        "heldout_families" (alias "test_families": every task of `heldout_families`), or None for all.
      heldout_fraction: fraction of each training family's parameter values held out.
      heldout_families: families kept out of training entirely (default HELDOUT_FAMILIES; () for none).
      param_style: "argument" (default): the parameter is a default argument of the signature and
        the body refers to it by name, so a family's bodies are the same for every parameter value
        and what a model learns on train tasks applies unchanged to held-out ones. "literal": the
        value is written into the docstring and must be copied into the body (harder: the model
        must learn to copy values it has not seen in that family).
      tasks_per_family: keep at most this many tasks of each family per split (the first ones).
      families: restrict to these family names.
      limit: at most this many tasks in total.
    Tasks are interleaved round-robin across families, so any prefix covers every family.
    """
    split = SPLIT_ALIASES.get(split, split)
    if split not in (None, *SPLITS):
        raise ValueError(f"synthetic split must be one of {SPLITS} (or {', '.join(SPLIT_ALIASES)}, or None), "
                         f"got {split!r}")
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    names = list(families) if families is not None else [f.name for f in FAMILIES]
    unknown = [n for n in [*names, *heldout_families] if n not in FAMILY_BY_NAME]
    if unknown:
        raise ValueError(f"unknown synthetic families {unknown}; known: {sorted(FAMILY_BY_NAME)}")
    per_family = []
    for name in names:
        held = name in heldout_families
        if split is not None and held != (split == "heldout_families"):
            continue
        tasks = family_tasks(FAMILY_BY_NAME[name], seed, heldout_fraction, param_style, held)
        if split is not None:
            tasks = [t for t in tasks if t.metadata["split"] == split]
        if tasks_per_family is not None:
            tasks = tasks[:tasks_per_family]
        per_family.append(tasks)
    out = [t for group in _round_robin(per_family) for t in group]
    return out[:limit] if limit is not None else out


def _round_robin(groups: list[list[Task]]):
    for i in range(max((len(g) for g in groups), default=0)):
        yield [g[i] for g in groups if i < len(g)]


def solutions(task: Task) -> list[Solution]:
    """Every correct and buggy body the family defines, rendered for this task's parameter."""
    family = FAMILY_BY_NAME[task.metadata["family"]]
    param, style = task.metadata["param"], task.metadata.get("param_style", DEFAULT_PARAM_STYLE)
    return ([Solution(family.render(b, param, style), None) for b in family.correct]
            + [Solution(family.render(b, param, style), kind) for kind, b in family.bugs])


def check_corpus_task(task: Task) -> None:
    """Refuse a task the warm-start corpus must not see: not synthetic, or held out (either split)."""
    if "family" not in task.metadata:
        raise ValueError(f"task {task.task_id!r} is not a synthetic task")
    if task.metadata.get("split") != "train":
        raise ValueError(f"task {task.task_id!r} is in split {task.metadata.get('split')!r}: the "
                         "warm-start corpus takes train tasks only")


def bug_weights_or_default(bug_weights: dict[str, float] | None) -> dict[str, float]:
    weights = dict(DEFAULT_BUG_WEIGHTS if bug_weights is None else bug_weights)
    unknown = set(weights) - set(BUG_KINDS)
    if unknown:
        raise ValueError(f"unknown bug kinds in bug_weights: {sorted(unknown)}; known: {BUG_KINDS}")
    return weights


def warm_start_corpus(tasks: Sequence[Task] | None = None, *, solutions_per_task: int = 4,
                      bug_fraction: float = 0.5, bug_weights: dict[str, float] | None = None,
                      seed: int = 0) -> list[CorpusExample]:
    """Supervised warm-start examples for the train tasks: correct variants plus realistic bugs.

    Args:
      tasks: synthetic train tasks to write solutions for (default: the train split); a held-out
        task (either held-out split) is refused: the corpus must not leak them.
      solutions_per_task: examples per task.
      bug_fraction: expected fraction of buggy examples (per task, stochastically rounded).
      bug_weights: relative frequency per bug kind (default DEFAULT_BUG_WEIGHTS); a kind with
        weight 0 never appears. Each task draws among the bugs its family defines.
    """
    if not 0.0 <= bug_fraction <= 1.0:
        raise ValueError(f"bug_fraction must be in [0, 1], got {bug_fraction}")
    if solutions_per_task < 1:
        raise ValueError(f"solutions_per_task must be >= 1, got {solutions_per_task}")
    weights = bug_weights_or_default(bug_weights)
    tasks = make_tasks("train", seed=seed) if tasks is None else list(tasks)
    examples = []
    for task in tasks:
        check_corpus_task(task)
        rng = _rng(seed, "corpus", task.task_id)
        sols = solutions(task)
        correct = [s for s in sols if s.bug is None]
        buggy = [s for s in sols if s.bug is not None and weights.get(s.bug, 0.0) > 0]
        expected_bugs = solutions_per_task * bug_fraction if buggy else 0.0
        n_bug = int(expected_bugs) + (rng.random() < expected_bugs - int(expected_bugs))
        chosen = [correct[(rng.randrange(len(correct)) + j) % len(correct)]
                  for j in range(solutions_per_task - n_bug)]
        chosen += rng.choices(buggy, weights=[weights[s.bug] for s in buggy], k=n_bug)
        rng.shuffle(chosen)
        examples += [CorpusExample(task.task_id, task.metadata["family"], task.prompt, s.completion,
                                   s.bug) for s in chosen]
    log.info("synthetic warm-start corpus: %d examples for %d tasks, %d buggy", len(examples),
             len(tasks), sum(e.bug is not None for e in examples))
    return examples
