"""The synthetic suite: structure, determinism, split, corpus, and real sandbox verdicts."""
import ast
import collections
import dataclasses

import pytest

from ieta_jax import data
from ieta_jax.data import synthetic


@pytest.fixture(scope="module")
def all_tasks():
    return synthetic.make_tasks()


def test_families_cover_categories_and_bug_kinds():
    assert len(synthetic.FAMILIES) >= 20
    assert {f.category for f in synthetic.FAMILIES} == {"lists", "strings", "dicts", "arithmetic", "indexing",
                                                       "parsing"}
    kinds = collections.Counter(k for f in synthetic.FAMILIES for k, _ in f.bugs)
    assert set(kinds) == set(synthetic.BUG_KINDS)
    assert all(f.bugs and f.correct for f in synthetic.FAMILIES)
    assert all(len(f.params) >= 6 for f in synthetic.FAMILIES)


def test_deterministic_by_seed(all_tasks):
    again = synthetic.make_tasks()
    assert [t.to_dict() for t in again] == [t.to_dict() for t in all_tasks]
    other = synthetic.make_tasks(seed=1)
    assert [t.test for t in other] != [t.test for t in all_tasks]
    assert {t.task_id for t in other} == {t.task_id for t in all_tasks}


def test_split_is_by_parameter_value_and_every_family_is_in_both(all_tasks):
    train = synthetic.make_tasks("train")
    heldout = synthetic.make_tasks("heldout")
    families = synthetic.make_tasks("heldout_families")
    assert [t.task_id for t in synthetic.make_tasks("test")] == [t.task_id for t in heldout]
    assert [t.task_id for t in synthetic.make_tasks("test_families")] == [t.task_id for t in families]
    assert len(train) + len(heldout) + len(families) == len(all_tasks)
    assert not {t.task_id for t in train} & {t.task_id for t in heldout}
    by_family = collections.defaultdict(lambda: collections.defaultdict(set))
    for t in all_tasks:
        by_family[t.metadata["family"]][t.metadata["split"]].add(repr(t.metadata["param"]))
    assert len(by_family) == len(synthetic.FAMILIES)
    for fam, splits in by_family.items():
        if fam in synthetic.HELDOUT_FAMILIES:
            assert set(splits) == {"heldout_families"}, fam
            continue
        assert set(splits) == {"train", "heldout"}, fam
        assert not splits["train"] & splits["heldout"], fam       # held-out parameter values are unseen
    # The held-out prompt differs from every train prompt of its family.
    train_prompts = {t.prompt for t in train}
    assert not any(t.prompt in train_prompts for t in heldout)
    # The sizes documented in the module.
    assert (len(all_tasks), len(train), len(heldout), len(families)) == (593, 367, 119, 107)


def test_heldout_families_never_reach_training_or_the_corpus():
    held = set(synthetic.HELDOUT_FAMILIES)
    assert len(held) == 6 and {synthetic.FAMILY_BY_NAME[f].category for f in held} == \
        {f.category for f in synthetic.FAMILIES}                          # one family per category
    families = synthetic.make_tasks("test_families")
    assert {t.metadata["family"] for t in families} == held
    train = synthetic.make_tasks("train")
    assert not {t.metadata["family"] for t in train} & held
    assert not {t.metadata["family"] for t in synthetic.make_tasks("test")} & held
    corpus = synthetic.warm_start_corpus(seed=0)                         # the default: the train split
    assert corpus and not {e.family for e in corpus} & held
    assert not any(f"def {name}(" in e.text for e in corpus for name in held)
    with pytest.raises(ValueError, match="train tasks only"):
        synthetic.warm_start_corpus(train[:3] + families[:1])
    with pytest.raises(ValueError, match="train tasks only"):
        synthetic.warm_start_corpus(synthetic.make_tasks("test", limit=1))
    # Knob: no held-out families; the split then holds nothing and every family trains.
    every = synthetic.make_tasks("train", heldout_families=())
    assert {t.metadata["family"] for t in every} == set(synthetic.FAMILY_BY_NAME)
    assert synthetic.make_tasks("test_families", heldout_families=()) == []
    with pytest.raises(ValueError, match="unknown synthetic families"):
        synthetic.make_tasks(heldout_families=["nope"])


