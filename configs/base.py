"""Every experiment config field, declared once: name, default, meaning, check, and whether it changes results.

Each ``configs/<name>.py`` builds on :func:`get_config` and overrides what it needs. ``launch/main.py`` calls
:func:`validate` before any work starts, so a bad value fails in the first second with a message naming the
field, not an hour into a run. The README's field table is :func:`markdown_table` (``python -m configs.base``
prints it; a test checks that the README holds exactly that table).
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Optional

import ml_collections

from ieta_jax.api.judge import FEEDBACK_MODES
from sandbox.gvisor import PLATFORMS
from sandbox.schema import MAX_MEMORY_MB, MAX_TIMEOUT_S

METHODS = ("baseline", "dpo", "rlaif", "all")
DATASETS = ("synthetic", "humaneval", "mbpp", "apps")
LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")
BACKENDS = ("gvisor", "process", "ray")
DTYPES = ("float32", "bfloat16", "float16")
SCHEDULES = ("cosine", "linear", "constant")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field."""


# A check returns None when the value is good, else what is wrong ("must be > 0").
Check = Callable[[Any], Optional[str]]


def one_of(options: tuple) -> Check:
    return lambda v: None if v in options else f"must be one of {options}"


def int_at_least(low: int, note: str = "") -> Check:
    msg = f"must be an integer >= {low}" + (f" ({note})" if note else "")
    return lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= low else msg


def int_in(low: int, high: int) -> Check:
    msg = f"must be an integer in [{low}, {high}]"
    return lambda v: None if isinstance(v, int) and not isinstance(v, bool) and low <= v <= high else msg


def number_at_least(low: float, *, strict: bool = False) -> Check:
    """A finite number from ``low`` up (nan fails the comparison; inf is no learning rate, temperature or beta)."""
    text = f"must be > {low:g}" if strict else f"must be >= {low:g}"

    def check(v):
        if not (v > low if strict else v >= low):
            return text
        return None if math.isfinite(v) else "must be finite"
    return check


def number_in(low: float, high: float, *, low_open: bool, high_open: bool) -> Check:
    text = f"must be in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(v):
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        return None if ok else text
    return check


def mesh_axis(v) -> Optional[str]:
    ok = isinstance(v, int) and (v >= 1 or v == -1)
    return None if ok else "must be an integer >= 1 or -1 (the rest of the devices)"


@dataclasses.dataclass(frozen=True)
class Field:
    name: str                       # dotted path, e.g. "dpo.beta"
    default: Any
    meaning: str                    # one line: the README's "Meaning" column
    check: Optional[Check] = None   # per-value check; cross-field rules live in validate()
    changes_results: bool = True    # False: may differ when a run is resumed (logging, fleet sizing)


