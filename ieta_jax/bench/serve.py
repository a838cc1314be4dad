"""Serving throughput: requests/s and generated tokens/s of `ieta_jax.serve` for 1 and N concurrent clients.

    python -m ieta_jax.bench.serve                              # random tiny Llama (the smoke model's shape)
    python -m ieta_jax.bench.serve --model runs/smoke/tiny_model --clients 1,16 --requests 8 --max_tokens 128

The server runs in this process on a free port and the clients are threads using the official `openai` client
over real HTTP, each sending `--requests` completions one after another (temperature 1, a synthetic-suite task
prompt each; unseeded, so concurrent requests can share a sampler call; `--seeded` gives each its own seed, and the
server then runs it alone). Every concurrency level first runs the same round untimed (the sampler compiles once
per batch shape: rows and prompt length, bucketed), then the timed one: the figures are steady-state throughput,
and a fresh server's first requests of each new shape also pay a compilation. Tokens/s counts completion tokens as
the server reports them in `usage`. `--stream` sends every request with stream=True and adds the median time to
first token (request sent to the first text chunk received); streamed batches decode in chunks (serve's
STREAM_CHUNK_TOKENS), so their throughput is not the one-loop path's.

Wall-clock figures are only meaningful on a quiet machine: the 1-minute load average is printed before and
after (`bench.load.LoadGuard`, as every benchmark): above 1.0 at start it refuses to run unless --force (figures
then say so). The load at the end includes the benchmark's own server and client threads.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

from ieta_jax.bench import load


def _tiny_checkpoint(out_dir: str, vocab_size: int = 1024) -> str:
    """A random Llama of the smoke config's tiny shape with a BPE tokenizer trained on the synthetic prompts."""
    from flax import nnx

    from ieta_jax import models
    from ieta_jax.data import synthetic
    from ieta_jax.tokenizer import train_tokenizer

    tok = train_tokenizer([t.prompt for t in synthetic.make_tasks("train", seed=0)], os.path.join(out_dir, "tok"),
                          vocab_size=vocab_size)
    cfg = models.ModelConfig(vocab_size=-(-len(tok) // 64) * 64, hidden_size=128, intermediate_size=384,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=512, tie_word_embeddings=True, model_type="llama",
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    path = os.path.join(out_dir, "tiny-random")
    models.save_pretrained(models.CausalLM(cfg, rngs=nnx.Rngs(0)), path, tokenizer=tok)
    return path


def _streamed(client, **kw) -> tuple[int, float | None]:
    """(completion tokens, seconds to the first text chunk) of one streamed completion."""
    t0, first, usage = time.perf_counter(), None, 0
    for chunk in client.completions.create(**kw, stream=True, stream_options={"include_usage": True}):
        if first is None and chunk.choices and chunk.choices[0].text:
            first = time.perf_counter() - t0
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
    return usage, first


def run_clients(url: str, model: str, prompts: list[str], clients: int, requests: int, max_tokens: int,
                seeded: bool = False, stream: bool = False) -> dict:
    """`clients` threads, each sending `requests` completions in sequence; wall time, usage totals and (streamed)
    the times to first token."""
    import openai

    totals = {"requests": 0, "completion_tokens": 0}
    ttft: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client_loop(c: int) -> None:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=3600)
        try:
            for r in range(requests):
                seed = {"seed": c * requests + r} if seeded else {}
                kw = dict(model=model, prompt=prompts[(c * requests + r) % len(prompts)], max_tokens=max_tokens,
                          temperature=1.0, **seed)
                if stream:
                    tokens, first = _streamed(client, **kw)
                else:
                    tokens, first = client.completions.create(**kw).usage.completion_tokens, None
                with lock:
                    totals["requests"] += 1
                    totals["completion_tokens"] += tokens
                    if first is not None:
                        ttft.append(first)
        except BaseException as e:  # reported after the round; a failed round has no figures
            errors.append(e)

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return {**totals, "seconds": wall, "ttft": sorted(ttft)[len(ttft) // 2] if ttft else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ieta_jax.bench.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="checkpoint dir (default: a random tiny Llama built here)")
    p.add_argument("--clients", default="1,16", help="comma-separated concurrency levels")
    p.add_argument("--requests", type=int, default=8, help="requests per client per round")
    p.add_argument("--max_tokens", type=int, default=64, help="completion tokens per request")
    p.add_argument("--max_batch_rows", type=int, default=64)
    p.add_argument("--seeded", action="store_true",
                   help="give each request its own seed (reproducible samples; the server then runs each alone)")
    p.add_argument("--stream", action="store_true", help="stream every request; adds the median time to first token")
    load.add_force_flag(p)
    args = p.parse_args(argv)
    try:
        levels = [int(c) for c in args.clients.split(",") if c.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1 or args.requests < 1 or args.max_tokens < 1:
        print("error: --clients must list positive integers; --requests and --max_tokens must be >= 1",
              file=sys.stderr)
        return 2
    guard = load.LoadGuard.start(force=args.force)
    if not guard.ratios_allowed:
        print(f"error: load average {guard.start_load[0]:.2f} > {load.MAX_START_LOAD} at start: wall-clock figures "
              "would be invalid; run on a quiet machine or pass --force", file=sys.stderr)
        return 2

    from ieta_jax import models, serve
    from ieta_jax.data import synthetic

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or _tiny_checkpoint(tmp)
        model, tok = models.from_pretrained(path), models.load_tokenizer(path)
        name = os.path.basename(os.path.normpath(path))
        prompts = [t.prompt for t in synthetic.make_tasks("heldout", seed=0)]
        engine = serve.Engine(model, tok, max_batch_rows=args.max_batch_rows)
        # Steady state: every (batch size, prompt bucket) these prompts can form is compiled before the timing,
        # so how the requests happen to batch does not decide how many compiles land in the timed rounds.
        longest = max(len(tok(p)["input_ids"]) for p in prompts)
        t0 = time.perf_counter()
        programs = engine.warmup(prompt_tokens=longest, max_tokens=args.max_tokens)
        print(f"warm-up: {programs} sampler programs (prompts up to {longest} tokens, {args.max_tokens} new) "
              f"compiled in {time.perf_counter() - t0:.1f} s, before the timed rounds")
        rows = []
        with serve.Server(serve.API(engine, name), port=0) as server:
            for clients in levels:
                run_clients(server.url, name, prompts, clients, args.requests, args.max_tokens,  # untimed: compiles
                            args.seeded, args.stream)
                calls = engine.sampler_calls
                r = run_clients(server.url, name, prompts, clients, args.requests, args.max_tokens,
                                args.seeded, args.stream)
                r["sampler_calls"] = engine.sampler_calls - calls
                rows.append((clients, r))
    guard.finish()  # the load the benchmark itself adds (server + client threads) shows here; only the start gates
    note = f" (--force at load {guard.start_load[0]:.2f}: not a valid figure)" if guard.busy else ""
    print(f"model {name}, {args.max_tokens} tokens per request, {args.requests} requests per client{note}")
    print("| clients | requests | sampler calls | seconds | requests/s | tokens/s | TTFT p50 s |")
    print("|---|---|---|---|---|---|---|")
    for clients, r in rows:
        ttft = f"{r['ttft']:.3f}" if r["ttft"] is not None else "- (not streamed)"
        print(f"| {clients} | {r['requests']} | {r['sampler_calls']} | {r['seconds']:.2f} | "
              f"{r['requests'] / r['seconds']:.2f} | {r['completion_tokens'] / r['seconds']:.1f} | {ttft} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
