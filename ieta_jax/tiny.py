"""The embedded tiny policy: a BPE tokenizer and a small Llama trained briefly on the synthetic corpus.

Built once per workdir and cached there in Hugging Face format (``<workdir>/tiny_model``: config.json,
model.safetensors, tokenizer files), so every later stage, and every restart, loads it through the
same ``models.from_pretrained`` / ``AutoTokenizer`` path as a real checkpoint. The warm start is
plain next-token SFT on prompt + completion (+ EOS) from ``data.synthetic.warm_start_corpus``, a
corpus in which ``bug_fraction`` of the solutions carry realistic bugs: the resulting policy samples
both correct and buggy programs, which is what execution feedback needs to have something to teach.
With ``tiny.repair_examples_per_task`` > 0 the corpus also holds repair examples
(``repair.repair_corpus``: a buggy program and its rendered public-test feedback -> a fix), so the
starting policy can repair sometimes; building them runs programs, so process 0 needs the sandbox
``executor`` and hands the examples to the other processes.
"""
from __future__ import annotations

import logging
import os
import shutil
import time

import ml_collections

log = logging.getLogger(__name__)

TINY_DIR = "tiny_model"


def tiny_model_config(config: ml_collections.ConfigDict, tokenizer):
    from ieta_jax import models

    t = config.tiny
    vocab = max(len(tokenizer), 1)
    vocab = -(-vocab // 64) * 64  # a multiple of 64 keeps the logits matmul tidy
    return models.ModelConfig(
        vocab_size=vocab, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers, num_attention_heads=t.num_heads, num_key_value_heads=t.num_kv_heads,
        max_position_embeddings=t.max_position_embeddings, tie_word_embeddings=True, model_type="llama",
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        dtype=config.dtype, param_dtype=config.param_dtype)


def ensure_tiny_model(config: ml_collections.ConfigDict, workdir: str, mesh, executor=None) -> str:
    """Return ``<workdir>/tiny_model``, building it first if it is not there (resumable).

    executor: the sandbox executor (process 0 only), needed when the corpus has repair examples.
    """
    from ieta_jax import distributed, workdir as workdir_lib

    out_dir = os.path.join(workdir, TINY_DIR)
    # Decided by process 0 for all: every process takes the same path (the warm start is collective).
    if distributed.on_primary(lambda: os.path.exists(os.path.join(out_dir, "warm_start.json"))):
        return out_dir
    from flax import nnx

    from ieta_jax import models, sharding
    from ieta_jax.data import synthetic
    from ieta_jax.metric_writer import MetricWriter
    from ieta_jax.tokenizer import train_tokenizer
    from ieta_jax.trainers import SFTConfig, SFTTrainer
    from ieta_jax.trainers.batching import PromptCompletion
    from ieta_jax import optim

    t = config.tiny
    t0 = time.perf_counter()
    train_tasks = synthetic.make_tasks("train", seed=config.seed)
    corpus = synthetic.warm_start_corpus(train_tasks, solutions_per_task=t.solutions_per_task,
                                         bug_fraction=t.bug_fraction, seed=config.seed)
    n_repair_per_task = t.repair_examples_per_task
    if n_repair_per_task > 0:
        corpus += _repair_examples(train_tasks, executor, n_repair_per_task, t.bug_fraction, config.seed)
    n_bug = sum(ex.bug is not None for ex in corpus)
    n_repair = sum(ex.repairs is not None for ex in corpus)
    log.info("tiny model: warm-start corpus of %d examples (%d buggy, %d repairs) from %d train tasks", len(corpus),
             n_bug, n_repair, len(train_tasks))

    build_dir = os.path.join(workdir, "tiny_build")
    tok_dir = os.path.join(build_dir, "tokenizer")
    if distributed.is_primary():
        tokenizer = train_tokenizer([ex.text for ex in corpus], tok_dir, vocab_size=t.vocab_size)
    if distributed.is_multiprocess():  # process 0 trained it; every process loads the same saved files
        distributed.barrier("tiny_tokenizer_saved")
        tokenizer = models.load_tokenizer(tok_dir)
    eos = tokenizer.eos_token_id
    examples = [PromptCompletion(tokenizer(ex.prompt)["input_ids"], tokenizer(ex.completion)["input_ids"] + [eos])
                for ex in corpus]
    max_len = max(len(e.prompt) + len(e.completion) for e in examples)
    max_len = min(-(-max_len // 16) * 16, t.max_position_embeddings)

    cfg = tiny_model_config(config, tokenizer)
    model = sharding.create_sharded(lambda: models.CausalLM(cfg, rngs=nnx.Rngs(config.seed)), mesh)
    sft_cfg = SFTConfig(
        batch_size=t.warm_start_batch_size, max_length=max_len, pad_token_id=tokenizer.pad_token_id,
        optim=optim.OptimConfig(learning_rate=t.warm_start_lr, warmup_steps=max(1, t.warm_start_steps // 20),
                                schedule="cosine", total_steps=max(1, t.warm_start_steps), weight_decay=0.0,
                                max_grad_norm=1.0),
        seed=config.seed, save_every=max(50, t.warm_start_steps // 4), keep_checkpoints=1, group_by_length=True)
    writer = MetricWriter(os.path.join(workdir, "tensorboard", "warm_start"))
    trainer = SFTTrainer(model, sft_cfg, mesh=mesh, workdir=os.path.join(build_dir, "sft"), writer=writer)
    history = trainer.fit(examples, t.warm_start_steps) if t.warm_start_steps > 0 else []
    model = trainer.model
    tmp_dir = out_dir + ".tmp"
    if distributed.is_primary() and os.path.exists(tmp_dir):
        shutil.rmtree(tmp_dir)
    models.save_pretrained(model, tmp_dir, tokenizer=tokenizer)
    trainer.close()
    writer.close()
    distributed.barrier("tiny_model_written")  # every process is done with tiny_build before process 0 removes it
    if distributed.is_primary():
        summary = {"corpus_examples": len(corpus), "buggy_examples": n_bug, "repair_examples": n_repair,
                   "train_tasks": len(train_tasks),
                   "steps": t.warm_start_steps, "max_length": max_len, "vocab_size": cfg.vocab_size,
                   "num_params": cfg.num_params(), "seconds": time.perf_counter() - t0,
                   "final_loss": history[-1]["train/loss"] if history else None,
                   "loss": [round(r["train/loss"], 5) for r in history]}
        workdir_lib.write_json(os.path.join(tmp_dir, "warm_start.json"), summary)
        workdir_lib.replace_dir(tmp_dir, out_dir)
        shutil.rmtree(build_dir, ignore_errors=True)
        log.info("tiny model: %d params, warm start loss %.4f, %.0fs -> %s", cfg.num_params(),
                 summary["final_loss"] or float("nan"), summary["seconds"], out_dir)
    distributed.barrier("tiny_model_saved")  # no process loads the model before process 0 has put it in place
    return out_dir


def _repair_examples(train_tasks, executor, per_task: int, bug_fraction: float, seed: int) -> list:
    """Repair examples built on process 0 (they need the sandbox), the same list on every process."""
    import dataclasses

    from ieta_jax import distributed, repair
    from ieta_jax.data import synthetic

    def build():
        if executor is None:
            raise ValueError("tiny.repair_examples_per_task > 0 needs the sandbox executor to build the repair "
                             "examples of the warm-start corpus (ensure_tiny_model(..., executor=...))")
        examples = repair.repair_corpus(train_tasks, executor, examples_per_task=per_task,
                                        bug_fraction=bug_fraction, seed=seed)
        return [dataclasses.asdict(ex) for ex in examples]

    return [synthetic.CorpusExample(**row) for row in distributed.on_primary(build)]
