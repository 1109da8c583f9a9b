"""The toy2d log densities against truth: they integrate to 1, match independent formulas,
and agree with the samplers. No TFDS here (gen_jax.data.toy2d is importable on its own)."""
from __future__ import annotations

import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gen_jax.data import toy2d


def _grid(lo, hi, n):
  """Midpoints of an n x n grid on [lo, hi]^2 and the cell area."""
  h = (hi - lo) / n
  c = lo + h * (np.arange(n) + 0.5)
  xx, yy = np.meshgrid(c, c, indexing="ij")
  return np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32), h * h


def test_toy2d_module_imports_without_tfds_or_grain():
  code = ("import sys, gen_jax.data.toy2d, gen_jax.data; "
          "print(any(m.startswith(('tensorflow_datasets', 'grain', 'tensorflow')) for m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"


def test_constants():
  np.testing.assert_allclose(np.linalg.norm(toy2d.EIGHT_GAUSSIANS_CENTRES, axis=1), 2.0, rtol=1e-6)
  assert toy2d.EIGHT_GAUSSIANS_CENTRES.shape == (8, 2) and toy2d.EIGHT_GAUSSIANS_SIGMA == 0.2
  # Centres 45 degrees apart.
  angles = np.sort(np.mod(np.arctan2(*toy2d.EIGHT_GAUSSIANS_CENTRES[:, ::-1].T), 2 * np.pi))
  np.testing.assert_allclose(np.diff(angles), np.pi / 4, atol=1e-6)


def test_eight_gaussians_log_prob_integrates_to_one_and_matches_scipy():
  x, area = _grid(-3.5, 3.5, 350)
  logp = np.asarray(toy2d.eight_gaussians_log_prob(jnp.asarray(x)))
  assert logp.shape == (len(x),)
  np.testing.assert_allclose(np.exp(logp).sum() * area, 1.0, atol=1e-4)
  pts = np.random.default_rng(0).uniform(-3, 3, size=(200, 2))
  truth = np.log(np.mean([stats.multivariate_normal(c, toy2d.EIGHT_GAUSSIANS_SIGMA**2).pdf(pts)
                          for c in toy2d.EIGHT_GAUSSIANS_CENTRES], axis=0))
  np.testing.assert_allclose(toy2d.eight_gaussians_log_prob(pts.astype(np.float32)), truth,
                             rtol=1e-4, atol=1e-3)


def test_checkerboard_log_prob_integrates_to_one_and_matches_parity_rule():
  x, area = _grid(-2.5, 2.5, 500)
  logp = np.asarray(toy2d.checkerboard_log_prob(jnp.asarray(x)))
  np.testing.assert_allclose(np.exp(logp).sum() * area, 1.0, atol=1e-6)
  # Independent rule: inside [-2, 2)^2, black where floor(x1) and floor(x2) have equal parity.
  inside = np.all(np.abs(x) < 2, axis=1)
  black = np.floor(x[:, 0]) % 2 == np.floor(x[:, 1]) % 2
  np.testing.assert_array_equal(np.isfinite(logp), inside & black)
  np.testing.assert_allclose(logp[inside & black], -np.log(8.0), rtol=1e-6)


@pytest.mark.parametrize("name", ["eight_gaussians", "checkerboard"])
def test_samplers_agree_with_densities(name):
  """E_samples[-log p] matches the entropy -int p log p computed on a grid."""
  log_prob = toy2d.LOG_PROBS[name]
  samples = toy2d.sample(name, np.random.default_rng(0), 40_000)
  assert samples.dtype == np.float32 and samples.shape == (40_000, 2)
  nll = -np.asarray(log_prob(samples))
  assert np.all(np.isfinite(nll))
  x, area = _grid(-3.5, 3.5, 350)
  logp = np.asarray(log_prob(x))
  p = np.exp(logp)
  entropy = -np.sum(p * np.where(p > 0, logp, 0.0)) * area
  np.testing.assert_allclose(nll.mean(), entropy, atol=4 * nll.std() / np.sqrt(len(nll)) + 1e-3)


def test_checkerboard_samples_fill_all_eight_squares_equally():
  x = toy2d.sample("checkerboard", np.random.default_rng(3), 16_000)
  cells = np.floor(x + 2).astype(int)
  counts = np.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16).reshape(4, 4)
  black = (np.add.outer(np.arange(4), np.arange(4)) % 2) == 0
  assert np.all(counts[~black] == 0)
  np.testing.assert_allclose(counts[black] / 16_000, 1 / 8, atol=0.015)


@pytest.mark.parametrize("name", toy2d.NAMES)
def test_samplers_are_deterministic_and_bounded(name):
  a = toy2d.sample(name, np.random.default_rng(5), 1000)
  b = toy2d.sample(name, np.random.default_rng(5), 1000)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (1000, 2) and a.dtype == np.float32
  assert np.all(np.abs(a) < 6) and np.abs(a.mean(0)).max() < 0.5


def test_unknown_toy_name():
  with pytest.raises(ValueError, match="moons"):
    toy2d.sample("spirals", np.random.default_rng(0), 3)
