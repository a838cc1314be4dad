"""Model speed benchmark: our JAX model vs transformers (PyTorch) on the same config, weights and batch.

    python -m ieta_jax.bench.model                     # tiny embedded-size Llama on CPU (both frameworks)
    python -m ieta_jax.bench.model --config 1b --skip-torch   # ~1B Llama; on a GPU also MFU and peak memory

Measures, in one run: forward+backward tokens/s of a masked next-token loss, and greedy generation tokens/s
(KV cache, fixed number of new tokens), and prints a table plus our/transformers ratios. The two frameworks'
timed calls alternate (median of each reported), so machine load hits both alike. On a GPU it also reports
the train step's model-FLOPs utilisation (6 * params * tokens + attention FLOPs, over step time, over a bf16 matmul
peak measured in the same run) and peak device memory.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ieta_jax import models, sampling, sharding
from ieta_jax.bench.load import LoadGuard, add_force_flag
from ieta_jax.trainers.base import sequence_logps

PRESETS = {
    # The tiny embedded policy size (what the CPU loop trains).
    "tiny": dict(vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048),
    "small": dict(vocab_size=8192, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048),
    # Llama-3.2-1B shapes.
    "1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
               rope_theta=500000.0, tie_word_embeddings=True),
}


def _interleaved(fns: dict, warmup: int, repeats: int) -> dict:
    """Median seconds of each no-argument fn (each must block until its result is ready), timed in alternation.

    Round i runs every fn once, one after the other, so machine load hits all of them alike (as bench.dpo does);
    the first `warmup` rounds (compilation) are not timed."""
    times = {k: [] for k in fns}
    for i in range(warmup + repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def _batch(cfg, batch, seq, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, (batch, seq)).astype(np.int32)
    mask = np.ones((batch, seq), np.int32)
    mask[: batch // 2, -seq // 4:] = 0  # half the rows right-padded by a quarter
    return ids, mask


def jax_train_step(model, mesh):
    """A jitted forward+backward of the masked next-token loss (what SFT/DPO/RL steps are built from)."""
    graphdef, params = nnx.split(model)

    def loss_fn(params, ids, mask):
        logits = nnx.merge(graphdef, params)(ids, mask)
        logp, n_tok, _, _ = sequence_logps(logits, ids, mask)  # the trainers' own log-prob helper
        return -logp.sum() / n_tok.sum()

    step = jax.jit(jax.value_and_grad(loss_fn))
    return params, step


def build_jax(cfg, args, mesh, path):
    """Our timed train step and generation, as no-argument blocking calls."""
    model = models.from_pretrained(path, dtype=args.dtype, mesh=mesh, attention=args.attention)
    ids, mask = _batch(cfg, args.batch, args.seq)
    params, step = jax_train_step(model, mesh)
    if mesh is not None:
        ids_d, mask_d = sharding.shard_batch((ids, mask), mesh)
    else:
        ids_d, mask_d = jnp.asarray(ids), jnp.asarray(mask)
    prompts, prompt_mask = _batch(cfg, args.gen_batch, args.prompt_len, seed=1)
    prompt_mask = np.ones_like(prompt_mask)
    train = lambda: jax.block_until_ready(step(params, ids_d, mask_d))  # noqa: E731
    gen = lambda: sampling.generate(model, prompts, args.new_tokens, prompt_mask=prompt_mask)  # noqa: E731
    return train, gen


def build_torch(args, path):
    """transformers' timed train step and greedy `generate`, as no-argument blocking calls.

    On the GPU when JAX runs on one and torch sees CUDA (like for like), else on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(os.cpu_count() or 1)
    device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    cfg = models.load_config(path)
    ids, mask = (torch.tensor(a, dtype=torch.long, device=device) for a in _batch(cfg, args.batch, args.seq))

    def train():
        model.train()
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], -1)
        tok = logp.gather(-1, ids[:, 1:, None])[..., 0]
        m = mask[:, 1:].float()
        (-(tok * m).sum() / m.sum()).backward()
        sync()

    prompts = torch.tensor(_batch(cfg, args.gen_batch, args.prompt_len, seed=1)[0], dtype=torch.long, device=device)

    def gen():
        model.eval()
        with torch.no_grad():
            model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                           max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=0)
        sync()

    return train, gen, device


