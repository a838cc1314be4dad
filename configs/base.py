"""Shared defaults and start-up validation for every experiment config.

Each ``configs/<name>.py`` builds on :func:`get_config` and overrides what it needs;
``launch/main.py`` calls :func:`validate` before any work starts so that a bad value
fails in the first second with a message naming the field, not an hour into a run.
"""
from __future__ import annotations

import os

import ml_collections

METHODS = ("baseline", "dpo", "rlaif", "all")
DATASETS = ("synthetic", "humaneval", "mbpp", "apps")
LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")
BACKENDS = ("gvisor", "process", "ray")
DTYPES = ("float32", "bfloat16", "float16")
SCHEDULES = ("cosine", "linear", "constant")


def get_config() -> ml_collections.ConfigDict:
    """Defaults: synthetic suite, embedded tiny model, CPU, all three methods."""
    c = ml_collections.ConfigDict()

    # What to run.
    c.method = "all"            # baseline / dpo / rlaif / all (the three from one starting policy)
    c.num_iterations = 2        # feedback iterations per method
    c.seed = 0                  # seeds the model init, data order, sampling and the synthetic suite
    c.debug = False             # verbose logging, per-sample programs in the log

    # Tasks.
    c.dataset = "synthetic"     # held-out tasks: synthetic / humaneval / mbpp / apps / a local JSONL or parquet file
    c.train_dataset = ""        # dataset of the feedback (train) tasks; "" = the same as `dataset`
    c.train_split = "train"     # split sampled for feedback
    c.eval_split = "test"       # held-out split for evaluation
    c.num_train_tasks = 0       # 0 = every task of the split
    c.num_eval_tasks = 0        # 0 = every task of the split
    c.prompt_format = "completion"  # completion / chat (the tokenizer's chat template, fenced-code extraction)

    # Policy model: "tiny" (embedded, trained here) or a HF checkpoint dir / hub id.
    c.model = "tiny"            # "tiny" (embedded, trained here) or a HF checkpoint dir / hub id in the local cache
    c.dtype = "float32"         # compute dtype
    c.param_dtype = "float32"   # master weights and optimizer state
    c.max_prompt_len = 256      # prompts are left-truncated to this many tokens
    c.max_new_tokens = 128      # generation length limit per completion

    # The embedded tiny model (used when model == "tiny").
    c.tiny = ml_collections.ConfigDict()
    c.tiny.vocab_size = 1024    # BPE vocabulary trained on the synthetic corpus
    c.tiny.hidden_size = 128    # tiny Llama width
    c.tiny.intermediate_size = 384  # SwiGLU hidden size
    c.tiny.num_layers = 2       # decoder layers
    c.tiny.num_heads = 4        # attention heads
    c.tiny.num_kv_heads = 2     # key/value heads (grouped-query attention)
    c.tiny.max_position_embeddings = 512  # must cover max_prompt_len + max_new_tokens
    c.tiny.solutions_per_task = 4  # warm-start corpus: solutions per synthetic train task
    c.tiny.bug_fraction = 0.5   # fraction of corpus solutions that carry realistic bugs
    c.tiny.warm_start_steps = 400  # SFT steps of the warm start (once per workdir)
    c.tiny.warm_start_lr = 3e-3    # SFT peak learning rate (warmup, cosine decay)
    c.tiny.warm_start_batch_size = 32  # SFT examples per step

    # Sampling for feedback (train tasks) and evaluation (held-out tasks).
    c.num_samples = 8           # completions per train task per iteration (the group size G for RL)
    c.eval_num_samples = 10     # completions per held-out task; must be >= max(pass_at_k)
    c.pass_at_k = (1, 10)       # k values of the unbiased pass@k estimator
    c.temperature = 0.8         # sampling temperature for feedback (and RL rollouts)
    c.top_p = 0.95              # nucleus sampling (1 = off)
    c.top_k = 0                 # top-k sampling (0 = off)
    c.eval_temperature = 0.8    # sampling temperature for held-out evaluation
    c.sample_batch_size = 64    # sequences per generate() call; each batch goes to the sandbox at once

    # Optimisation shared by the trainers.
    c.batch_size = 16           # pairs per DPO / reward-model step; completions per RL update
    c.learning_rate = 1e-4      # policy learning rate (DPO and RL)
    c.train_steps = 50          # policy steps per iteration (DPO steps, or RL steps for RLAIF)
    c.warmup_steps = 0          # linear warmup steps of the policy optimizer
    c.lr_schedule = "constant"  # cosine / linear / constant (decay over all iterations)
    c.weight_decay = 0.0        # AdamW weight decay
    c.max_grad_norm = 1.0       # global-norm gradient clipping
    c.grad_accum_steps = 1      # micro-batches per optimizer update

    # DPO.
    c.dpo = ml_collections.ConfigDict()
    c.dpo.beta = 0.1            # DPO temperature (strength of the KL anchor to the reference)
    c.dpo.loss_type = "sigmoid"  # sigmoid / ipo / hinge / robust
    c.dpo.label_smoothing = 0.0  # conservative DPO / robust DPO noise rate
    c.dpo.max_pairs_per_task = 8  # preference pairs kept per task per iteration (DPO and reward model)
    c.dpo.sft_weight = 0.0        # + weight x NLL of the chosen completion (RPO); 0 = plain DPO

    # RLAIF: reward model on the pairs, then group-relative RL against it.
    c.rlaif = ml_collections.ConfigDict()
    c.rlaif.reward_steps = 50   # reward-model steps per iteration
    c.rlaif.reward_learning_rate = 1e-4  # reward-model learning rate
    c.rlaif.kl_beta = 0.05        # KL-to-reference coefficient (k3)
    c.rlaif.clip_eps = 0.2      # PPO ratio clip
    c.rlaif.inner_epochs = 1    # PPO epochs over each rollout
    c.rlaif.scale_rewards = True  # divide advantages by the group std
    c.rlaif.execution_reward_weight = 0.0  # add feedback.execution_reward x weight to the RM score
    c.rlaif.prompts_per_step = 4  # train tasks per RL step (x num_samples completions each)

    # Sandbox fleet.
    c.sandbox = ml_collections.ConfigDict()
    c.sandbox.backend = "gvisor"  # gvisor / process (unisolated, warns) / ray
    c.sandbox.workers = 0         # sandboxes (ray: per actor); 0 = the backend default
    c.sandbox.ray_address = ""    # for backend=ray: "auto" or host:port; "" starts a local Ray
    c.sandbox.ray_node_resource = ""  # for backend=ray: only nodes with this custom resource host sandboxes
    c.trace = True                # capture execution traces (stored with pairs and sample programs)
    c.timeout_s = 5.0             # maximum execution time per program
    c.memory_mb = 512           # memory limit per program

    # Device mesh (-1 = the rest of the devices).
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1            # data-parallel axis size
    c.mesh.fsdp = 1             # fully-sharded data-parallel axis size
    c.mesh.tensor = 1           # tensor-parallel axis size

    # Output.
    c.checkpoint_keep = 2       # Orbax checkpoints kept per trainer
    c.num_text_samples = 4        # sample programs (with traces) written to TensorBoard per evaluation
    return c


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field."""


def _require(ok: bool, field: str, message: str, value) -> None:
    if not ok:
        raise ConfigError(f"config.{field} {message}, got {value!r}")


def validate(c: ml_collections.ConfigDict) -> None:
    """Raise :class:`ConfigError` naming the first bad field."""
    _require(c.method in METHODS, "method", f"must be one of {METHODS}", c.method)
    _require(c.dataset in DATASETS or os.path.exists(str(c.dataset)), "dataset",
             f"must be one of {DATASETS} or an existing local file", c.dataset)
    _require(isinstance(c.model, str) and c.model != "", "model",
             "must be 'tiny', a HF checkpoint directory or a hub id", c.model)
    if c.model != "tiny":
        if os.path.exists(c.model) or c.model.startswith((".", "/", "~")):
            _require(os.path.isfile(os.path.join(c.model, "config.json")), "model",
                     "is not a checkpoint directory with a config.json", c.model)
        else:
            _require(c.model.count("/") == 1 and all(c.model.split("/")), "model",
                     "is neither 'tiny', an existing checkpoint directory nor a hub id like 'org/name'", c.model)
    for field in ("num_iterations", "num_train_tasks", "num_eval_tasks", "seed", "warmup_steps",
                  "checkpoint_keep", "num_text_samples", "top_k"):
        _require(isinstance(c[field], int) and c[field] >= 0, field, "must be an integer >= 0", c[field])
    for field in ("num_samples", "eval_num_samples", "sample_batch_size", "batch_size", "train_steps",
                  "max_new_tokens", "max_prompt_len", "grad_accum_steps"):
        _require(isinstance(c[field], int) and c[field] >= 1, field, "must be an integer >= 1", c[field])
    ks = tuple(c.pass_at_k)
    _require(len(ks) >= 1 and all(isinstance(k, int) and k >= 1 for k in ks), "pass_at_k",
             "must be a non-empty list of integers >= 1", c.pass_at_k)
    _require(max(ks) <= c.eval_num_samples, "pass_at_k",
             f"asks for k={max(ks)} but config.eval_num_samples={c.eval_num_samples} (need n >= k)", c.pass_at_k)
    for field in ("temperature", "eval_temperature"):
        _require(c[field] >= 0.0, field, "must be >= 0", c[field])
    _require(0.0 < c.top_p <= 1.0, "top_p", "must be in (0, 1]", c.top_p)
    _require(c.learning_rate > 0.0, "learning_rate", "must be > 0", c.learning_rate)
    _require(c.weight_decay >= 0.0, "weight_decay", "must be >= 0", c.weight_decay)
    _require(c.max_grad_norm > 0.0, "max_grad_norm", "must be > 0", c.max_grad_norm)
    _require(c.lr_schedule in SCHEDULES, "lr_schedule", f"must be one of {SCHEDULES}", c.lr_schedule)
    _require(c.dtype in DTYPES, "dtype", f"must be one of {DTYPES}", c.dtype)
    _require(c.param_dtype in DTYPES, "param_dtype", f"must be one of {DTYPES}", c.param_dtype)
    _require(c.prompt_format in ("completion", "chat"), "prompt_format", "must be 'completion' or 'chat'",
             c.prompt_format)
    _require(c.timeout_s > 0.0, "timeout_s", "must be > 0 seconds", c.timeout_s)
    _require(isinstance(c.memory_mb, int) and c.memory_mb >= 16, "memory_mb", "must be an integer >= 16",
             c.memory_mb)

    # Tiny model.
    t = c.tiny
    for field in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                  "max_position_embeddings", "solutions_per_task", "warm_start_batch_size"):
        _require(isinstance(t[field], int) and t[field] >= 1, f"tiny.{field}", "must be an integer >= 1", t[field])
    _require(isinstance(t.warm_start_steps, int) and t.warm_start_steps >= 0, "tiny.warm_start_steps",
             "must be an integer >= 0", t.warm_start_steps)
    _require(t.vocab_size >= 300, "tiny.vocab_size", "must be >= 300 (256 byte symbols + specials + merges)",
             t.vocab_size)
    _require(t.hidden_size % t.num_heads == 0, "tiny.hidden_size",
             f"must be divisible by config.tiny.num_heads={t.num_heads}", t.hidden_size)
    _require(t.num_heads % t.num_kv_heads == 0, "tiny.num_kv_heads",
             f"must divide config.tiny.num_heads={t.num_heads}", t.num_kv_heads)
    _require(0.0 <= t.bug_fraction <= 1.0, "tiny.bug_fraction", "must be in [0, 1]", t.bug_fraction)
    _require(t.warm_start_lr > 0.0, "tiny.warm_start_lr", "must be > 0", t.warm_start_lr)
    if c.model == "tiny":
        _require(c.max_prompt_len + c.max_new_tokens <= t.max_position_embeddings, "max_new_tokens",
                 f"plus config.max_prompt_len={c.max_prompt_len} exceeds config.tiny.max_position_embeddings="
                 f"{t.max_position_embeddings}", c.max_new_tokens)

    if c.model == "tiny":
        _require(c.dataset == "synthetic" and c.train_dataset in ("", "synthetic"), "dataset",
                 "must be 'synthetic' with model='tiny' (the tiny model is trained on the synthetic corpus)",
                 c.dataset)

    # DPO.
    _require(c.dpo.beta > 0.0, "dpo.beta", "must be > 0", c.dpo.beta)
    _require(c.dpo.loss_type in LOSS_TYPES, "dpo.loss_type", f"must be one of {LOSS_TYPES}", c.dpo.loss_type)
    _require(0.0 <= c.dpo.label_smoothing < 0.5, "dpo.label_smoothing", "must be in [0, 0.5)",
             c.dpo.label_smoothing)
    _require(c.dpo.sft_weight >= 0.0, "dpo.sft_weight", "must be >= 0", c.dpo.sft_weight)
    _require(isinstance(c.dpo.max_pairs_per_task, int) and c.dpo.max_pairs_per_task >= 1,
             "dpo.max_pairs_per_task", "must be an integer >= 1", c.dpo.max_pairs_per_task)

    # RLAIF.
    r = c.rlaif
    _require(isinstance(r.reward_steps, int) and r.reward_steps >= 1, "rlaif.reward_steps",
             "must be an integer >= 1", r.reward_steps)
    _require(r.reward_learning_rate > 0.0, "rlaif.reward_learning_rate", "must be > 0", r.reward_learning_rate)
    _require(r.kl_beta >= 0.0, "rlaif.kl_beta", "must be >= 0", r.kl_beta)
    _require(0.0 < r.clip_eps < 1.0, "rlaif.clip_eps", "must be in (0, 1)", r.clip_eps)
    _require(isinstance(r.inner_epochs, int) and r.inner_epochs >= 1, "rlaif.inner_epochs",
             "must be an integer >= 1", r.inner_epochs)
    _require(r.execution_reward_weight >= 0.0, "rlaif.execution_reward_weight", "must be >= 0",
             r.execution_reward_weight)
    _require(isinstance(r.prompts_per_step, int) and r.prompts_per_step >= 1, "rlaif.prompts_per_step",
             "must be an integer >= 1", r.prompts_per_step)
    _require(c.num_samples >= 2 or c.method not in ("rlaif", "all", "dpo"), "num_samples",
             "must be >= 2 for dpo/rlaif (pairs and group-relative advantages need several samples per task)",
             c.num_samples)

    if c.method in ("rlaif", "all"):
        rollout = r.prompts_per_step * c.num_samples
        _require(rollout % c.batch_size == 0, "batch_size",
                 f"must divide config.rlaif.prompts_per_step x config.num_samples = {rollout} (RL mini-batches)",
                 c.batch_size)

    # Sandbox.
    _require(c.sandbox.backend in BACKENDS, "sandbox.backend", f"must be one of {BACKENDS}", c.sandbox.backend)
    _require(isinstance(c.sandbox.workers, int) and c.sandbox.workers >= 0, "sandbox.workers",
             "must be an integer >= 0 (0 = one per core)", c.sandbox.workers)

    # Mesh.
    sizes = {name: c.mesh[name] for name in ("data", "fsdp", "tensor")}
    for name, size in sizes.items():
        _require(isinstance(size, int) and (size >= 1 or size == -1), f"mesh.{name}",
                 "must be an integer >= 1 or -1 (the rest of the devices)", size)
    _require(sum(1 for s in sizes.values() if s == -1) <= 1, "mesh",
             "may have at most one axis of size -1", dict(sizes))


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
