r"""Fréchet distance between two sets of features (the FID formula, on our own feature net).

Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a
Local Nash Equilibrium" (arXiv:1706.08500) score a generator by fitting a
Gaussian to the features of real and of generated images and taking the
Fréchet (2-Wasserstein) distance between the two Gaussians
(Dowson & Landau 1982):

  FD = ||mu_1 - mu_2||^2 + tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^{1/2}).

gen_jax computes it on the penultimate features of a small classifier trained
by the project (`gen_jax.nets.classifier`), not on Inception-v3, so its values
are *not* FIDs and are reported as "FD (<dataset> classifier)".

Stable square root. (Sigma_1 Sigma_2)^{1/2} is not symmetric and scipy's
`sqrtm` of it can return complex parts or fail for singular covariances.
Since Sigma_1 Sigma_2 = Sigma_1^{1/2} (Sigma_1^{1/2} Sigma_2 Sigma_1^{1/2})
Sigma_1^{-1/2} is similar to the symmetric PSD matrix
M = Sigma_1^{1/2} Sigma_2 Sigma_1^{1/2}, both have the same eigenvalues, so

  tr (Sigma_1 Sigma_2)^{1/2} = sum_i sqrt(lambda_i(M)),

computed with two symmetric eigendecompositions in float64 (eigenvalues
clipped at 0, which only removes round-off). This needs no inverse, so it
holds for singular covariances (fewer samples than feature dimensions).
Everything runs in numpy float64 on the host: the matrices are small
(features x features) and float32 loses FD's small differences of large traces.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class GaussianStats(NamedTuple):
  """Mean [D] and covariance [D, D] of a feature set, float64."""
  mu: np.ndarray
  sigma: np.ndarray


def feature_statistics(features) -> GaussianStats:
  """[N, D] features -> (mean, unbiased covariance) in float64, as FID does."""
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"Need features of shape [N >= 2, D], got {x.shape}.")
  return GaussianStats(x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1]))


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
  """Symmetric PSD square root via eigh; negative round-off eigenvalues -> 0."""
  a = 0.5 * (a + a.T)
  w, v = np.linalg.eigh(a)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1, sigma2) -> float:
  r"""tr (Sigma_1 Sigma_2)^{1/2} = sum sqrt(eig(Sigma_1^{1/2} Sigma_2 Sigma_1^{1/2})), Sigmas PSD."""
  s1 = np.asarray(sigma1, np.float64)
  s2 = np.asarray(sigma2, np.float64)
  root1 = _sqrt_psd(s1)
  m = root1 @ s2 @ root1
  w = np.linalg.eigvalsh(0.5 * (m + m.T))
  return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
  r"""FD = ||mu_1 - mu_2||^2 + tr Sigma_1 + tr Sigma_2 - 2 tr (Sigma_1 Sigma_2)^{1/2}.

  The squared 2-Wasserstein distance between N(mu_1, Sigma_1) and N(mu_2, Sigma_2)
  (arXiv:1706.08500, eq. 6). Clipped at 0 against round-off.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
    raise ValueError(f"Mismatched statistics: mu {mu1.shape} vs {mu2.shape}, "
                     f"sigma {s1.shape} vs {s2.shape}.")
  diff = mu1 - mu2
  fd = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2)
  return float(max(fd, 0.0))


def frechet_distance(features1, features2) -> float:
  """Fréchet distance between the Gaussians fitted to two [N, D] feature sets."""
  a, b = feature_statistics(features1), feature_statistics(features2)
  if a.mu.shape != b.mu.shape:
    raise ValueError(f"Feature sets have different dimensions: {a.mu.shape[0]} vs {b.mu.shape[0]}.")
  return frechet_distance_from_stats(a.mu, a.sigma, b.mu, b.sigma)


def fd_name(dataset: str) -> str:
  """The name under which FD is reported: "FD (digits classifier)" — never "FID"."""
  return f"FD ({dataset} classifier)"