def matmul_peak_flops(n: int = 8192, dtype=jnp.bfloat16) -> float:
    """Measured FLOP/s of a large bf16 matmul on the default device (the MFU denominator).

    On random data: constant operands run faster than real data does (13% on an H200), inflating the peak."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), dtype)
    b = jax.random.normal(kb, (n, n), dtype)
    f = jax.jit(lambda a, b: a @ b)
    secs = _interleaved({"matmul": lambda: f(a, b).block_until_ready()}, warmup=2, repeats=10)["matmul"]
    return 2 * n ** 3 / secs


def train_flops_per_step(cfg: models.ModelConfig, batch: int, seq: int) -> float:
    """6 * params * tokens (fwd+bwd weight matmuls) plus attention score/value matmuls, 12 * layers * seq * d_attn
    per token (dense T x T, which is the work our attention does; no causal halving)."""
    tokens = batch * seq
    attention = 12 * cfg.num_hidden_layers * seq * cfg.num_attention_heads * cfg.head_dim * tokens
    return 6 * cfg.num_params() * tokens + attention


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(PRESETS), default="tiny", help="model shape preset")
    parser.add_argument("--ffn", type=int, default=None, help="override intermediate_size of the preset")
    parser.add_argument("--layers", type=int, default=None, help="override num_hidden_layers of the preset")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="compute and parameter dtype (both frameworks)")
    parser.add_argument("--batch", type=int, default=8, help="train-step batch size")
    parser.add_argument("--seq", type=int, default=256, help="train-step sequence length")
    parser.add_argument("--gen-batch", type=int, default=8, help="generation batch size")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=6,
                        help="timed train repetitions (generation: half as many), median reported")
    parser.add_argument("--attention", default="auto", choices=models.ATTENTION_IMPLS,
                        help="our full-sequence attention (ModelConfig.attention; auto: cuDNN flash on a GPU in bf16)")
    parser.add_argument("--mesh", default=None, help="data,fsdp,tensor sizes, e.g. -1,1,1 (default: no mesh)")
    parser.add_argument("--skip-torch", action="store_true", help="do not run the transformers baseline")
    add_force_flag(parser)
    args = parser.parse_args(argv)
    guard = LoadGuard.start(force=args.force)

    spec = dict(PRESETS[args.config])
    if args.ffn:
        spec["intermediate_size"] = args.ffn
    if args.layers:
        spec["num_hidden_layers"] = args.layers
    cfg = models.ModelConfig(**spec, dtype=args.dtype, param_dtype=args.dtype)
    mesh = sharding.make_mesh(*map(int, args.mesh.split(","))) if args.mesh else None
    backend = jax.default_backend()
    print(f"config={args.config} params={cfg.num_params() / 1e6:.1f}M dtype={args.dtype} backend={backend} "
          f"devices={len(jax.devices())} cpu_threads={os.cpu_count()} attention={args.attention}")
    print(f"train: batch={args.batch} seq={args.seq} | generate: batch={args.gen_batch} "
          f"prompt={args.prompt_len} new_tokens={args.new_tokens} (greedy, no early stop)")

    with tempfile.TemporaryDirectory() as path:
        # Same random weights for both frameworks: init ours, save as a HF checkpoint, load it in each.
        models.save_pretrained(models.CausalLM(cfg, rngs=nnx.Rngs(0)), path)
        jax_train, jax_gen = build_jax(cfg, args, mesh, path)
        train, gen = {"jax": jax_train}, {"jax": jax_gen}
        if not args.skip_torch:
            train["torch"], gen["torch"], torch_device = build_torch(args, path)
            print(f"transformers baseline on {torch_device}")
        train_s = _interleaved(train, warmup=2, repeats=args.repeats)
        gen_s = _interleaved(gen, warmup=1, repeats=max(1, args.repeats // 2))
    torch_train_s, torch_gen_s = train_s.get("torch"), gen_s.get("torch")
    train_s, gen_s = train_s["jax"], gen_s["jax"]

    train_tokens = args.batch * args.seq
    gen_tokens = args.gen_batch * args.new_tokens
    rows = [("train fwd+bwd tokens/s", train_tokens / train_s,
             None if torch_train_s is None else train_tokens / torch_train_s),
            ("generation tokens/s", gen_tokens / gen_s, None if torch_gen_s is None else gen_tokens / torch_gen_s)]
    guard.finish()
    print(f"\n| {'metric':<24} | {'ieta_jax':>12} | {'transformers':>12} | {'ratio':>7} |")
    print(f"|{'-' * 26}|{'-' * 14}|{'-' * 14}|{'-' * 9}|")
    for name, ours, theirs in rows:
        theirs_s = f"{theirs:12.1f}" if theirs else f"{'-':>12}"
        ratio = f"{ours / theirs:6.2f}x" if theirs and guard.ratios_allowed else f"{'-':>7}"
        print(f"| {name:<24} | {ours:12.1f} | {theirs_s} | {ratio} |")
    if any(theirs for _, _, theirs in rows):
        guard.ratio("(ratio column: ours / transformers)")

    if backend == "cpu":
        print("\nMFU / peak device memory: not measured (no GPU/TPU backend in this run)")
        return
    peak = matmul_peak_flops()
    flops = train_flops_per_step(cfg, args.batch, args.seq)
    stats = jax.devices()[0].memory_stats() or {}
    print(f"\nmeasured bf16 matmul peak: {peak / 1e12:.1f} TFLOP/s")
    print(f"train step: {flops / train_s / 1e12:.1f} TFLOP/s model FLOPs -> MFU {100 * flops / train_s / peak:.1f}%")
    if "peak_bytes_in_use" in stats:
        print(f"peak device memory: {stats['peak_bytes_in_use'] / 2 ** 30:.2f} GiB")


if __name__ == "__main__":
    main()
