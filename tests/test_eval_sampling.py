"""gen_jax.eval.sampling: the one batched drawer (equal batches, fold_in keys, rate, NFE)."""
from __future__ import annotations

import types

import jax
import numpy as np
import pytest

from gen_jax.eval import sampling


def fake_run(shift=0.0):
  """A run whose sampler returns uniform(rng, [num, 2]) + params and reports NFE 7."""
  def sample(params, rng, num, return_info=False, scale=1.0):
    x = scale * jax.random.uniform(rng, (num, 2)) + params
    return (x, {"nfe": 7}) if return_info else x
  return types.SimpleNamespace(paradigm=types.SimpleNamespace(sample=sample), with_gathered_params=lambda f: f,
                               sampling_params=lambda state: state,
                               replicated=jax.sharding.SingleDeviceSharding(jax.devices()[0]))


def test_draw_uses_fold_in_keys_equal_batches_and_drops_the_extra():
  rng = jax.random.key(3)
  calls = []

  def fn(key, n):
    calls.append(n)
    return jax.random.normal(key, (n, 1))
  drawn = sampling.draw(fn, rng, 5, batch=2)
  assert calls == [2, 2, 2]                     # ceil(5 / 2) batches of one size
  expected = np.concatenate([np.asarray(jax.random.normal(jax.random.fold_in(rng, i), (2, 1))) for i in range(3)])
  np.testing.assert_array_equal(drawn.samples, expected[:5])
  assert drawn.nfe is None and drawn.samples_per_s > 0


def test_draw_makes_at_least_two_batches_so_that_the_rate_excludes_compilation():
  sizes = []
  sampling.draw(lambda key, n: sizes.append(n) or np.zeros((n, 1)), jax.random.key(0), 10, batch=250)
  assert sizes == [5, 5]
  sizes.clear()
  sampling.draw(lambda key, n: sizes.append(n) or np.zeros((n, 1)), jax.random.key(0), 1)
  assert sizes == [1]


def test_draw_run_jits_the_sampler_passes_options_and_reads_its_nfe():
  run, rng = fake_run(), jax.random.key(1)
  drawn = sampling.draw_run(run, 10.0, rng, 4, batch=2, scale=2.0)
  expected = np.concatenate([2.0 * np.asarray(jax.random.uniform(jax.random.fold_in(rng, i), (2, 2))) + 10.0
                             for i in range(2)])
  np.testing.assert_allclose(drawn.samples, expected, rtol=1e-6)
  assert drawn.nfe == 7 and drawn.samples.shape == (4, 2)


def test_accepts_reads_the_signature():
  assert sampling.accepts(lambda a, return_info=False: a, "return_info")
  assert not sampling.accepts(lambda a: a, "return_info")
  assert not sampling.accepts(np.add, "return_info")      # a ufunc: no readable signature


@pytest.mark.parametrize("num", [3, 8])
def test_draw_returns_exactly_num_samples(num):
  assert sampling.draw(lambda k, n: np.ones((n, 2)), jax.random.key(0), num, batch=3).samples.shape == (num, 2)
