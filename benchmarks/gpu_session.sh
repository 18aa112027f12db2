#!/usr/bin/env bash
# The measurements one short GPU session makes, most valuable first, each bounded in time and writing its JSON
# as soon as it has one (docs/performance.md renders them: python benchmarks/performance.py > docs/performance.md):
#   1. nanogpt_peer.py: our dense GPT-2 beside nanoGPT's, the MoE beside its iso-active dense, MFU;
#   2. paper_dag.py:    one job of every GPU rule of the paper configuration through Snakemake, cut steps;
#   3. gpu_hours.py:    GPU-hours at full steps of the pretraining jobs and of a few Shakespeare MoE methods
#                       (all 24 would take minutes; each row is written as it is measured).
# In all at most 9 minutes.
#
#   bash benchmarks/gpu_session.sh NANOGPT_MODEL_PY [OUT_DIR] [NAME]
# NAME (default: the GPU's model, e.g. h100) ends each file's name: nanogpt_peer_NAME.json, ...
# The environment needs the project's dependencies (pyproject.toml); the package runs from src/ (no install).
# SMALL=1 runs each at its test size on the CPU (a check of the script, not a measurement).
set -uo pipefail
nanogpt=${1:?usage: gpu_session.sh NANOGPT_MODEL_PY [OUT_DIR] [NAME]}
out=${2:-benchmarks/measured}
root=$(cd "$(dirname "$0")/.." && pwd)
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
if [[ ${SMALL:-0} == 1 ]]; then
  peer=(--small --device cpu --repeats 2) dag=(--tiny --device cpu --steps 2) hours=(--config "$root/config/config.yaml" "$root/config/test.yaml" --steps 1 2)
else
  peer=() dag=() hours=()
fi
name=${3:-$($python -c "import torch; print(torch.cuda.get_device_name().split()[1].lower() if torch.cuda.is_available() else 'cpu')")}
mkdir -p "$out"
status=0
step() {  # a step that fails or runs out of time is reported; the next one still runs
  local seconds=$1; shift
  echo "== $* (at most ${seconds} s)"
  timeout "$seconds" "$@" || { echo "== failed or timed out: $*"; status=1; }
}
step 300 "$python" "$root/benchmarks/nanogpt_peer.py" --nanogpt "$nanogpt" --budget-s 180 "${peer[@]}" \
  --json "$out/nanogpt_peer_$name.json"
step 130 "$python" "$root/benchmarks/paper_dag.py" --workdir "${TMPDIR:-/tmp}/paper_dag" --one-per-rule "${dag[@]}" \
  --json "$out/paper_dag_$name.json"
step 110 "$python" "$root/benchmarks/gpu_hours.py" --rules train_run --match pretraining "shakespeare_moe standard" \
  "shakespeare_moe rpo" "${hours[@]}" --json "$out/gpu_hours_$name.json"
exit $status