FIELDS: tuple[Field, ...] = (
    # What to run.
    Field("method", "all", "baseline / dpo / rlaif / all (the three from one starting policy)", one_of(METHODS)),
    Field("num_iterations", 2, "feedback iterations per method (0: evaluate the starting policy only)",
          int_at_least(0)),
    Field("seed", 0, "seeds the model init, data order, sampling and the synthetic suite", int_at_least(0)),
    Field("debug", False, "verbose logging, per-sample programs in the log", changes_results=False),
    Field("compilation_cache", "workdir", "XLA's persistent compilation cache: workdir (<workdir>/compilation_cache: "
          "a later iteration, method or restart compiles nothing twice) / none / a directory to share across runs",
          changes_results=False),
    # Tasks.
    Field("dataset", "synthetic", "held-out tasks: synthetic / humaneval / mbpp / apps / a local JSONL or parquet "
          "file"),
    Field("train_dataset", "", 'dataset of the feedback (train) tasks; "" = the same as `dataset`'),
    Field("train_split", "train", "split sampled for feedback (checked against the dataset's splits)"),
    Field("eval_split", "test", "held-out split for evaluation (checked against the dataset's splits)"),
    Field("num_train_tasks", 0, "0 = every task of the split", int_at_least(0)),
    Field("num_eval_tasks", 0, "0 = every task of the split", int_at_least(0)),
    Field("num_family_tasks", 0, "synthetic suite: tasks of the held-out-family split evaluated beside `eval_split` "
          "(0 = as many as `num_eval_tasks`)", int_at_least(0)),
    Field("prompt_format", "completion", "completion / chat (the tokenizer's chat template, fenced-code extraction)",
          one_of(("completion", "chat"))),
    # Policy model.
    Field("model", "tiny", '"tiny" (embedded, trained here) or a HF checkpoint dir / hub id in the local cache'),
    Field("dtype", "float32", "compute dtype", one_of(DTYPES)),
    Field("param_dtype", "float32", "master weights and optimizer state", one_of(DTYPES)),
    Field("max_prompt_len", 256, "prompts are left-truncated to this many tokens", int_at_least(1)),
    Field("max_new_tokens", 128, "generation length limit per completion", int_at_least(1)),
    # The embedded tiny model (model == "tiny").
    Field("tiny.vocab_size", 1024, "BPE vocabulary trained on the synthetic corpus", int_at_least(300)),
    Field("tiny.hidden_size", 128, "tiny Llama width", int_at_least(1)),
    Field("tiny.intermediate_size", 384, "SwiGLU hidden size", int_at_least(1)),
    Field("tiny.num_layers", 2, "decoder layers", int_at_least(1)),
    Field("tiny.num_heads", 4, "attention heads", int_at_least(1)),
    Field("tiny.num_kv_heads", 2, "key/value heads (grouped-query attention)", int_at_least(1)),
    Field("tiny.max_position_embeddings", 512, "must cover max_prompt_len + max_new_tokens", int_at_least(1)),
    Field("tiny.solutions_per_task", 4, "warm-start corpus: solutions per synthetic train task", int_at_least(1)),
    Field("tiny.bug_fraction", 0.5, "fraction of corpus solutions that carry realistic bugs",
          number_in(0.0, 1.0, low_open=False, high_open=False)),
    Field("tiny.warm_start_steps", 400, "SFT steps of the warm start (once per workdir)", int_at_least(0)),
    Field("tiny.warm_start_lr", 3e-3, "SFT peak learning rate (warmup, cosine decay)",
          number_at_least(0.0, strict=True)),
    Field("tiny.warm_start_batch_size", 32, "SFT examples per step", int_at_least(1)),
    Field("tiny.repair_examples_per_task", 0, "warm-start corpus: repair examples (buggy program + its public-test "
          "feedback -> fix) per train task", int_at_least(0)),
    # Sampling.
    Field("num_samples", 8, "completions per train task per iteration (the group size G for RL)", int_at_least(1)),
    Field("eval_num_samples", 10, "completions per held-out task; must be >= max(pass_at_k)", int_at_least(1)),
    Field("pass_at_k", (1, 10), "k values of the unbiased pass@k estimator"),
    Field("temperature", 0.8, "sampling temperature for feedback (and RL rollouts)", number_at_least(0.0)),
    Field("top_p", 0.95, "nucleus sampling (1 = off)", number_in(0.0, 1.0, low_open=True, high_open=False)),
    Field("top_k", 0, "top-k sampling (0 = off)", int_at_least(0)),
    Field("eval_temperature", 0.8, "sampling temperature for held-out evaluation", number_at_least(0.0)),
    Field("sample_batch_size", 64, "sequences per generate() call; each batch goes to the sandbox at once",
          int_at_least(1)),
    # Repair episodes.
    Field("max_turns", 2, "turns per episode: a program failing its public tests gets a repair turn (the task, the "
          "program, its feedback); 1 = one program per sample", int_at_least(1)),
    Field("repair_num_samples", 2, "fixes sampled per failing train program (repair DPO pairs compare them); the "
          "episode continues with the first", int_at_least(1)),
    Field("repair_relabel", 2, "repair pairs (DPO, reward model) also compare a failing program's fixes with the "
          "program itself and with up to this many of the task's programs that passed (muCode-style relabelling; "
          "0 = the fixes only); with rlaif.sft_weight, RL imitates up to this many under each repair prompt",
          int_at_least(0)),
    # Optimisation shared by the trainers.
    Field("batch_size", 16, "pairs per DPO / reward-model step; completions per RL update", int_at_least(1)),
    Field("learning_rate", 1e-4, "policy learning rate (DPO and RL)", number_at_least(0.0, strict=True)),
    Field("train_steps", 50, "policy steps per iteration (DPO steps, or RL steps for RLAIF)", int_at_least(1)),
    Field("warmup_steps", 0, "linear warmup steps of the policy optimizer", int_at_least(0)),
    Field("lr_schedule", "constant", "cosine / linear / constant (decay over all iterations)", one_of(SCHEDULES)),
    Field("weight_decay", 0.0, "AdamW weight decay", number_at_least(0.0)),
    Field("decay_norms_and_biases", False, "apply weight decay to biases and norm weights too (HF Trainer: no)"),
    Field("max_grad_norm", 1.0, "global-norm gradient clipping", number_at_least(0.0, strict=True)),
    Field("grad_accum_steps", 1, "micro-batches per optimizer update", int_at_least(1)),
    # DPO.
    Field("dpo.beta", 0.1, "DPO temperature (strength of the KL anchor to the reference)",
          number_at_least(0.0, strict=True)),
    Field("dpo.loss_type", "sigmoid", "sigmoid / ipo / hinge / robust", one_of(LOSS_TYPES)),
    Field("dpo.label_smoothing", 0.0, "conservative DPO / robust DPO noise rate",
          number_in(0.0, 0.5, low_open=False, high_open=True)),
    Field("dpo.max_pairs_per_task", 8, "preference pairs kept per task per iteration (DPO and reward model)",
          int_at_least(1)),
    Field("dpo.max_repair_pairs", 1, "preference pairs kept per failing program's repair turn (DPO and reward "
          "model); bounds the share of repair pairs", int_at_least(1)),
    Field("dpo.sft_weight", 0.0, "+ weight x NLL of the chosen completion (RPO); 0 = plain DPO",
          number_at_least(0.0)),
    # RLAIF.
    Field("rlaif.reward_steps", 50, "reward-model steps per iteration", int_at_least(1)),
    Field("rlaif.reward_learning_rate", 1e-4, "reward-model learning rate", number_at_least(0.0, strict=True)),
    Field("rlaif.kl_beta", 0.05, "KL-to-reference coefficient (k3)", number_at_least(0.0)),
    Field("rlaif.clip_eps", 0.2, "PPO ratio clip", number_in(0.0, 1.0, low_open=True, high_open=True)),
    Field("rlaif.inner_epochs", 1, "PPO epochs over each rollout", int_at_least(1)),
    Field("rlaif.scale_rewards", "group", "advantage scaling: group / batch (std of the whole batch) / none (TRL's "
          "names)", one_of(("group", "batch", "none"))),
    Field("rlaif.loss_type", "dapo", "RL loss aggregation: grpo / bnpo / dr_grpo / dapo (TRL's names, divisors and "
          "default)", one_of(("grpo", "bnpo", "dr_grpo", "dapo"))),
    Field("rlaif.epsilon_high", 0.0, "upper PPO ratio clip (DAPO clip-higher); 0 = the same as clip_eps",
          number_at_least(0.0)),
    Field("rlaif.kl_importance_correction", True, "multiply the k3 KL by the importance ratio (TRL's "
          "use_bias_correction_kl)"),
    Field("rlaif.execution_reward_weight", 0.0, "add feedback.execution_reward x weight to the RM score",
          number_at_least(0.0)),
    Field("rlaif.prompts_per_step", 4, "train tasks per RL step (x num_samples completions each)", int_at_least(1)),
    Field("rlaif.turn_rewards", False, "with max_turns > 1: each turn's tokens get the group-relative advantage of "
          "the episode's program after that turn (muCode-style per-turn rewards) instead of the episode's final "
          "reward"),
    Field("rlaif.repair_fixes", 1, "with max_turns > 1: fixes sampled per failing program at each RL repair turn "
          "(the episode continues with the first); > 1 makes them a group of their own, each fix's tokens getting "
          "its advantage among the fixes of the same program (RLEF)", int_at_least(1)),
    Field("rlaif.sft_weight", 0.0, "+ weight x NLL of the RL rollout's programs that passed the hidden tests "
          "(expert iteration beside the policy gradient, muCode/RAFT; every turn's passing programs under their own "
          "prompts); 0 = off", number_at_least(0.0)),
    Field("rlaif.sft_min_turn", 1, "rlaif.sft_weight imitates the passing programs of turns >= this (2: passing "
          "repairs only)", int_at_least(1)),
    Field("rlaif.group_by_length", True, "RL mini-batches of rows of similar length, each cut to its longest row "
          "(TRL deals rows at random): the same rollout and per-row losses, only the split into mini-batches differs"),
    # Sandbox fleet.
    Field("sandbox.backend", "gvisor", "gvisor / process (unisolated, warns) / ray", one_of(BACKENDS)),
    Field("sandbox.reuse_verdicts", True, "identical requests of one rollout (the same program and tests, e.g. two "
          "samples that wrote the same code) run once and share the verdict; off: every sample runs"),
    Field("sandbox.workers", 0, "sandboxes (with ray: per actor); 0 = the backend default (gVisor: one per CPU "
          "core)", int_at_least(0, "0 = one per core"), changes_results=False),
    Field("sandbox.ray_address", "", 'for backend=ray: "auto" or host:port; "" starts a local Ray',
          changes_results=False),
    Field("sandbox.ray_node_resource", "", "for backend=ray: only nodes with this custom resource host sandbox "
          "actors (the TPU pod config uses `sandbox_host`)", changes_results=False),
    Field("sandbox.platform", "ptrace", "for backend=gvisor/ray: runsc's platform, ptrace (works on every host) / "
          "systrap / kvm (needs /dev/kvm; may be the fastest where it works)", one_of(PLATFORMS),
          changes_results=False),
    Field("trace", True, "capture execution traces (stored with pairs and sample programs)"),
    Field("timeout_s", 5.0, "maximum execution time per program",
          number_in(0.0, MAX_TIMEOUT_S, low_open=True, high_open=False)),  # the sandbox's own bounds
    Field("memory_mb", 512, "memory limit per program", int_in(32, MAX_MEMORY_MB)),
    # Device mesh.
    Field("mesh.data", -1, "data-parallel axis size", mesh_axis),
    Field("mesh.fsdp", 1, "fully-sharded data-parallel axis size", mesh_axis),
    Field("mesh.tensor", 1, "tensor-parallel axis size", mesh_axis),
    # Output.
    Field("checkpoint_keep", 2, "Orbax checkpoints kept per trainer", int_at_least(1), changes_results=False),
    Field("num_text_samples", 4, "sample programs (with traces) written to TensorBoard per evaluation",
          int_at_least(0), changes_results=False),
    # API models (ieta_jax.api): a hosted policy (baseline evaluation only) and the AI judge of RLAIF.
    Field("policy", "", 'an `openai://host[:port]/path` or `anthropic://` endpoint evaluated instead of `model` '
          '(method baseline only); "" = the local `model`'),
    Field("policy_model_name", "", "the endpoint's model name (required with `policy`)"),
    Field("api.max_concurrency", 8, "requests in flight per endpoint", int_at_least(1), changes_results=False),
    Field("rlaif.feedback", "execution", "who decides RLAIF's preference pairs: execution (the sandbox) / judge (an "
          "AI judge) / both (execution, the judge breaks its ties)", one_of(FEEDBACK_MODES)),
    Field("rlaif.judge", "", "the judge's `openai://` / `anthropic://` endpoint (required unless feedback=execution)"),
    Field("rlaif.judge_model", "", "the judge endpoint's model name"),
    Field("rlaif.judge_swap", False, "ask each pair in both orders; keep only verdicts that survive the swap"),
    Field("rlaif.judge_audit", True, "with feedback=both, also ask the judge about pairs execution decides (its "
          "agreement with execution is reported)"),
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}


