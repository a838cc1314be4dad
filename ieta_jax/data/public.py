"""Public tests: the examples a task shows its reader, as a sandbox test separate from the hidden one.

Repair feedback comes only from a task's public tests; every metric and reward comes from its hidden
test (`Task.test`). Each loader derives `Task.public_test` from what its prompt shows:

  * HumanEval: the `>>>` doctest examples of the prompt whose source is one expression and whose
    expected output is a Python literal (or `>>> X == Y` with no output), plus example lines of the
    form `entry(literal args) => literal` (also `==>`, `➞`, `->`, `==`, `returns`, `=`), which many
    HumanEval docstrings use instead. Statements
    (`>>> x = ...`), printed output, and results that are not literals are skipped; a prompt with no
    usable example has no public test (`public_test=None`).
  * MBPP: the test shown in the prompt (the first of `test_list`).
  * APPS: the examples of the statement (`-----Example(s)-----` Input/Output blocks, `-----Sample
    Input-----`/`-----Sample Output-----` sections, or LeetCode-style `Input: a = 1, b = [2]` /
    `Output: 3` lines for call-based problems); when the statement has none, the first hidden test
    case, marked `metadata["public_source"] = "first_test"`.
  * the synthetic suite: the `>>>` examples it writes into each docstring.

The public tests of HumanEval and MBPP may coincide with some of their hidden tests, as the
benchmarks define them (MBPP's shown test is one of its three; HumanEval's `check` often repeats the
docstring examples); metrics are unchanged.

Public `asserts` tests name their case in the failure message, so feedback can show which example
failed, with the actual value when the example is an equality:

    assert (_ieta_actual := add(1, 2)) == 3, 'case 0: got ' + repr(_ieta_actual)
    assert is_ok(x), 'case 1'

`call` and `stdio` failures already read "case i: ..." in the sandbox. `describe_case` turns a case
back into the (input, expected) pair that feedback shows.
"""
from __future__ import annotations

import ast
import doctest
import json
import re
from typing import Any

ACTUAL = "_ieta_actual"
# Example lines such as `digitSum("abAB") => 131`: the arrows HumanEval docstrings use (tried in order).
_ARROWS = ("==>", "=>", "➞", "->", "==", " returns ", "=")
_HEADING = re.compile(r"^\s*-{3,}\s*(.*?)\s*-{3,}\s*$")


# ----------------------------------------------------------------------------- building public asserts
def example_assert(i: int, call_src: str, expected_src: str) -> str:
    """The public assert of example `i`: `call_src` must equal `expected_src`; reports the actual value."""
    return f"assert ({ACTUAL} := {call_src}) == {expected_src}, {f'case {i}: got '!r} + repr({ACTUAL})"


def case_assert(i: int, assert_src: str) -> str:
    """Any assert statement as public case `i`: `assert X == Y` becomes `example_assert(i, X, Y)`;
    another assert without a message gets the message 'case i'."""
    node = _single_assert(assert_src)
    if node is None:
        raise ValueError(f"not a single assert statement: {assert_src!r}")
    test = node.test
    if node.msg is None and isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        return example_assert(i, ast.unparse(test.left), ast.unparse(test.comparators[0]))
    if node.msg is None:
        node.msg = ast.Constant(f"case {i}")
    return ast.unparse(node)


def asserts_test(asserts: list[str], setup: str = "") -> dict[str, Any] | None:
    """A public `asserts` test from assert statements (None for none)."""
    if not asserts:
        return None
    return {"kind": "asserts", "asserts": [case_assert(i, a) for i, a in enumerate(asserts)], "setup": setup}


def examples_test(examples: list[tuple[str, str]], setup: str = "") -> dict[str, Any] | None:
    """A public `asserts` test from (call source, expected source) examples (None for none)."""
    if not examples:
        return None
    return {"kind": "asserts", "asserts": [example_assert(i, c, e) for i, (c, e) in enumerate(examples)],
            "setup": setup}


def _single_assert(src: str) -> ast.Assert | None:
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    return tree.body[0]


# ----------------------------------------------------------------------------- reading cases back
def num_cases(test: dict[str, Any] | None) -> int:
    if not test:
        return 0
    if test["kind"] == "asserts":
        return len(test["asserts"])
    if test["kind"] in ("stdio", "call"):
        return len(test["cases"])
    return 1


def describe_case(test: dict[str, Any] | None, i: int) -> tuple[str, str | None] | None:
    """(input, expected) of case `i` as feedback shows them, or None when there is no such case.

    asserts: the call and expected value of an equality example, else the assert's condition (and
    None); stdio: the stdin text and expected output; call: `fn(args)` and the expected value.
    """
    if not test or not 0 <= i < num_cases(test):
        return None
    kind = test["kind"]
    if kind == "asserts":
        node = _single_assert(test["asserts"][i])
        if node is None:
            return test["asserts"][i], None
        cond = node.test
        if (isinstance(cond, ast.Compare) and len(cond.ops) == 1 and isinstance(cond.ops[0], ast.Eq)
                and isinstance(cond.left, ast.NamedExpr) and cond.left.target.id == ACTUAL):
            return ast.unparse(cond.left.value), ast.unparse(cond.comparators[0])
        return ast.unparse(cond), None
    case = test["cases"][i]
    if kind == "stdio":
        return case["input"], case["output"]
    if kind == "call":
        args = ", ".join(repr(a) for a in case["args"])
        return f"{test['fn_name']}({args})", repr(case["expected"])
    return None


# ----------------------------------------------------------------------------- HumanEval docstrings
def _literal(src: str) -> bool:
    try:
        ast.literal_eval(src)
        return True
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _normal(src: str) -> str:
    """An expression's source in one canonical form (comments and spacing gone, as ast.unparse writes it)."""
    return ast.unparse(ast.parse(src.strip(), mode="eval").body)


