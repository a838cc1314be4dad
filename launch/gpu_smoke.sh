#!/usr/bin/env bash
# The smoke experiment on one GPU. Needs a CUDA build of JAX:
#   pip install -e . "jax[cuda12]"
# Usage: launch/gpu_smoke.sh [WORKDIR] [--config.field=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
WORKDIR="${1:-runs/gpu_smoke}"; shift || true
python3 - <<'PY'
import jax, sys
backend = jax.default_backend()
if backend != "gpu":
    sys.exit(f"error: JAX sees no GPU (default backend {backend!r}); install jax[cuda12] and check nvidia-smi")
print("JAX devices:", jax.devices())
PY
exec python3 -m launch.main --config=configs/gpu_smoke.py --workdir="$WORKDIR" "$@"
