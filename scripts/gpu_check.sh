#!/usr/bin/env bash
# On a CUDA machine with `pip install -e ".[gpu]"`: the GPU paths end to end, a pass/fail table.
# Under 10 minutes; exit code = number of failed checks. See scripts/gpu_check.py.
set -uo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled
exec timeout 600 "${PYTHON:-python}" -m scripts.gpu_check "$@"