def test_limit_interleaves_families_and_knobs():
    first = synthetic.make_tasks("train", limit=len(synthetic.FAMILIES) - len(synthetic.HELDOUT_FAMILIES))
    assert len({t.metadata["family"] for t in first}) == len(synthetic.FAMILIES) - len(synthetic.HELDOUT_FAMILIES)
    two = synthetic.make_tasks("train", tasks_per_family=2, families=["gaps", "lookup"])
    assert [t.metadata["family"] for t in two] == ["gaps", "lookup", "gaps", "lookup"]
    assert len(data.load_tasks("synthetic", split="heldout", limit=5)) == 5
    with pytest.raises(ValueError, match="unknown synthetic families"):
        synthetic.make_tasks(families=["nope"])
    with pytest.raises(ValueError, match="split"):
        synthetic.make_tasks("validation")


def test_prompt_and_completion_shape(all_tasks):
    for t in all_tasks:
        header, doc, rest = t.prompt.split("\n", 2)
        fam = synthetic.FAMILY_BY_NAME[t.metadata["family"]]
        assert header == f"def {t.entry_point}({fam.args}, {fam.param_name}={t.metadata['param']!r}):"
        assert doc == f'    """{fam.render(fam.doc, t.metadata["param"])}'
        # Then 1 or 2 `>>>` examples (each a call and its value) and the closing quotes.
        lines = rest.split("\n")
        assert lines[-2:] == ['    """', ""] and len(lines) in (4, 6)
        examples = list(zip(lines[0:-2:2], lines[1:-2:2]))
        assert all(call.startswith(f"    >>> {t.entry_point}(") for call, _ in examples)
        # The public test is exactly those examples, parsed back the way HumanEval's docstrings are.
        parsed = data.public.docstring_examples(t.prompt, t.entry_point)
        assert [(f"    >>> {c}", f"    {e}") for c, e in parsed] == examples
        assert t.public_test == data.public.examples_test(parsed)
        assert t.test["kind"] == "asserts" and len(t.test["asserts"]) == synthetic.NUM_CASES
        program = data.build_program(t, t.reference)
        ast.parse(program)
        assert t.reference.endswith("\n") and t.reference.startswith("    ")
        for sol in synthetic.solutions(t):
            assert len(sol.completion) <= 200 and sol.completion.count("\n") <= 8
            ast.parse(t.prompt + sol.completion)
            # A generated body never contains a stop sequence, so truncation keeps it whole.
            assert data.truncate_at_stop(sol.completion, t.stop) == sol.completion


def test_request_uses_short_timeout(all_tasks):
    req = data.to_request(all_tasks[0], all_tasks[0].reference, "r0")
    assert req["timeout_s"] == synthetic.TIMEOUT_S and req["solution"].startswith(all_tasks[0].prompt)
    assert data.to_request(all_tasks[0], "", "r1", timeout_s=0.5)["timeout_s"] == 0.5


def test_corpus_covers_train_tasks_only_with_the_bug_fraction():
    train = synthetic.make_tasks("train")
    corpus = synthetic.warm_start_corpus(train, solutions_per_task=4, bug_fraction=0.5, seed=0)
    assert len(corpus) == 4 * len(train)
    heldout_ids = {t.task_id for t in synthetic.make_tasks("heldout")}
    assert not {e.task_id for e in corpus} & heldout_ids
    by_task = {t.task_id: t for t in train}
    buggy = [e for e in corpus if e.bug is not None]
    assert 0.45 < len(buggy) / len(corpus) < 0.55
    assert {e.bug for e in buggy} == set(synthetic.BUG_KINDS)
    for e in corpus:
        task = by_task[e.task_id]
        assert e.prompt == task.prompt and e.text == task.prompt + e.completion
        assert synthetic.Solution(e.completion, e.bug) in synthetic.solutions(task)
    # Correct examples are not all the same variant.
    assert len({e.completion for e in corpus if e.bug is None and e.family == "count_above"}) >= 2
    assert synthetic.warm_start_corpus(train[:10], seed=0) == synthetic.warm_start_corpus(train[:10], seed=0)


