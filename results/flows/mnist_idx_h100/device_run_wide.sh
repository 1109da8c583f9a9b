#!/bin/bash
# Last short device run: wider/deeper mnist10k flows (hidden 256, 8 steps per scale).
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
B=${B:-1.4}; TRAIN_DEADLINE=${TRAIN_DEADLINE:-140}; HARD=${HARD:-172}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .dev/whl/*.whl 2>/dev/null || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
export GEN_JAX_DATA_DIR=$PWD/.dev/tfds GEN_JAX_CLASSIFIER_DIR=$PWD/.dev/classifiers
mkdir -p ../shared/data && cp -r .dev/mnist ../shared/data/ || exit 4
R=/tmp/big; mkdir -p $R/logs
declare -A PIDS
for p in realnvp glow; do
  mkdir -p $R/$p
  python3 .dev/bench.py experiments.benchmarks.flows --parts=images --datasets=mnist_idx --paradigms=$p --budget_minutes=$B --model=hidden=256,steps_per_scale=8 --out=$R/$p --json=$R/$p/result.json > $R/logs/$p.log 2>&1 &
  PIDS[$p]=$!
done
termed=0
while :; do
  all=1; for p in "${!PIDS[@]}"; do kill -0 ${PIDS[$p]} 2>/dev/null && all=0; done
  [ $all = 1 ] && break
  t=$(el)
  if [ $t -ge $TRAIN_DEADLINE ] && [ $termed = 0 ]; then echo "SIGTERM at ${t}s"; kill -TERM ${PIDS[@]}; termed=1; fi
  if [ $t -ge $HARD ]; then echo "hard stop at ${t}s"; kill -9 ${PIDS[@]}; break; fi
  sleep 2
done
grep -h '^{"part"' $R/logs/*.log | cut -c1-900
tar czf $OUT/big.tgz -C $R .; echo "end at $(el)s"
