"""Pure preprocessing functions: binarization thresholds, uniform dequantization."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.data import preprocess


@pytest.mark.parametrize("levels,threshold", [(17, 9), (256, 128), (2, 1)])
def test_binarize_threshold(levels, threshold):
  x = np.arange(levels, dtype=np.uint8)
  b = preprocess.binarize(x, levels)
  assert b.dtype == np.uint8
  np.testing.assert_array_equal(b, (x >= threshold).astype(np.uint8))


def test_dequantize_is_uniform_within_each_level():
  x = jnp.tile(jnp.arange(17, dtype=jnp.uint8), 4_000)
  y = jax.jit(preprocess.dequantize)(jax.random.key(0), x)
  assert y.dtype == jnp.float32 and y.shape == x.shape
  u = np.asarray(y) - np.asarray(x, np.float32)
  assert u.min() >= 0.0 and u.max() < 1.0
  # U[0,1): mean 1/2, variance 1/12, and the same law at every level.
  np.testing.assert_allclose([u.mean(), u.var()], [0.5, 1 / 12], atol=5e-3)
  np.testing.assert_allclose(u.reshape(4_000, 17).mean(0), 0.5, atol=0.03)
  assert not np.array_equal(np.asarray(y), np.asarray(preprocess.dequantize(jax.random.key(1), x)))


def test_to_unit_interval():
  np.testing.assert_allclose(preprocess.to_unit_interval(jnp.array([0, 8, 16]), 17), [0.0, 0.5, 1.0])


def test_check_preprocess():
  assert preprocess.check_preprocess("binarize") == "binarize"
  with pytest.raises(ValueError, match="'none', 'binarize'"):
    preprocess.check_preprocess("dequantize")
