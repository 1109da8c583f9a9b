r"""Trains a paradigm; relaunching the same command resumes.

  python -m experiments.train --config=experiments/configs/vae.py:digits --workdir=/tmp/vae \
      [--config.num_train_steps=5000 --config.optimizer.learning_rate=3e-4 ...]

With --dry_run nothing is trained or allocated: the run is planned on a
simulated mesh of --dry_run_devices fake CPU devices and the parameter count,
bytes per device (params, optimizer, EMA, activations) and FLOPs per step are
printed under the config's compute_dtype, remat and grad_accum_steps, with which common
accelerators they fit and the largest per-device batch that fits 80 GiB (estimated from a
second compile at twice the batch; see gen_jax.train.dry_run):

  python -m experiments.train --config=experiments/configs/ddpm.py:cifar10 --workdir=/tmp/x --dry_run

Relaunched with the same command it resumes (bitwise); SIGTERM or Ctrl-C saves a
checkpoint and stops (Ctrl-C: exit 130; a second Ctrl-C aborts at once). A run may be
continued with a change: num_train_steps, on_nonfinite and the intervals freely, any
other field with --resume_changes=FIELD,... (recorded in config.json's history).

At the end it prints the final test-split evaluation the loop logged
(bits/dim, exact or bound); `experiments/evaluate.py` recomputes it on demand.
"""
from __future__ import annotations

import json
import os
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from experiments import common
from gen_jax import workdir as workdir_lib
from gen_jax.train.loop import StopRequest
from gen_jax.train.metrics import read_metrics

config_flags.DEFINE_config_file("config", None, "Config file, e.g. experiments/configs/vae.py:digits.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and samples go.")
flags.DEFINE_bool("restart", False, "When the workdir's checkpoints exist but none restores, set "
                  "them and metrics.jsonl aside and train from step 0 (without it the run "
                  "stops, naming each checkpoint and why).")
flags.DEFINE_list("resume_changes", [], "Config fields (dotted, or a prefix such as 'optimizer') "
                  "that may differ from the workdir's saved config: continue the run with them "
                  "changed (recorded in config.json's history). num_train_steps, on_nonfinite "
                  "and the logging/eval/checkpoint/sample intervals may always change.")
flags.DEFINE_bool("dry_run", False, "Plan the run abstractly (see the module docstring).")
flags.DEFINE_integer("dry_run_devices", 8, "Fake devices for --dry_run's mesh.")
flags.DEFINE_bool("dry_run_compile", True, "--dry_run: compile the step for FLOPs and activations.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def dry_run(config) -> None:
  # Fake devices must be requested before JAX starts its backend (nothing has yet).
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={FLAGS.dry_run_devices}")
  jax.config.update("jax_platforms", "cpu")
  from gen_jax.train.dry_run import plan
  report = plan(config, compile_step=FLAGS.dry_run_compile, stage1=workdir_lib.stage1_of(config))
  gib = lambda b: f"{b / 2 ** 30:.3f} GiB"
  settings = ", ".join(f"{k}={v}" for k, v in report["settings"].items())
  print(f"{report['paradigm']} on {report['dataset']}: {report['parameters']:,} parameters, "
        f"mesh {report['mesh']} ({report['devices']} devices), batch {report['batch_size']} "
        f"({report['per_device_batch']} per device)")
  print(f"  under {settings}:")
  for k, v in report["bytes_per_device"].items():
    print(f"  {k:>28}: {gib(v)} per device")
  if report.get("flops_per_step") is not None:
    print(f"  {'FLOPs per step, one device':>28}: {report['flops_per_step']:.3e} (XLA cost analysis)")
  for name, fits in report["fits"].items():
    print(f"  fits {name}: {'yes' if fits else 'no'} ({report['fits_basis']})")
  if "largest_per_device_batch" in report:
    fit, largest = report["batch_fit"], report["largest_per_device_batch"]
    shards = report["batch_size"] // report["per_device_batch"]
    shown = ("unknown (the step's memory does not grow with the batch)" if largest is None
             else f"{largest} (global batch {largest * shards})")
    (b1, b2), (m1, m2) = fit["per_device_batch"], fit["bytes_per_device"]
    print(f"  largest per-device batch in {fit['budget_bytes'] / 2 ** 30:g} GiB: {shown}; an "
          f"estimate, memory affine in the batch through compiles at {b1} ({gib(m1)}) and "
          f"{b2} ({gib(m2)}) per device")
  print(json.dumps(report))


def main(argv):
  del argv
  config = FLAGS.config
  if FLAGS.dry_run:
    return dry_run(config)
  common.maybe_initialize_distributed()
  stop = StopRequest()
  state = workdir_lib.train(config, FLAGS.workdir, restart=FLAGS.restart,
                            resume_changes=FLAGS.resume_changes, stop=stop)
  step = int(jax.device_get(state.step))
  if step < config.num_train_steps:
    print(f"Stopped at step {step} ({stop.signal}); its checkpoint is saved: relaunch the same "
          "command to resume.")
    if stop.signal == "SIGINT":
      sys.exit(130)
    return
  evals = [r for r in read_metrics(FLAGS.workdir) if "eval/bits_per_dim" in r]
  summary = {"step": step, "workdir": FLAGS.workdir}
  if evals:
    summary.update({k.removeprefix("eval/"): v for k, v in evals[-1].items() if k != "step"})
    summary["bound"] = bool(summary.get("bound", 1.0))
  print(json.dumps(summary))


if __name__ == "__main__":
  app.run(common.run_main(main), flags_parser=common.parse_flags)
