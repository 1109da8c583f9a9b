"""Plumbing shared by the family benchmarks."""
from __future__ import annotations

import time


def timed_train(config, workdir):
  """Trains (or resumes) `config` in `workdir` through the loop; returns (run, state, seconds)."""
  from gen_jax.train import loop
  start = time.perf_counter()
  loop.train(config, workdir, progress=False)
  seconds = time.perf_counter() - start
  run, state, _ = loop.restore(workdir)
  return run, state, seconds


def budget_config(config, budget_minutes):
  """`config` with the steps that fit `budget_minutes` of training (probed on this machine),
  and the probed seconds per step."""
  from experiments import benchmark
  seconds_per_step = benchmark.probe_seconds_per_step(config)
  return with_steps(config, benchmark.budget_steps(seconds_per_step, budget_minutes)), seconds_per_step


def device_kind() -> str:
  """What the numbers were measured on, e.g. 'cpu' or 'NVIDIA H100 80GB HBM3'."""
  import jax
  return jax.devices()[0].device_kind


def with_steps(config, steps: int):
  """Shortens a config to `steps` training steps, sampling/saving/evaluating once at the end."""
  if steps:
    config.num_train_steps = steps
    config.sample_every_steps = steps
    config.checkpoint_every_steps = steps
    config.eval_every_steps = steps
  return config
