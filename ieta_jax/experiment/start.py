"""Start-up: everything that can refuse a run does so here, before anything is written.

``check_workdir`` (no JAX) runs in ``launch.main`` right after the config validates: the workdir must be a
directory, and one holding a run with another config is refused, naming the changed leaf fields (fields
declared ``changes_results=False``, like ``sandbox.workers``, may differ). ``start`` then builds the mesh,
loads the tasks and loads the model (every tensor); only when all of that worked is ``config.json`` written, so a
failed start leaves the workdir as it was and the corrected command runs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from typing import Any

import ml_collections

from configs import base
from ieta_jax import workdir as workdir_lib
from ieta_jax.tiny import TINY_DIR

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"



class StartError(ValueError):
    """The run cannot start as asked; the message is one line saying what to fix. Nothing was written."""


@dataclasses.dataclass(frozen=True)
class Run:
    """What every stage reads: the config, the workdir, the mesh, the tasks, the model and the sandbox fleet."""

    config: ml_collections.ConfigDict
    workdir: workdir_lib.Workdir
    mesh: Any
    model_dir: str
    train_tasks: list
    eval_tasks: list
    executor: Any = None       # sandbox.Executor on process 0, None elsewhere (set by the runner)
    writers: Any = None        # MetricWriters
    judge: Any = None          # api.judge.Judge for RLAIF with judge feedback (process 0; set by the runner)
    model: Any = None          # config.model's checkpoint, loaded by start_run (None: the tiny model, or hosted)


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuse a workdir that is a file, or that holds a run with another config or a config.json that is not one."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise StartError(f"--workdir={workdir} is an existing file, not a directory")
    path = os.path.join(workdir, CONFIG_FILE)
    try:
        previous = workdir_lib.read_json(path)
    except workdir_lib.CorruptFileError as e:
        raise StartError(_not_a_run_record(str(e))) from None
    if previous is None:
        return
    if not isinstance(previous, dict):
        raise StartError(_not_a_run_record(f"{path} holds a {type(previous).__name__}, not an object of config "
                                           "fields"))
    changed = base.changed_fields(previous, json.loads(config.to_json()))
    if changed:
        now, then = base.leaf_values(json.loads(config.to_json())), base.leaf_values(previous)
        diffs = ", ".join(f"{k} ({then.get(k)!r} -> {now.get(k)!r})" for k in changed)
        raise StartError(f"{workdir} holds a run with another config: {diffs}; use a new --workdir or restore "
                         "those values")


def _not_a_run_record(problem: str) -> str:
    return (f"{problem}: not a valid run record; restore it, delete it if this command has the run's config, or use "
            "a new --workdir")


def load_task_sets(config: ml_collections.ConfigDict) -> tuple[list, list]:
    """(train tasks from ``train_dataset or dataset``, held-out tasks from ``dataset``)."""
    from ieta_jax import data

    def load(name, split, limit):
        kwargs = {"seed": config.seed} if name == "synthetic" else {}
        try:
            return data.load_tasks(name, split=split or None, limit=limit or None, **kwargs)
        except (ValueError, OSError, KeyError) as e:
            raise StartError(f"cannot load {name} split {split!r}: {str(e).splitlines()[0] if str(e) else e!r}")

    train_ds = config.train_dataset or config.dataset
    train = load(train_ds, config.train_split, config.num_train_tasks)
    held_out = load(config.dataset, config.eval_split, config.num_eval_tasks)
    if not train or not held_out:
        raise StartError(f"no tasks: {len(train)} train ({train_ds}/{config.train_split}), {len(held_out)} "
                         f"held-out ({config.dataset}/{config.eval_split})")
    overlap = {t.task_id for t in train} & {t.task_id for t in held_out}
    if overlap:
        log.warning("%d held-out tasks also appear in the train tasks (e.g. %s): held-out numbers are not held out",
                    len(overlap), sorted(overlap)[:3])
    log.info("tasks: %d train (%s), %d held-out (%s)", len(train), train_ds, len(held_out), config.dataset)
    return train, held_out


def uses_judge(c: ml_collections.ConfigDict) -> bool:
    """Whether a method of this run asks the RLAIF AI judge (``rlaif.feedback`` judge/both, and RLAIF runs)."""
    return c.rlaif.feedback != "execution" and c.method in ("rlaif", "all")


def check_api_keys(config: ml_collections.ConfigDict) -> None:
    """The API key of every endpoint this run will call (a hosted policy; the RLAIF judge when a method asks
    it), so a missing OPENAI_API_KEY / ANTHROPIC_API_KEY is refused before the workdir is written."""
    from ieta_jax.api.client import APIError, parse_endpoint

    c = config
    used = [(c.policy, c.policy_model_name)] if c.policy else []
    if c.rlaif.judge and uses_judge(c):
        used.append((c.rlaif.judge, c.rlaif.judge_model))
    for uri, model in used:
        try:
            parse_endpoint(uri, model).api_key()
        except APIError as e:
            raise StartError(str(e)) from None


@contextlib.contextmanager
def compilation_cache(config: ml_collections.ConfigDict, root: str):
    """JAX's persistent compilation cache at ``config.compilation_cache`` while the run lasts (the previous
    setting back afterwards). Each iteration's trainers jit their steps anew; with the cache, the second DPO,
    reward-model or RL iteration reads the executables the first one compiled instead of compiling them again."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    choice = config.compilation_cache
    path = (None if choice == "none" else os.path.join(root, "compilation_cache") if choice == "workdir"
            else os.path.expanduser(choice))
    before = jax.config.jax_compilation_cache_dir
    cc.reset_cache()  # the cache reads its directory once; a run in the same process may have set another
    jax.config.update("jax_compilation_cache_dir", path)
    try:
        yield path
    finally:
        cc.reset_cache()
        jax.config.update("jax_compilation_cache_dir", before)


