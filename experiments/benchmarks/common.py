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


def with_steps(config, steps: int):
  """Shortens a config to `steps` training steps, sampling/saving/evaluating once at the end."""
  if steps:
    config.num_train_steps = steps
    config.sample_every_steps = steps
    config.checkpoint_every_steps = steps
    config.eval_every_steps = steps
  return config
