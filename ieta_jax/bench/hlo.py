"""Accelerator efficiency without an accelerator: compile (never run) the DPO train step on a fake 8-device CPU mesh.

    python -m ieta_jax.bench.hlo                       # the 1b preset, fsdp 8 and fsdp 4 x tensor 2
    python -m ieta_jax.bench.hlo --config tiny --batch 2 --seq 64    # a quick check

The step is the trainers' own (``trainers.base.compile_train_step`` of ``trainers.dpo.dpo_step_loss``: policy
forward + backward on chosen and rejected, precomputed reference log-probs, clipping, AdamW), lowered from
abstract shapes only, so a 1B-parameter step compiles on a laptop. From XLA's cost and memory analysis of the
compiled SPMD program (figures per device) it prints:

- step FLOPs / model FLOPs, model FLOPs = 6 x params x tokens + 12 x layers x hidden x seq x tokens (attention);
  above ~1.15 means recomputation or waste the model does not ask for;
- bytes moved by collectives (all-gather, reduce-scatter, all-reduce, all-to-all, collective-permute output
  bytes in the optimized HLO) against what FSDP needs (tensor parallelism adds activation all-reduces on top):
  all-gather of the compute-dtype parameters for the
  forward and again for the backward, reduce-scatter of the float32 gradients, each (n-1)/n of the full size;
- peak memory per device against params + grads + AdamW moments (float32, sharded) + activations (the rest).

Collectives are listed by kind: XLA's CPU pass pipeline may leave the gradient reduction as an all-reduce of the
full gradient where a GPU/TPU compile emits a reduce-scatter, so read the all-reduce line with that in mind.
"""

from __future__ import annotations

import os

if "jax" not in __import__("sys").modules:  # 8 fake CPU devices, before JAX starts
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from ieta_jax import models, optim, sharding  # noqa: E402
from ieta_jax.bench.model import PRESETS  # noqa: E402
from ieta_jax.trainers.base import TrainState, _opt_state_shardings, compile_train_step  # noqa: E402
from ieta_jax.trainers.dpo import DPOConfig, dpo_step_loss  # noqa: E402

COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "s8": 1, "u8": 1, "pred": 1, "f64": 8, "s64": 8}