def test_corpus_knobs():
    train = synthetic.make_tasks("train", limit=64)
    clean = synthetic.warm_start_corpus(train, bug_fraction=0.0)
    assert all(e.bug is None for e in clean)
    no_loops = synthetic.warm_start_corpus(train, bug_fraction=1.0, solutions_per_task=6,
                                           bug_weights={**synthetic.DEFAULT_BUG_WEIGHTS, "infinite_loop": 0.0})
    assert all(e.bug not in (None, "infinite_loop") for e in no_loops)
    assert 0.2 < sum(e.bug is not None for e in
                     synthetic.warm_start_corpus(train, bug_fraction=0.3, solutions_per_task=4)) / (4 * 64) < 0.4
    with pytest.raises(ValueError, match="bug_fraction"):
        synthetic.warm_start_corpus(train, bug_fraction=1.5)
    with pytest.raises(ValueError, match="unknown bug kinds"):
        synthetic.warm_start_corpus(train, bug_weights={"Segfault": 1.0})


def _one_train_one_heldout_per_family():
    chosen = {}
    for t in synthetic.make_tasks():
        chosen.setdefault((t.metadata["family"], t.metadata["split"]), t)
    return list(chosen.values())


def test_references_pass_and_bugs_fail_as_labelled_in_the_sandbox(executor):
    tasks = _one_train_one_heldout_per_family()
    assert len(tasks) == 2 * len(synthetic.FAMILIES) - len(synthetic.HELDOUT_FAMILIES)   # one split each
    requests, expected = [], {}
    for t in tasks:
        for j, sol in enumerate(synthetic.solutions(t)):
            rid = f"{t.task_id}#{j}"
            requests.append(data.to_request(t, sol.completion, rid, timeout_s=1.0))
            expected[rid] = (sol.bug, synthetic.expected_outcome(sol.bug))
    for t in synthetic.make_tasks():          # and the reference of every task, on hidden and public tests
        requests.append(data.to_request(t, t.reference, f"{t.task_id}#ref"))
        expected[f"{t.task_id}#ref"] = (None, ("passed", None))
        requests.append(data.to_request(t, t.reference, f"{t.task_id}#public", public=True))
        expected[f"{t.task_id}#public"] = (None, ("passed", None))
    results = executor.run(requests)
    wrong = []
    seen_kinds = set()
    for r in results:
        bug, (status, error_type) = expected[r.id]
        got = (r.status, r.error_type if status != "timeout" else None)
        if got != (status, error_type):
            wrong.append((r.id, bug, r.status, r.error_type, r.error_message))
        seen_kinds.add(bug)
        if r.id.endswith("#public"):
            assert r.tests_passed == r.tests_total in (1, 2)
        elif bug is None:
            assert r.tests_passed == r.tests_total == synthetic.NUM_CASES
        elif bug != "infinite_loop":
            assert r.tests_passed < r.tests_total == synthetic.NUM_CASES
    assert not wrong, wrong
    assert seen_kinds == {None, *synthetic.BUG_KINDS}
    # Partial credit exists: some buggy programs pass some of their tests.
    assert any(0 < r.tests_passed < r.tests_total for r in results)


class _Timeout(Exception):
    pass


