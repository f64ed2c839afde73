#!/usr/bin/env bash
# The GPU checks of issues 3, 4, 5 and 8 as one prepared run, for a session lent a GPU machine
# for a few minutes (at most 9 of them, 540 s of step limits, in one command): the kernel tests
# on the GPU, then the benchmark suite at full scale, the attention tile sweep and a short
# network integration.
#
#   TNFAST_GIT_COMMIT=$(git rev-parse HEAD) bash benchmarks/gpu_check.sh OUT_DIR
#   GPU_CHECK_SMOKE=1 bash benchmarks/gpu_check.sh OUT_DIR   # the same steps, tiny and on CPU
#
# Run from the repository root. Each step has its own time limit, so a slow one costs its own
# results only; every step but the synthetic default's writes one file to OUT_DIR (7 in all;
# the device tool brings back at most 8) and this script ends with a table of each step's
# seconds and exit code. Missing Python packages travel as wheels in .whl/ (README,
# "Performance"); tnfast is installed from this tree, without its dependencies, into a scratch
# folder.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR}
mkdir -p "$out"
smoke=${GPU_CHECK_SMOKE:-0}
site=$(mktemp -d)
wheels=()
[ -d .whl ] && [ "$smoke" != 1 ] && wheels=(.whl/*.whl)  # (the device's Python 3.12 wheels)
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" . "${wheels[@]}" \
  || { echo "gpu_check: installing tnfast failed"; exit 1; }
# PYTHONSAFEPATH: the tree's own tnfast/ (without kernels/ beside it) must not shadow the install
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONSAFEPATH=1 PYTHONUNBUFFERED=1
export TNFAST_RUNS="$site/runs"
if [ "$smoke" = 1 ]; then
  dev=cpu scale=tiny synth=small tests=(-k "test_stack_multiplex or test_config_heuristic") sweep=(--smoke) integ=(--scale tiny --max-steps 2)
  export TRITON_INTERPRET=1 TNFAST_CACHE="$site/cache"
else
  dev=cuda scale=full synth=full tests=() sweep=(--quick --budget-s 30) integ=(--scale full --budget-s 25)
  export TRITON_INTERPRET=0  # real kernels (tests/conftest.py only sets the interpreter by default)
fi

summary=()
step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, record seconds and exit code
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "== $name (limit ${limit} s): $*"
  timeout -k 10 "$limit" "$@"
  rc=$?
  summary+=("$(printf '%-10s %4d s  rc %d%s' "$name" $((SECONDS - t0)) $rc "$([ $rc = 124 ] && echo ' (time limit)')")")
}

step pytest 140 bash -c 'python3 -m pytest -q -p no:cacheprovider -rs tests/test_gat.py tests/test_attention.py "$@" 2>&1 | tee "'"$out"'/pytest.log"' _ "${tests[@]}"
# the synthetic default the benchmarks share, generated once (about a minute)
step synth 90 python3 -c "from tnfast.data.synth import default_bundle; print(default_bundle('$synth'))"
for which in gat:60 attention:50 infer:50 train:60; do
  step "${which%:*}" "${which#*:}" python3 -m tnfast bench "${which%:*}" --scale "$scale" --device "$dev" \
    --json "$out/bench-${which%:*}.json"
done
step sweep 45 python3 -m tnfast.benchmarks.sweep_attention "${sweep[@]}" --json "$out/sweep-attention.json"
step integrate 45 python3 -m tnfast.benchmarks.bench_integrate --device "$dev" "${integ[@]}" --json "$out/integrate.json"

echo "== summary"
printf '%s\n' "${summary[@]}"
rm -rf "$site"
