#!/bin/bash
# One device run: the mnist10k diffusion and flow benchmarks, six jobs side by side on one GPU.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
PY=${PY:-python3}; B=${B:-3.5}; TRAIN_DEADLINE=${TRAIN_DEADLINE:-360}; HARD=${HARD:-535}
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .dev/whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
export GEN_JAX_DATA_DIR=$PWD/.dev/tfds GEN_JAX_CLASSIFIER_DIR=$PWD/.dev/classifiers
mkdir -p ../shared/data && cp -r .dev/mnist ../shared/data/ || exit 4
R=/tmp/res; mkdir -p $R/logs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import jax, flax, optax, orbax.checkpoint, chex, diffrax, grain, tensorflow_datasets as t; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'diffrax', diffrax.__version__, 'tfds', t.__version__, jax.devices())" || exit 5
echo "setup done at $(el)s"
# preflight: a few steps and a tiny eval through the same code paths; a failure stops everything
( $PY .dev/bench.py experiments.benchmarks.diffusion --parts=paradigms --dataset=mnist_idx --paradigms=ddpm,edm --steps=3 --max_eval=8 --num=16 --out=/tmp/pre/d \
  && $PY .dev/bench.py experiments.benchmarks.flows --parts=images --datasets=mnist_idx --paradigms=glow --steps=3 --out=/tmp/pre/f ) > $R/logs/preflight.log 2>&1 &
PRE=$!
declare -A PIDS
for p in ddpm score_sde edm flow_matching; do
  ev=${EV:-1000}; [ $p = ddpm ] && ev=${DDPM_EV:-0}
  $PY .dev/bench.py experiments.benchmarks.diffusion --parts=paradigms --dataset=mnist_idx --paradigms=$p --budget_minutes=$B --max_eval=$ev --out=$R/$p > $R/logs/$p.log 2>&1 &
  PIDS[$p]=$!
done
# digits DDPM trained on this GPU, then the few-step samplers against 1000-step ancestral
$PY .dev/bench.py experiments.benchmarks.diffusion --parts=paradigms,nfe --dataset=digits --paradigms=ddpm --budget_minutes=${B_NFE:-2} --seeds=1,2 --num=2000 --max_eval=${DDPM_EV:-0} --out=$R/nfe_digits > $R/logs/nfe_digits.log 2>&1 &
PIDS[nfe_digits]=$!
for p in realnvp glow; do
  mkdir -p $R/$p
  $PY .dev/bench.py experiments.benchmarks.flows --parts=images --datasets=mnist_idx --paradigms=$p --budget_minutes=$B --out=$R/$p --json=$R/$p/result.json > $R/logs/$p.log 2>&1 &
  PIDS[$p]=$!
done
pack() {  # $OUT/<job>.tgz, without checkpoints if it would be over 15 MiB
  tar czf $OUT/$1.tgz -C $R $1 2>/dev/null
  if [ $(stat -c %s $OUT/$1.tgz) -gt 15500000 ]; then tar czf $OUT/$1.tgz --exclude=checkpoints -C $R $1; fi
}
packlogs() { nvidia-smi > $R/logs/nvidia-smi.txt 2>&1; tar czf $OUT/logs.tgz -C $R logs; }
done_=""; termed=0
while :; do
  if [ -n "$PRE" ] && ! kill -0 $PRE 2>/dev/null; then
    wait $PRE; rc=$?; echo "preflight rc=$rc at $(el)s"; tail -5 $R/logs/preflight.log
    if [ $rc -ne 0 ]; then kill ${PIDS[@]} 2>/dev/null; sleep 2; kill -9 ${PIDS[@]} 2>/dev/null; packlogs; exit 6; fi
    PRE=""
  fi
  all=1
  for p in "${!PIDS[@]}"; do
    if kill -0 ${PIDS[$p]} 2>/dev/null; then all=0
    elif [[ " $done_ " != *" $p "* ]]; then wait ${PIDS[$p]}; echo "$p rc=$? at $(el)s"; pack $p; done_="$done_ $p"; fi
  done
  [ $all = 1 ] && break
  t=$(el)
  if [ $t -ge $TRAIN_DEADLINE ] && [ $termed = 0 ]; then echo "SIGTERM (end training) at ${t}s"; kill -TERM ${PIDS[@]} 2>/dev/null; termed=1; fi
  if [ $t -ge $HARD ]; then echo "hard stop at ${t}s"; for p in "${!PIDS[@]}"; do [[ " $done_ " != *" $p "* ]] && { kill -9 ${PIDS[$p]}; pack $p; }; done; break; fi
  sleep 3
done
for p in "${!PIDS[@]}"; do grep -h '^{"part"' $R/logs/$p.log | head -3; done
packlogs; ls -la $OUT; echo "end at $(el)s"