def get_config() -> ml_collections.ConfigDict:
    """Defaults: synthetic suite, embedded tiny model, CPU, all three methods."""
    c = ml_collections.ConfigDict()
    for f in FIELDS:
        node = c
        *groups, leaf = f.name.split(".")
        for g in groups:
            if g not in node:
                node[g] = ml_collections.ConfigDict()
            node = node[g]
        node[leaf] = f.default
    return c


def leaf_values(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"dpo.beta": 0.1, ...}`` from a nested dict (a config's ``to_dict()`` or a stored config.json)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(leaf_values(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def changed_fields(previous: dict, current: dict) -> list[str]:
    """Leaf fields that differ between two configs and change results (resuming across them would mix runs)."""
    a, b = leaf_values(previous), leaf_values(current)
    return sorted(k for k in set(a) | set(b)
                  if a.get(k) != b.get(k) and FIELDS_BY_NAME.get(k, Field(k, None, "")).changes_results)


def markdown_table() -> str:
    """The README's config table, from FIELDS."""
    rows = ["| Field | Default | Meaning |", "|---|---|---|"]
    rows += [f"| `{f.name}` | `{f.default!r}` | {f.meaning} |" for f in FIELDS]
    return "\n".join(rows)


def _require(ok: bool, field: str, message: str, value) -> None:
    if not ok:
        raise ConfigError(f"config.{field} {message}, got {value!r}")


def dataset_splits(name: str) -> Optional[tuple[str, ...]]:
    """The splits a named dataset has (None for local files and hub ids: only loading them tells)."""
    from ieta_jax.data import apps, mbpp, synthetic

    return {"synthetic": (*synthetic.SPLITS, *synthetic.SPLIT_ALIASES), "humaneval": ("test",), "mbpp": tuple(mbpp.SPLIT_RANGES),
            "apps": apps.SPLITS}.get(name)


def rl_rows_per_episode(c: ml_collections.ConfigDict) -> int:
    """The most RL sequences one episode can have: turn 1, then ``rlaif.repair_fixes`` per later turn
    (``RLConfig.rows_per_episode`` of ``library_configs.rl_config(c)``)."""
    return 1 + (c.max_turns - 1) * c.rlaif.repair_fixes


def validate(c: ml_collections.ConfigDict) -> None:
    """Raise :class:`ConfigError` naming the first bad field."""
    values = leaf_values(c.to_dict())
    for name in values:
        _require(name in FIELDS_BY_NAME, name, "is not a config field (see configs/base.py FIELDS)", values[name])
    for f in FIELDS:
        problem = f.check(values[f.name]) if f.check is not None else None
        _require(problem is None, f.name, problem, values[f.name])

    _require(c.dataset in DATASETS or os.path.exists(str(c.dataset)), "dataset",
             f"must be one of {DATASETS} or an existing local file", c.dataset)
    _require(c.train_dataset == "" or c.train_dataset in DATASETS or os.path.exists(str(c.train_dataset)),
             "train_dataset", f'must be "", one of {DATASETS} or an existing local file', c.train_dataset)
    check_endpoints(c)
    _require(c.sandbox.platform == "ptrace" or c.sandbox.backend != "process", "sandbox.platform",
             "applies to backend=gvisor or ray (the process backend runs no runsc)", c.sandbox.platform)
    if c.model == "tiny" and not c.policy:
        _require(c.dataset == "synthetic" and c.train_dataset in ("", "synthetic"), "dataset",
                 "must be 'synthetic' with model='tiny' (the tiny model is trained on the synthetic corpus)",
                 c.dataset)
    _require(c.prompt_format != "chat" or c.model != "tiny" or bool(c.policy), "prompt_format",
             "must be 'completion' with model='tiny' (its tokenizer has no chat template)", c.prompt_format)
    for field, dataset in (("train_split", c.train_dataset or c.dataset), ("eval_split", c.dataset)):
        splits = dataset_splits(dataset)
        if splits is not None:
            _require(c[field] in splits, field, f"must be a split of {dataset}: one of {splits}", c[field])
    _require(isinstance(c.model, str) and c.model != "", "model",
             "must be 'tiny', a HF checkpoint directory or a hub id", c.model)
    if c.model != "tiny":
        if os.path.exists(c.model) or c.model.startswith((".", "/", "~")):
            _require(os.path.isfile(os.path.join(c.model, "config.json")), "model",
                     "is not a checkpoint directory with a config.json", c.model)
        else:
            _require(c.model.count("/") == 1 and all(c.model.split("/")), "model",
                     "is neither 'tiny', an existing checkpoint directory nor a hub id like 'org/name'", c.model)
    ks = tuple(c.pass_at_k)
    _require(len(ks) >= 1 and all(isinstance(k, int) and k >= 1 for k in ks), "pass_at_k",
             "must be a non-empty list of integers >= 1", c.pass_at_k)
    _require(max(ks) <= c.eval_num_samples, "pass_at_k",
             f"asks for k={max(ks)} but config.eval_num_samples={c.eval_num_samples} (need n >= k)", c.pass_at_k)

    t = c.tiny
    _require(t.hidden_size % t.num_heads == 0, "tiny.hidden_size",
             f"must be divisible by config.tiny.num_heads={t.num_heads}", t.hidden_size)
    _require(t.num_heads % t.num_kv_heads == 0, "tiny.num_kv_heads",
             f"must divide config.tiny.num_heads={t.num_heads}", t.num_kv_heads)
    if c.model == "tiny":
        _require(c.max_prompt_len + c.max_new_tokens <= t.max_position_embeddings, "max_new_tokens",
                 f"plus config.max_prompt_len={c.max_prompt_len} exceeds config.tiny.max_position_embeddings="
                 f"{t.max_position_embeddings}", c.max_new_tokens)
    _require(c.num_samples >= 2 or c.method not in ("rlaif", "all", "dpo"), "num_samples",
             "must be >= 2 for dpo/rlaif (pairs and group-relative advantages need several samples per task)",
             c.num_samples)
    _require(c.batch_size % c.grad_accum_steps == 0, "grad_accum_steps",
             f"must divide config.batch_size={c.batch_size}", c.grad_accum_steps)
    if c.method in ("rlaif", "all"):
        rollout = c.rlaif.prompts_per_step * c.num_samples
        _require(rollout % c.batch_size == 0, "batch_size",
                 f"must divide config.rlaif.prompts_per_step x config.num_samples = {rollout} (RL mini-batches)",
                 c.batch_size)
        rows_per_episode = rl_rows_per_episode(c)
        _require(c.batch_size >= rows_per_episode, "batch_size",
                 f"must be >= 1 + (config.max_turns - 1) x config.rlaif.repair_fixes = {rows_per_episode} (every RL "
                 f"mini-batch of episode turns needs a real one)", c.batch_size)
    sizes = {name: c.mesh[name] for name in ("data", "fsdp", "tensor")}
    _require(sum(1 for s in sizes.values() if s == -1) <= 1, "mesh",
             "may have at most one axis of size -1", dict(sizes))


def check_endpoints(c: ml_collections.ConfigDict) -> None:
    """An API policy or judge: a well-formed URI with a model name; a hosted policy is only evaluated."""
    from ieta_jax.api.client import parse_endpoint

    for field, uri, name_field, name in (("policy", c.policy, "policy_model_name", c.policy_model_name),
                                         ("rlaif.judge", c.rlaif.judge, "rlaif.judge_model", c.rlaif.judge_model)):
        if uri:
            try:
                parse_endpoint(uri, name)
            except ValueError as e:
                raise ConfigError(f"config.{field}: {str(e).replace('(--model_name)', f'(config.{name_field})')}"
                                  ) from None
    _require(not c.policy or c.method == "baseline", "method",
             f"must be 'baseline' with config.policy={c.policy!r} (a hosted model is evaluated, not trained: its "
             "weights are not here)", c.method)
    if c.method in ("rlaif", "all") and c.rlaif.feedback != "execution":
        _require(bool(c.rlaif.judge), "rlaif.judge",
                 f"must name the judge endpoint with config.rlaif.feedback={c.rlaif.feedback!r}", c.rlaif.judge)


def check_devices(c: ml_collections.ConfigDict, num_devices: int) -> None:
    """The mesh must tile the devices exactly; called once JAX knows how many there are."""
    sizes = [c.mesh.data, c.mesh.fsdp, c.mesh.tensor]
    fixed = 1
    for s in sizes:
        if s != -1:
            fixed *= s
    if -1 in sizes:
        _require(num_devices % fixed == 0, "mesh",
                 f"fixed axis sizes (product {fixed}) must divide the {num_devices} devices", c.mesh.to_dict())
    else:
        _require(fixed == num_devices, "mesh", f"sizes must multiply to the {num_devices} devices",
                 c.mesh.to_dict())


if __name__ == "__main__":
    import sys

    try:
        print(markdown_table(), flush=True)
    except BrokenPipeError:  # piped into `head`: the reader left; stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
