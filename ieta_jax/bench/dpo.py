"""DPO train-step benchmark: our DPOTrainer step vs TRL's DPOTrainer (PyTorch), same config, batch and lengths.

    python -m ieta_jax.bench.dpo                         # tiny Llama on CPU, both frameworks, ratio
    python -m ieta_jax.bench.dpo --config 1b --skip-trl --batch 8 --prompt-len 512 --completion-len 512 \
        --dtype bfloat16                                 # on a GPU: MFU of our DPO step

Both sides train on the same pre-tokenised pairs with reference log-probs precomputed before timing (ours:
``DPOTrainer.reference_logps``; TRL: ``precompute_ref_log_probs=True``), every sequence exactly
``prompt-len + completion-len`` tokens long so neither side pads. A step is forward of chosen+rejected in one batch,
backward, global-norm clipping and an AdamW update; tokens/s counts ``2 x batch x seq_len`` per step; the two
implementations' steps are interleaved (median of ``--steps``) so machine load hits both alike. MFU (ours) = (6 x params + 12 x layers x
hidden x seq) x tokens / step time / peak, where the device's bf16 peak is known (``trainers.base.PEAK_BF16_FLOPS``).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

import jax
import numpy as np
from flax import nnx

from ieta_jax import models, optim, sharding
from ieta_jax.bench.load import LoadGuard, add_force_flag
from ieta_jax.bench.model import PRESETS, matmul_peak_flops
from ieta_jax.trainers import DPOConfig, DPOTrainer, PreferencePair
from ieta_jax.trainers.base import device_peak_flops


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (a load-independent measure of work)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def make_pairs(vocab: int, n: int, prompt_len: int, completion_len: int, eos: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    body = lambda k: rng.integers(3, vocab, k).tolist()  # noqa: E731  (ids 0..2 reserved: pad, unk, eos)
    return [PreferencePair(body(prompt_len), body(completion_len - 1) + [eos], body(completion_len - 1) + [eos])
            for _ in range(n)]


def step_flops(cfg: models.ModelConfig, batch: int, seq: int) -> float:
    tokens = 2 * batch * seq
    return (6.0 * cfg.num_params() + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq) * tokens


def build_ours(cfg, pairs, args):
    """Our trainer with reference log-probs precomputed; returns a no-argument timed step."""
    seq = args.prompt_len + args.completion_len
    config = DPOConfig(batch_size=args.batch, max_length=seq, beta=0.1, progress=False,
                       optim=optim.OptimConfig(learning_rate=1e-6, total_steps=1000, schedule="constant"))
    trainer = DPOTrainer(models.CausalLM(cfg, rngs=nnx.Rngs(0)), config, mesh=sharding.make_mesh())
    batch = trainer.make_batch(pairs)  # with the reference log-probs precomputed, as fit() does
    return lambda: jax.block_until_ready(trainer.train_step(batch))


def build_trl(cfg, pairs, args):
    """TRL's DPOTrainer on the same pairs (precompute_ref_log_probs=True); returns a no-argument timed step.

    The step is what ``transformers.Trainer`` runs per update: ``training_step`` (TRL's concatenated
    forward + DPO loss + backward), global-norm clipping at 1.0, AdamW ``step`` and ``zero_grad``.
    """
    import torch
    import transformers
    from datasets import Dataset
    from tokenizers import Tokenizer, models as tok_models, pre_tokenizers
    from trl import DPOConfig as TRLDPOConfig, DPOTrainer as TRLDPOTrainer

    # A word-level tokenizer whose words are the token ids, so TRL tokenises our pairs back to the same ids.
    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, cfg.vocab_size)}}
    tk = Tokenizer(tok_models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>",
                                                     eos_token="</s>")
    text = lambda ids: "".join(f" t{i}" if i != 2 else " </s>" for i in ids)  # noqa: E731
    ds = Dataset.from_list([{"prompt": text(p.prompt), "chosen": text(p.chosen), "rejected": text(p.rejected)}
                            for p in pairs])
    hf = transformers.LlamaConfig(**{k: v for k, v in cfg.to_hf().items()
                                     if k not in ("architectures", "torch_dtype", "dtype")})
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(hf).to(torch.float32)
    out = tempfile.mkdtemp(prefix="bench_dpo_trl_")
    targs = TRLDPOConfig(output_dir=out, per_device_train_batch_size=args.batch, max_steps=1000,
                         learning_rate=1e-6, beta=0.1, precompute_ref_log_probs=True, max_length=None,
                         report_to=[], save_strategy="no", use_cpu=True, dataloader_num_workers=0, bf16=False,
                         disable_tqdm=True, seed=0, max_grad_norm=1.0)
    trainer = TRLDPOTrainer(model=model, args=targs, train_dataset=ds, processing_class=tokenizer)
    inputs = next(iter(trainer.get_train_dataloader()))
    n = inputs["input_ids"].shape
    if tuple(n) != (2 * args.batch, args.prompt_len + args.completion_len) or "ref_chosen_logps" not in inputs:
        raise RuntimeError(f"TRL batch has input_ids {tuple(n)} (ref logps present: {'ref_chosen_logps' in inputs}); "
                           f"expected ({2 * args.batch}, {args.prompt_len + args.completion_len}) - not like for like")
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's own loop, which we unroll here
    model = trainer.model

    def step():
        trainer.training_step(model, inputs)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        model.zero_grad()

    return step, transformers.__version__, torch.__version__


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--batch", type=int, default=8, help="preference pairs per step")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--completion-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
    p.add_argument("--dtype", default="float32", help="compute dtype of our model (params stay float32)")
    p.add_argument("--attention", default="auto", choices=models.ATTENTION_IMPLS,
                   help="our full-sequence attention (ModelConfig.attention; auto: cuDNN flash on a GPU in bf16)")
    p.add_argument("--skip-trl", action="store_true")
    add_force_flag(p)
    args = p.parse_args(argv)
    guard = LoadGuard.start(force=args.force)

    cfg = models.ModelConfig(**PRESETS[args.config], dtype=args.dtype, param_dtype="float32", eos_token_id=2,
                             pad_token_id=0, attention=args.attention)
    seq = args.prompt_len + args.completion_len
    pairs = make_pairs(cfg.vocab_size, args.batch * 2, args.prompt_len, args.completion_len, eos=2)
    tokens = 2 * args.batch * seq
    dev = jax.devices()[0]
    print(f"config={args.config} params={cfg.num_params() / 1e6:.1f}M batch={args.batch} pairs seq_len={seq} "
          f"tokens/step={tokens} device={dev.device_kind} x{jax.device_count()} dtype={args.dtype} "
          f"attention={args.attention}")
    steps = {"ours": build_ours(cfg, pairs, args)}
    if not args.skip_trl:
        import trl

        steps["trl"], _, torch_v = build_trl(cfg, pairs, args)
    # Interleave the two so both see the same machine load; the first `warmup` rounds are not timed.
    times = {k: [] for k in steps}
    cpu = {k: [] for k in steps}
    for i in range(args.warmup + args.steps):
        for k, fn in steps.items():
            t0, c0 = time.perf_counter(), _cpu_seconds()
            fn()
            if i >= args.warmup:
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(_cpu_seconds() - c0)
    ours = statistics.median(times["ours"])
    rows = [("ieta_jax DPOTrainer (JAX)", ours, statistics.median(cpu["ours"]))]
    if "trl" in steps:
        rows.append((f"TRL {trl.__version__} DPOTrainer (torch {torch_v}, CPU)", statistics.median(times["trl"]),
                     statistics.median(cpu["trl"])))
    print(f"\n| implementation | step time (s) | tokens/s | CPU-seconds/step (all threads) |\n|---|---|---|---|")
    for name, s, c in rows:
        print(f"| {name} | {s:.4f} | {tokens / s:,.0f} | {c:.3f} |")
    guard.finish()
    if len(rows) == 2:
        guard.ratio(f"\nratio ours / TRL tokens/s: {rows[1][1] / ours:.2f}x; "
                    f"CPU-time ratio TRL / ours: {rows[1][2] / rows[0][2]:.2f}x")
    peak = device_peak_flops(dev)
    flops = step_flops(cfg, args.batch, seq)
    if peak:
        mfu = flops / ours / (peak * jax.device_count())
        print(f"MFU of our DPO step: {100 * mfu:.1f}% (datasheet peak {peak / 1e12:.0f} TFLOP/s bf16 per device)")
    else:
        print(f"MFU: not reported (no known bf16 peak for device kind {dev.device_kind!r})")
    if jax.default_backend() != "cpu":
        measured = matmul_peak_flops()
        stats = dev.memory_stats() or {}
        print(f"against a bf16 matmul measured in this run ({measured / 1e12:.0f} TFLOP/s): "
              f"MFU {100 * flops / ours / (measured * jax.device_count()):.1f}%; "
              f"{flops / ours / 1e12 / jax.device_count():.1f} TFLOP/s model FLOPs per device")
        if "peak_bytes_in_use" in stats:
            print(f"peak device memory: {stats['peak_bytes_in_use'] / 2 ** 30:.2f} GiB")


if __name__ == "__main__":
    main()
