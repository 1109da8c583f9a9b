r"""Soak suite: faults injected into real training processes, and nothing lost.

  python -m experiments.benchmark --suite=soak                         # vae, gan, vq_gpt; 20 cycles each
  python -m experiments.benchmark --suite=soak --only=vae --cycles=3 --out=/tmp/soak

For each model (MODELS: a VAE, a GAN and the stage 2 of a two-stage model, a GPT prior over
a VQ-VAE's codes), an uninterrupted reference run, then a run in another workdir through
--cycles launches of `python -m experiments.train`, each ended by one fault drawn (seeded by
--seeds) from FAULTS:
* sigkill: SIGKILL at a random moment of the run;
* sigkill_in_save: SIGKILL while Orbax writes a checkpoint (its temporary folder exists);
* sigterm, sigint: the graceful stops (save, exit 0 / 130);
* bitflip, truncate: SIGKILL, then one bit flipped in (or a truncation of) an array file of
  the newest checkpoint, which the relaunch must detect by its manifest and set aside;
* torn_metrics: SIGKILL, then half a JSON line appended to metrics.jsonl.
After the last cycle the run is relaunched until it finishes. The suite then compares, bitwise,
the final parameters (and optimizer state) and the loss curves of the two runs, checks that
metrics.jsonl has each logged step once, and prints the faults of each kind and the
mismatches (which must be 0) to `<out>/soak.json`.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from gen_jax import workdir as workdir_lib
from gen_jax.train.metrics import read_metrics

DEFAULTS = {"out": "/tmp/gen_jax_soak", "workdir_root": "/tmp/gen_jax_soak/workdirs"}
FAULTS = ("sigkill", "sigkill_in_save", "sigterm", "sigint", "bitflip", "truncate",
          "torn_metrics")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Long enough that every one of 20 cycles lands mid-run (a cycle trains from its start-up to a
# save of its own and up to 2 s more), with checkpoints often enough to be hit while written.
_SMALL = ["--config.batch_size=8", "--config.log_every_steps=10", "--config.eval_every_steps=100000",
          "--config.sample_every_steps=100000", "--config.checkpoint_every_steps=40",
          "--config.eval_max_examples=16"]
# name -> (config file:arg, overrides, steps); stage-2 models name their stage 1 in STAGE1.
MODELS = {
    "vae": ("vae.py:digits", ["--config.model.channels=(8,)", "--config.model.latent_dim=2"], 6000),
    "gan": ("gan.py:digits", ["--config.model.g_channels=8", "--config.model.d_channels=8",
                              "--config.model.d_feature_dim=16", "--config.model.latent_dim=4"], 4000),
    "vq_gpt": ("vq_gpt.py:digits", ["--config.model.num_layers=1", "--config.model.embed_dim=16",
                                    "--config.model.num_heads=2"], 14000),
}
STAGE1 = {"vq_gpt": ("vqvae.py:digits", ["--config.model.channels=(8,)",
                                         "--config.model.code_dim=4"], 40)}


def command(spec, workdir, extra=()):
  config, overrides, steps = spec
  return [sys.executable, "-m", "experiments.train", f"--config=experiments/configs/{config}",
          f"--workdir={workdir}", f"--config.num_train_steps={steps}", *_SMALL, *overrides,
          *extra]


def _newest_step(workdir):
  ckpts = os.path.join(workdir, "checkpoints")
  steps = [int(s) for s in os.listdir(ckpts) if s.isdigit()] if os.path.isdir(ckpts) else []
  return max(steps, default=0)


def _saving(workdir):
  ckpts = os.path.join(workdir, "checkpoints")
  return os.path.isdir(ckpts) and any("tmp" in s for s in os.listdir(ckpts))


def _array_files(step_dir):
  found = []
  for root, _, files in os.walk(os.path.join(step_dir, "state")):
    found += [os.path.join(root, f) for f in files]
  return sorted(p for p in found if os.path.getsize(p) > 64)


def inject(fault, proc, workdir, rng, timeout=600.0) -> str:
  """Ends a running training process with `fault`; returns what was done.

  The fault lands while the process trains: once it has saved a checkpoint of its own
  (so its signal handlers are in place and it has made progress), at a random moment up to
  two seconds later, or, for sigkill_in_save, the moment Orbax starts writing the next one.
  """
  start, launched_at = time.time(), _newest_step(workdir)
  while (proc.poll() is None and _newest_step(workdir) <= launched_at and
         time.time() - start < timeout):
    time.sleep(0.02)
  if proc.poll() is not None:
    return "finished first"
  if fault == "sigkill_in_save":
    while proc.poll() is None and not _saving(workdir) and time.time() - start < timeout:
      time.sleep(0.001)
  else:
    time.sleep(rng.uniform(0.0, 2.0))
  if proc.poll() is not None:
    return "finished first"
  sig = {"sigterm": signal.SIGTERM, "sigint": signal.SIGINT}.get(fault, signal.SIGKILL)
  proc.send_signal(sig)
  proc.communicate(timeout=300)
  newest = os.path.join(workdir, "checkpoints", str(_newest_step(workdir)))
  if fault in ("bitflip", "truncate") and _newest_step(workdir):
    victim = rng.choice(_array_files(newest))
    with open(victim, "r+b") as f:
      data = bytearray(f.read())
      if fault == "bitflip":
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
        f.seek(0)
        f.write(data)
      else:
        f.truncate(rng.randrange(len(data)))
  if fault == "torn_metrics":
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
      f.write('{"step": 99999, "loss": 0.')
  return f"{fault} at step {_newest_step(workdir)} (rc {proc.returncode})"


def _finish(cmd, workdir):
  for _ in range(3):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if proc.returncode == 0:
      return
  raise RuntimeError(f"{workdir} did not finish: {proc.stderr[-2000:]}")


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def mismatches(reference, soaked) -> dict:
  """Bitwise comparisons of two finished workdirs: params, optimizer state, loss curves."""
  _, a, _ = workdir_lib.restore(reference)
  _, b, _ = workdir_lib.restore(soaked)
  out = {}
  for name in ("params", "opt_state", "ema_params"):
    la, lb = _leaves(getattr(a, name)), _leaves(getattr(b, name))
    out[name] = len(la) != len(lb) or sum(int(not np.array_equal(x, y)) for x, y in zip(la, lb))
  curve = lambda w: [(r["step"], r["loss"]) for r in read_metrics(w) if "loss" in r]
  out["loss_curve"] = int(curve(reference) != curve(soaked))
  steps = [r["step"] for r in read_metrics(soaked) if "loss" in r]
  out["duplicate_steps"] = len(steps) - len(set(steps))
  return {k: int(v) for k, v in out.items()}


def soak(name, cycles, seed, root, log=print, faults=FAULTS, steps=0) -> dict:
  """Reference and soaked runs of MODELS[name] (`steps` > 0: that many instead); returns
  the faults injected of each kind, what each cycle did, and the mismatches."""
  rng = random.Random(seed)
  config, overrides, default_steps = MODELS[name]
  spec = (config, overrides, steps or default_steps)
  extra = []
  if name in STAGE1:
    stage1 = os.path.join(root, f"{name}_stage1")
    _finish(command(STAGE1[name], stage1), stage1)
    extra = [f"--config.stage1.workdir={stage1}"]
  reference, soaked = os.path.join(root, f"{name}_reference"), os.path.join(root, f"{name}_soaked")
  _finish(command(spec, reference, extra), reference)
  counts, events = {f: 0 for f in faults}, []
  for cycle in range(cycles):
    fault = faults[cycle] if cycle < len(faults) else rng.choice(faults)
    proc = subprocess.Popen(command(spec, soaked, extra), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    done = inject(fault, proc, soaked, rng)
    if done != "finished first":
      counts[fault] += 1
    events.append(done)
    log(f"{name} cycle {cycle + 1}/{cycles}: {done}")
  _finish(command(spec, soaked, extra), soaked)
  return {"model": name, "cycles": cycles, "faults": counts, "events": events,
          "mismatches": mismatches(reference, soaked)}


def run(args) -> dict:
  names = list(args.only) or list(MODELS)
  seed = int(args.seeds[0]) if args.seeds else 0
  results = [soak(n, args.cycles, seed, os.path.join(args.workdir_root, n)) for n in names]
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "soak.json"), "w") as f:
    json.dump(results, f, indent=2)
  for r in results:
    print(f"{r['model']}: {r['cycles']} cycles, faults {r['faults']}, mismatches "
          f"{r['mismatches']} (total {sum(r['mismatches'].values())})")
  return {"rows": results}