def _outcome_in_process(task, completion, max_lines=20_000):
    """(status, error_type) by the sandbox's rule: every case runs; the first failure decides.

    A case that executes more than `max_lines` line events counts as a timeout (deterministic,
    unlike a wall-clock alarm on a busy machine; every finite variant needs a few hundred).
    """
    import sys

    def run(line):
        budget = [max_lines]

        def tracer(frame, event, arg):
            if event == "line":
                budget[0] -= 1
                if budget[0] < 0:
                    raise _Timeout()
            return tracer

        sys.settrace(tracer)
        try:
            exec(line, ns)
        finally:
            sys.settrace(None)

    ns = {}
    exec(task.prompt + completion, ns)
    first = None
    for line in task.test["asserts"]:
        try:
            run(line)
        except _Timeout:
            return "timeout", None
        except AssertionError:
            first = first or ("failed", "AssertionError")
        except Exception as e:
            first = first or ("error", type(e).__name__)
    return first or ("passed", None)


@pytest.mark.parametrize("style", synthetic.PARAM_STYLES)
def test_every_variant_of_every_task_behaves_as_labelled(style):
    # Exhaustive over all parameter instances (the sandbox test above covers a subset with real verdicts):
    # catches a bug that happens to pass for some parameter value, or a correct variant that fails.
    wrong = []
    for t in synthetic.make_tasks(param_style=style):
        for sol in synthetic.solutions(t):
            got = _outcome_in_process(t, sol.completion)
            if got != synthetic.expected_outcome(sol.bug):
                wrong.append((t.task_id, t.metadata["param"], sol.bug, got))
    assert not wrong, wrong[:10]


def test_public_examples_pass_with_every_correct_variant_and_expose_the_bugs():
    # In-process over every task (the sandbox test above runs the references): the docstring examples
    # are right, and they expose every buggy variant but pad_left's infinite loop (as documented).
    exposed, unexposed, repeats, examples = 0, set(), collections.Counter(), 0
    for t in synthetic.make_tasks():
        public = dataclasses.replace(t, test=t.public_test)
        hidden_calls = {a.split(" == ")[0][len("assert "):] for a in t.test["asserts"]}
        for i in range(data.public.num_cases(t.public_test)):
            call = data.public.describe_case(t.public_test, i)[0]
            examples += 1
            if call in hidden_calls:
                repeats[call.endswith("('')") or call.endswith("([])")] += 1
        for sol in synthetic.solutions(t):
            got = _outcome_in_process(public, sol.completion)
            if sol.bug is None:
                assert got == ("passed", None), (t.task_id, sol.completion)
            elif got[0] != "passed":
                exposed += 1
            else:
                unexposed.add((t.metadata["family"], sol.bug))
    assert exposed == 1271 and unexposed == {("pad_left", "infinite_loop")}
    # Examples repeat a hidden case only where nothing else exposes the bug: empty inputs, mostly.
    assert (examples, repeats[True], repeats[False]) == (711, 115, 3)


def test_param_styles():
    arg = synthetic.make_tasks(families=["element_at"], param_style="argument")
    lit = synthetic.make_tasks(families=["element_at"], param_style="literal")
    assert [t.test for t in arg] == [t.test for t in lit]          # same hidden tests either way
    # argument style: one set of bodies per family, whatever the parameter -> what is learned transfers
    assert len({tuple(s.completion for s in synthetic.solutions(t)) for t in arg}) == 1
    assert arg[3].prompt.startswith("def element_at(xs, i=3):\n") and "at index i," in arg[3].prompt
    # literal style: the value is in the docstring and must be copied into the body
    assert lit[3].prompt.startswith("def element_at(xs):\n") and "at index 3," in lit[3].prompt
    assert synthetic.solutions(lit[3])[0].completion == "    if len(xs) > 3:\n        return xs[3]\n    return None\n"
    corpus = synthetic.warm_start_corpus([t for t in lit if t.metadata["split"] == "train"])
    assert all(e.prompt.startswith("def element_at(xs):") for e in corpus)
    with pytest.raises(ValueError, match="param_style"):
        synthetic.make_tasks(param_style="mixed")
