"""Sampling speed at the smoke experiment's shapes: `sampling.generate` on the embedded tiny model.

    python -m ieta_jax.bench.generate                       # configs/smoke.py's model, batch and lengths
    python -m ieta_jax.bench.generate --num-samples 2 --prompt-lens 256   # repair turns: 2 samples per prompt

The smoke run's wall time is mostly sampling: batches of `--rows` rows (`--num-samples` samples of each distinct
prompt), left-padded prompts, up to `--new-tokens` new tokens, at the training and evaluation temperatures and the
config's nucleus `top_p`. The
model has the smoke config's tiny shapes and random weights and no EOS is set, so every row decodes all
`--new-tokens` tokens (the worst case). Reported per setting: the median time of a whole `generate` call, of one with a
single new token (prefill and token 0, mostly the prompt's cost), and tokens/s of the whole call.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from flax import nnx

from ieta_jax import models, sampling
from ieta_jax.bench.load import LoadGuard, add_force_flag


def smoke_model_config() -> models.ModelConfig:
    """The tiny policy's shapes as configs/smoke.py sets them (vocab: the BPE target, a multiple of 64)."""
    from configs import smoke

    t = smoke.get_config().tiny
    return models.ModelConfig(vocab_size=-(-t.vocab_size // 64) * 64, hidden_size=t.hidden_size,
                              intermediate_size=t.intermediate_size, num_hidden_layers=t.num_layers,
                              num_attention_heads=t.num_heads, num_key_value_heads=t.num_kv_heads,
                              max_position_embeddings=t.max_position_embeddings, tie_word_embeddings=True,
                              pad_token_id=0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=128, help="sample rows per call (configs/smoke.py sample_batch_size)")
    p.add_argument("--num-samples", type=int, default=8, help="samples per distinct prompt")
    p.add_argument("--prompt-lens", default="64,256", help="prompt lengths in tokens (turn-1 ~55, repair ~200)")
    p.add_argument("--temperatures", default="1.0,0.4", help="sampling temperatures (train, eval)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling (default: configs/smoke.py's top_p)")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="timed calls per setting (median reported)")
    add_force_flag(p)
    args = p.parse_args(argv)
    guard = LoadGuard.start(force=args.force)

    if args.top_p is None:
        from configs import smoke

        args.top_p = smoke.get_config().top_p
    cfg = smoke_model_config()
    model = models.CausalLM(cfg, rngs=nnx.Rngs(0))
    prompts_per_call = args.rows // args.num_samples
    print(f"model: {cfg.num_params() / 1e6:.2f}M params, {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size} | "
          f"{prompts_per_call} prompts x {args.num_samples} samples = {prompts_per_call * args.num_samples} rows, "
          f"{args.new_tokens} new tokens (no EOS), top_p {args.top_p}")
    rng = np.random.default_rng(0)
    print(f"\n| prompt len | temperature | generate (ms) | 1 new token (ms) | tokens/s |\n|---|---|---|---|---|")
    for length in map(int, args.prompt_lens.split(",")):
        prompts = [rng.integers(3, cfg.vocab_size, length).tolist() for _ in range(prompts_per_call)]
        for temperature in map(float, args.temperatures.split(",")):
            kw = dict(temperature=temperature, top_p=args.top_p, rng=0, num_samples=args.num_samples)
            calls = {n: (lambda n=n: sampling.generate(model, prompts, n, **kw)) for n in (args.new_tokens, 1)}
            times = {n: [] for n in calls}
            for i in range(1 + args.repeats):  # alternated; round 0 compiles
                for n, call in calls.items():
                    t0 = time.perf_counter()
                    call()
                    if i:
                        times[n].append(time.perf_counter() - t0)
            full, first = (statistics.median(times[n]) for n in calls)
            tokens = prompts_per_call * args.num_samples * args.new_tokens
            print(f"| {length} | {temperature} | {1e3 * full:.0f} | {1e3 * first:.0f} | {tokens / full:,.0f} |")
    guard.finish()


if __name__ == "__main__":
    main()