def _cannot_load(model_dir: str, e: Exception) -> StartError:
    from ieta_jax.models import checkpoint_dir

    return StartError(f"config.model={model_dir!r} {checkpoint_dir.load_error(e)}")


def _load_start_model(config: ml_collections.ConfigDict, mesh):
    """The checkpoint at ``config.model`` on the mesh: config.json and the tokenizer first (cheap), then every
    tensor, so a model that does not load (a truncated safetensors file, missing tensors) is refused before
    ``config.json`` locks the workdir to it."""
    from ieta_jax import models
    from ieta_jax.experiment import policy as policy_lib
    from ieta_jax.models import checkpoint_dir

    model_dir = config.model
    if os.path.exists(model_dir):  # a local checkpoint: checked as evaluate and serve check theirs (else a hub id)
        try:
            checkpoint_dir.check(model_dir)
        except checkpoint_dir.CheckpointError as e:
            raise StartError(f"config.model={model_dir!r}: {e}") from None
    try:
        models.load_config(model_dir)
        tokenizer = policy_lib.load_tokenizer(model_dir)
    except Exception as e:  # noqa: BLE001 - any loader failure means the same thing: fix config.model
        raise _cannot_load(model_dir, e) from None
    if config.prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise StartError(f"config.prompt_format='chat' needs a tokenizer with a chat template; {model_dir} has "
                         "none (use prompt_format='completion')")
    try:
        return policy_lib.load_model(model_dir, config, mesh)
    except Exception as e:  # noqa: BLE001
        raise _cannot_load(model_dir, e) from None


def start_run(config: ml_collections.ConfigDict, workdir: str) -> Run:
    """The checked run; writes ``config.json`` (process 0) once nothing can refuse the run any more."""
    import jax

    from ieta_jax import distributed, sharding

    check_workdir(config, workdir)
    if distributed.is_primary():  # process 0 alone sends API requests, so only it needs the keys
        check_api_keys(config)
    try:
        base.check_devices(config, jax.device_count())
    except base.ConfigError as e:
        raise StartError(str(e)) from None
    mesh = sharding.make_mesh(data=config.mesh.data, fsdp=config.mesh.fsdp, tensor=config.mesh.tensor)
    log.info("devices: %d x %s, mesh %s", jax.device_count(), jax.devices()[0].platform, dict(mesh.shape))
    train, held_out = load_task_sets(config)
    wd = workdir_lib.Workdir(workdir)
    model = None
    if config.policy:  # a hosted model (base.check_endpoints checked the URI); no local checkpoint
        model_dir = ""
    elif config.model == "tiny":
        model_dir = wd.path(TINY_DIR)
    else:
        model_dir = config.model
        model = _load_start_model(config, mesh)
    if distributed.is_primary():
        os.makedirs(wd.root, exist_ok=True)
        if workdir_lib.read_json(wd.path(CONFIG_FILE)) is None:
            workdir_lib.write_json(wd.path(CONFIG_FILE), json.loads(config.to_json()))
    distributed.barrier("config_written")
    return Run(config=config, workdir=wd, mesh=mesh, model_dir=model_dir, train_tasks=train, eval_tasks=held_out,
               model=model)