def _is_expression(src: str) -> bool:
    try:
        ast.parse(src, mode="eval")
        return True
    except SyntaxError:
        return False


def _literal_call(src: str, entry_point: str) -> bool:
    try:
        node = ast.parse(src.strip(), mode="eval").body
    except SyntaxError:
        return False
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry_point
            and all(_literal(ast.unparse(a)) for a in node.args)
            and all(k.arg is not None and _literal(ast.unparse(k.value)) for k in node.keywords))


def docstring_examples(prompt: str, entry_point: str, exclude: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(call source, expected source) pairs from a prompt's `>>>` examples and `entry(...) => value` lines.

    Skipped: `>>>` examples that are statements or print, whose output is empty or not a Python
    literal, arrow lines whose arguments or result are not literals, and examples whose call is in
    `exclude` (any spelling of the same expression). Duplicates are dropped.
    """
    excluded = {_normal(e) for e in exclude}
    out: list[tuple[str, str]] = []
    try:
        examples = doctest.DocTestParser().get_examples(prompt)
    except ValueError:  # inconsistent indentation inside the docstring: no doctest examples
        examples = []
    for ex in examples:
        src = ex.source.strip()
        want_lines = []
        for line in ex.want.splitlines():  # a docstring that closes right after the output
            if line.strip() in ('"""', "'''"):
                break
            want_lines.append(line)
        want = "\n".join(want_lines).strip()
        if not _is_expression(src) or src.startswith("print("):
            continue
        node = ast.parse(src, mode="eval").body
        if want in ("", "True"):  # `>>> f(x) == y` written as a check
            if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
                out.append((ast.unparse(node.left), ast.unparse(node.comparators[0])))
                continue
        if want and _literal(want):
            out.append((ast.unparse(node), _normal(want)))
    for line in prompt.splitlines():
        line = line.strip()
        if not line.startswith(entry_point + "(") or line.startswith(">>>"):
            continue
        for arrow in _ARROWS:
            call, sep, result = line.partition(arrow)
            if sep and _literal_call(call, entry_point) and _literal(result.strip()):
                out.append((_normal(call), _normal(result)))
                break
    seen, unique = set(), []
    for ex in out:
        if ex not in seen and ex[0] not in excluded:
            seen.add(ex)
            unique.append(ex)
    return unique


# ----------------------------------------------------------------------------- APPS statements
def _block(lines: list[str]) -> str:
    """The text of an example block: from its first non-blank line to the next blank one (what
    follows a blank line is the statement's explanation)."""
    while lines and not lines[0].strip():
        lines = lines[1:]
    end = next((k for k, line in enumerate(lines) if not line.strip()), len(lines))
    return "".join(line.rstrip() + "\n" for line in lines[:end])


def _input_output_blocks(lines: list[str]) -> list[tuple[str, str]]:
    """Pairs from `Input` / `Output` marker lines (codeforces style) inside an examples section."""
    pairs, current, which, pending = [], [], None, None
    for line in lines + ["Input"]:
        marker = line.strip().rstrip(":").lower()
        if marker in ("input", "output", "sample input", "sample output") or re.fullmatch(
                r"(sample )?(input|output) ?\d+", marker):
            if which == "input":
                pending = _block(current)
            elif which == "output" and pending is not None:
                pairs.append((pending, _block(current)))
                pending = None
            which, current = ("output" if "output" in marker else "input"), []
        elif which is not None:
            current.append(line)
    return [(i, o) for i, o in pairs if i and o]


def statement_stdio_examples(question: str) -> list[tuple[str, str]]:
    """(stdin, expected stdout) pairs of an APPS statement's examples."""
    lines = question.replace("\r\n", "\n").split("\n")
    sections: list[tuple[str, list[str]]] = []
    for line in lines:
        m = _HEADING.match(line)
        if m:
            sections.append((m.group(1).lower(), []))
        elif sections:
            sections[-1][1].append(line)
    pairs: list[tuple[str, str]] = []
    pending = None
    for name, body in sections:
        if name.startswith("example"):
            pairs += _input_output_blocks(body)
        elif re.fullmatch(r"sample input ?\d*", name):
            pending = _block(body)
        elif re.fullmatch(r"sample output ?\d*", name) and pending:
            out = _block(body)
            if out:
                pairs.append((pending, out))
            pending = None
    return pairs


_JSONISH = {"true": "True", "false": "False", "null": "None"}


def _jsonish_literal(src: str) -> Any:
    src = re.sub(r"\b(true|false|null)\b", lambda m: _JSONISH[m.group(1)], src.strip())
    return ast.literal_eval(src)


def statement_call_examples(question: str) -> list[dict[str, Any]]:
    """Call cases ({"args", "expected"}) from LeetCode-style `Input: a = 1, b = [2]` / `Output: 3` lines."""
    cases = []
    lines = question.replace("\r\n", "\n").split("\n")
    for k, line in enumerate(lines):
        m = re.match(r"\s*Input:\s*(.+)$", line)
        if not m:
            continue
        out = next((re.match(r"\s*Output:\s*(.+)$", nxt) for nxt in lines[k + 1:k + 3]
                    if re.match(r"\s*Output:", nxt)), None)
        if out is None:
            continue
        try:
            call = ast.parse(f"f({m.group(1)})", mode="eval").body
            if call.args:  # positional: `Input: [1, 2], 3`
                args = [_jsonish_literal(ast.unparse(a)) for a in call.args]
            else:
                args = [_jsonish_literal(ast.unparse(kw.value)) for kw in call.keywords]
            expected = _jsonish_literal(out.group(1))
            json.dumps([args, expected])
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            continue
        if args:
            cases.append({"args": args, "expected": expected})
    return cases