def collective_bytes(hlo_text: str) -> dict[str, int]:
    """Output bytes of each collective kind in an optimized HLO module (async starts counted once)."""
    out = {k: 0 for k in COLLECTIVES}
    for line in hlo_text.splitlines():
        m = re.search(r"=\s*(\(?[^=]*?\)?)\s+(all-gather|reduce-scatter|all-reduce|all-to-all|collective-permute)"
                      r"(-start)?\(", line)
        if not m:
            continue
        shapes = re.findall(r"(f32|bf16|f16|s32|u32|s8|u8|pred|f64|s64)\[([0-9,]*)\]", m.group(1))
        if m.group(3) and len(shapes) > 1:  # async start: (operand, result[, ...]) -> the result
            shapes = shapes[len(shapes) // 2:]
        out[m.group(2)] += sum(DTYPE_BYTES[d] * int(np.prod([int(x) for x in dims.split(",") if x] or [1]))
                               for d, dims in shapes)
    return out


def analyse(cfg: models.ModelConfig, mesh_shape: tuple[int, int, int], batch: int, seq: int) -> dict:
    mesh = sharding.make_mesh(*mesh_shape, devices=jax.devices()[:int(np.prod(mesh_shape))])
    abstract = nnx.eval_shape(lambda: models.CausalLM(cfg, rngs=nnx.Rngs(0)))
    graphdef, params, frozen = nnx.split(abstract, nnx.Param, ...)
    p_sh, f_sh = sharding.state_shardings(params, mesh), sharding.state_shardings(frozen, mesh)
    unwrap = lambda t: jax.tree.map(lambda v: v.get_value() if isinstance(v, nnx.Variable) else v, t,  # noqa: E731
                                    is_leaf=lambda x: isinstance(x, nnx.Variable))
    params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), unwrap(params))
    frozen = unwrap(frozen)
    ocfg = optim.OptimConfig(learning_rate=1e-6, total_steps=1000, weight_decay=0.0)
    tx, schedule = optim.make_optimizer(ocfg), optim.make_schedule(ocfg)
    opt = jax.eval_shape(tx.init, params)
    opt_sh = _opt_state_shardings(opt, params, p_sh, mesh)
    rep = NamedSharding(mesh, P())
    scalar = jax.ShapeDtypeStruct((), jnp.int32)
    state = TrainState(step=scalar, params=params, opt_state=opt, rng=jax.ShapeDtypeStruct((2,), jnp.uint32),
                       skipped=scalar)
    state_sh = TrainState(step=rep, params=p_sh, opt_state=opt_sh, rng=rep, skipped=rep)
    dpo = DPOConfig(batch_size=batch, max_length=seq, beta=0.1)
    host = {}
    for side in ("chosen", "rejected"):
        host[f"{side}_input_ids"] = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
        host[f"{side}_attention_mask"] = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
        host[f"{side}_loss_mask"] = jax.ShapeDtypeStruct((batch, seq), jnp.float32)
        host[f"ref_{side}_logps"] = jax.ShapeDtypeStruct((batch,), jnp.float32)
    batch_sh = {k: sharding.batch_sharding(mesh, len(v.shape), v.shape[0]) for k, v in host.items()}
    aux, aux_sh = {"frozen": frozen}, {"frozen": f_sh}
    step = compile_train_step(lambda p, a, b, r: dpo_step_loss(p, a, b, r, graphdef=graphdef, config=dpo), tx,
                              schedule, 1, state_sh, aux_sh, batch_sh, rep)
    with jax.set_mesh(mesh):
        compiled = step.lower(state, aux, host).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    mem = compiled.memory_analysis()
    n_dev = int(np.prod(mesh_shape))
    n_params = cfg.num_params()
    tokens = 2 * batch * seq
    model_flops = (6.0 * n_params + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq) * tokens
    coll = collective_bytes(compiled.as_text())
    compute_bytes = jnp.dtype(cfg.dtype).itemsize
    fsdp = mesh_shape[1]
    frac = (fsdp - 1) / fsdp
    fsdp_needed = n_params * (2 * compute_bytes + 4) * frac / mesh_shape[2]  # per device: 2 gathers + 1 scatter
    state_bytes = n_params * 4 * 4 / (fsdp * mesh_shape[2])  # params + grads + 2 moments, f32, sharded
    peak = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
            - mem.alias_size_in_bytes)
    return dict(mesh=mesh_shape, flops=float(cost.get("flops", float("nan"))) * n_dev, model_flops=model_flops,
                coll=coll, fsdp_needed=fsdp_needed, peak=peak, state_bytes=state_bytes,
                temp=mem.temp_size_in_bytes, args=mem.argument_size_in_bytes)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="1b", choices=sorted(PRESETS))
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"], help="compute dtype")
    p.add_argument("--batch", type=int, default=8, help="preference pairs per step (global)")
    p.add_argument("--seq", type=int, default=1024, help="prompt + completion tokens")
    p.add_argument("--meshes", default="1,8,1;1,4,2", help="data,fsdp,tensor sizes, ';'-separated")
    args = p.parse_args(argv)
    meshes = [tuple(int(x) for x in m.split(",")) for m in args.meshes.split(";")]
    if len(jax.devices()) < max(int(np.prod(m)) for m in meshes):
        print(f"error: {len(jax.devices())} devices; run as `python -m ieta_jax.bench.hlo` so that 8 fake CPU "
              f"devices are created before JAX starts", file=sys.stderr)
        sys.exit(2)
    cfg = models.ModelConfig(**PRESETS[args.config], dtype=args.dtype, param_dtype="float32")
    print(f"config={args.config} params={cfg.num_params() / 1e9:.3f}B dtype={args.dtype} batch={args.batch} pairs "
          f"seq={args.seq} (compiled only, never run; XLA {jax.default_backend()} backend)")
    gib = 2 ** 30
    print("\n| mesh (data,fsdp,tensor) | step FLOPs / model FLOPs | collective bytes / FSDP needs | "
          "peak mem / device (GiB) | params+grads+Adam / device (GiB) | activations etc. (GiB) |")
    print("|---|---|---|---|---|---|")
    for shape in meshes:
        r = analyse(cfg, shape, args.batch, args.seq)
        total_coll = sum(r["coll"].values())
        print(f"| {shape} | {r['flops'] / r['model_flops']:.3f} | "
              f"{total_coll / gib:.3f} / {r['fsdp_needed'] / gib:.3f} GiB = {total_coll / r['fsdp_needed']:.2f} | "
              f"{r['peak'] / gib:.3f} | {r['state_bytes'] / gib:.3f} | {(r['peak'] - r['state_bytes']) / gib:.3f} |")
        print("|   collectives by kind (GiB/device) | " + ", ".join(
            f"{k} {v / gib:.3f}" for k, v in r["coll"].items() if v) + " | | | | |")


if __name__ == "__main__":
    main()
