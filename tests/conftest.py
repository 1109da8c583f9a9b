"""Fixtures shared by the test files: `cli` runs the command-line entry points."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(*args, check=True, env=None, timeout=600):
  """`python -m <args>` in the repository root -> CompletedProcess (text stdout/stderr);
  with check, asserts exit status 0 and shows the end of stderr otherwise."""
  proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                        timeout=timeout, env=None if env is None else {**os.environ, **env})
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.fixture
def cli():
  """run_module: cli("experiments.train", "--config=...", check=False)."""
  return run_module


@pytest.fixture
def adam_fit():
  """fit(paradigm, params, batch, steps, lr) -> (params, last loss): plain Adam on one fixed batch,
  the step key key `jax.random.key(i)` at step i, for tests that check a tiny model can learn a pattern."""
  def fit(paradigm, params, batch, steps, lr=3e-3):
    import jax
    import optax
    tx = optax.adam(lr)

    @jax.jit
    def step(params, opt, rng):
      (loss, _), g = jax.value_and_grad(paradigm.loss, has_aux=True)(params, batch, rng)
      updates, opt = tx.update(g, opt)
      return optax.apply_updates(params, updates), opt, loss

    opt, loss = tx.init(params), None
    for i in range(steps):
      params, opt, loss = step(params, opt, jax.random.key(i))
    return params, loss
  return fit
