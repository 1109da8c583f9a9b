"""Fréchet distance against scipy's sqrtm and against closed forms for Gaussians."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from gen_jax.eval import frechet


def _random_cov(rng, d, rank=None):
  a = rng.normal(size=(d, rank or d))
  return a @ a.T / d + (0.0 if rank else 1e-3) * np.eye(d)


def _scipy_fd(mu1, s1, mu2, s2):
  """Independent computation: tr(S1 + S2 - 2 sqrtm(S1 S2)) with scipy's Schur-based sqrtm."""
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2.0 * np.real(covmean)))


@pytest.mark.parametrize("d", [1, 3, 16, 64])
def test_matches_scipy_sqrtm_on_random_covariances(d):
  rng = np.random.default_rng(d)
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
  ours = frechet.frechet_distance_from_stats(mu1, s1, mu2, s2)
  np.testing.assert_allclose(ours, _scipy_fd(mu1, s1, mu2, s2), rtol=1e-8, atol=1e-9)


def test_trace_sqrt_product_matches_scipy_for_low_rank_covariances():
  # Rank-deficient covariances (as from fewer samples than dimensions): no inverse needed.
  rng = np.random.default_rng(7)
  s1, s2 = _random_cov(rng, 20, rank=5), _random_cov(rng, 20, rank=8)
  expected = np.real(np.trace(scipy.linalg.sqrtm(s1 @ s2)))
  np.testing.assert_allclose(frechet.trace_sqrt_product(s1, s2), expected, rtol=1e-6)


def test_closed_form_for_commuting_covariances():
  # Diagonal covariances commute: FD = ||mu1-mu2||^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
  a, b = np.array([1.0, 4.0, 0.25, 9.0]), np.array([4.0, 1.0, 0.25, 0.0])
  mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
  expected = 1.0 + 4.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = frechet.frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  # Rotating both by the same orthogonal matrix leaves FD unchanged.
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))
  got_rot = frechet.frechet_distance_from_stats(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
  np.testing.assert_allclose(got_rot, expected, rtol=1e-7)  # a zero variance: sqrt of round-off


def test_identical_sets_score_zero_and_symmetry():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
  y = rng.normal(size=(400, 8))
  assert frechet.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
  np.testing.assert_allclose(frechet.frechet_distance(x, y), frechet.frechet_distance(y, x), rtol=1e-9)


def test_samples_from_two_known_gaussians_approach_the_closed_form():
  # N(m1, s1^2 I) vs N(m2, s2^2 I) in D dims: FD = ||m1-m2||^2 + D (s1 - s2)^2 = 4 + 4 * 0.25 = 5.
  rng = np.random.default_rng(3)
  d, n = 4, 100_000
  x = rng.normal(size=(n, d)) * 1.0 + np.array([1.0, 0.0, 0.0, 0.0])
  y = rng.normal(size=(n, d)) * 1.5 + np.array([-1.0, 0.0, 0.0, 0.0])
  np.testing.assert_allclose(frechet.frechet_distance(x, y), 5.0, rtol=0.02)


def test_statistics_are_unbiased_mean_and_covariance():
  x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
  stats = frechet.feature_statistics(x)
  np.testing.assert_allclose(stats.mu, [2.0, 4.0])
  np.testing.assert_allclose(stats.sigma, np.cov(x.T))
  assert stats.sigma.dtype == np.float64


def test_errors_name_the_cause():
  with pytest.raises(ValueError, match="different dimensions"):
    frechet.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
  with pytest.raises(ValueError, match=r"\[N >= 2, D\]"):
    frechet.feature_statistics(np.zeros((1, 3)))
  assert frechet.fd_name("digits") == "FD (digits classifier)"
