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
