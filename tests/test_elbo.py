"""The ELBO and IWAE bounds against a linear-Gaussian model whose log p(x) is closed form.

p(z) = N(0, I_2), p(x | z) = N(W z + b, s^2 I_3) with orthogonal columns of W, so
p(x) = N(b, W W^T + s^2 I) and the exact posterior p(z | x) = N(m, S) has a
diagonal S = (I + W^T W / s^2)^-1, m = S W^T (x - b) / s^2: the diagonal-Gaussian
q of the VAE can represent it exactly.
"""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from gen_jax.losses import elbo as elbo_lib

S2 = 0.3 ** 2
Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 2)))
W = Q * np.array([1.5, 0.7])              # orthogonal columns: W^T W = diag(2.25, 0.49)
B = np.array([0.2, -0.1, 0.4])
X = np.random.default_rng(1).multivariate_normal(B, W @ W.T + S2 * np.eye(3), size=5)


def log_px():
  return scipy.stats.multivariate_normal(B, W @ W.T + S2 * np.eye(3)).logpdf(X)


def exact_posterior():
  cov = np.linalg.inv(np.eye(2) + W.T @ W / S2)
  mean = (X - B) @ W @ cov.T / S2
  return mean, np.broadcast_to(np.log(np.diag(cov)), mean.shape)


def log_px_given_z(z):  # z [..., B, 2] -> [..., B]
  mean = z @ W.T + B
  return -0.5 * jnp.sum(np.log(2 * np.pi * S2) + (X - mean) ** 2 / S2, axis=-1)


def test_single_sample_bound_equals_log_px_at_the_exact_posterior_for_every_sample():
  # log p(x, z) - log q(z | x) = log p(x) for every z when q is the true posterior.
  mean, logvar = exact_posterior()
  for seed in range(3):
    z = elbo_lib.reparameterize(jax.random.key(seed), jnp.asarray(mean), jnp.asarray(logvar), 1)
    bound = elbo_lib.iwae_bound(log_px_given_z(z), z, mean, logvar)
    np.testing.assert_allclose(bound, log_px(), rtol=1e-5, atol=1e-4)


def test_elbo_equals_log_px_at_the_exact_posterior():
  # With the KL in closed form the estimate is unbiased: its mean is log p(x).
  mean, logvar = exact_posterior()
  z = elbo_lib.reparameterize(jax.random.key(0), jnp.asarray(mean), jnp.asarray(logvar), 200_000)
  bound, _ = elbo_lib.elbo(log_px_given_z(z), mean, logvar)
  np.testing.assert_allclose(np.mean(bound, axis=0), log_px(), atol=0.01)


def test_elbo_gap_is_the_kl_to_the_true_posterior():
  mean, logvar = exact_posterior()
  q_mean, q_logvar = mean + 0.5, logvar + 0.7       # a worse posterior
  k = 200_000
  z = elbo_lib.reparameterize(jax.random.key(0), jnp.asarray(q_mean), jnp.asarray(q_logvar), k)
  bound, _ = elbo_lib.elbo(log_px_given_z(z), q_mean, q_logvar)   # [K, B]
  # KL(q || p(z|x)) between diagonal Gaussians, computed independently.
  vq, vp = np.exp(q_logvar), np.exp(logvar)
  kl = 0.5 * np.sum(np.log(vp / vq) + (vq + (q_mean - mean) ** 2) / vp - 1, axis=-1)
  np.testing.assert_allclose(np.mean(bound, axis=0), log_px() - kl, atol=0.02)
  assert np.all(np.mean(bound, axis=0) < log_px())


def test_iwae_bound_rises_towards_log_px_with_k():
  mean, logvar = exact_posterior()
  q_mean, q_logvar = mean + 0.5, logvar + 0.7
  estimates = []
  for k in (1, 10, 100, 2000):
    reps = 400 if k < 2000 else 20
    z = elbo_lib.reparameterize(jax.random.key(k), jnp.asarray(q_mean), jnp.asarray(q_logvar),
                                k * reps).reshape(k, reps, *q_mean.shape)
    ll = log_px_given_z(z)                                            # [K, R, B]
    bound = jax.vmap(lambda l, zz: elbo_lib.iwae_bound(l, zz, q_mean, q_logvar),
                     in_axes=(1, 1))(ll, z)                            # [R, B]
    estimates.append(np.mean(bound, axis=0))
  estimates = np.array(estimates)
  assert np.all(np.diff(estimates, axis=0) > 0), estimates
  assert np.all(estimates < log_px()[None] + 0.01)
  np.testing.assert_allclose(estimates[-1], log_px(), atol=0.05)


def test_gaussian_kl_matches_monte_carlo():
  mean, logvar = jnp.array([[0.3, -1.0]]), jnp.array([[0.2, -0.5]])
  z = elbo_lib.reparameterize(jax.random.key(0), mean, logvar, 400_000)
  mc = jnp.mean(elbo_lib.diag_gaussian_log_prob(z, mean, logvar)
                - elbo_lib.standard_normal_log_prob(z), axis=0)
  np.testing.assert_allclose(elbo_lib.gaussian_kl(mean, logvar), mc, atol=5e-3)


def test_discretized_decoders_are_normalised_over_the_levels():
  levels = 17
  k = jnp.arange(levels).reshape(1, levels)
  for mean, log_scale in [(0.1, -2.0), (-0.9, -4.0), (0.99, -6.5), (0.0, 1.0)]:
    m = jnp.full(k.shape, mean)
    s = jnp.full(k.shape, log_scale)
    per_level = jax.vmap(lambda kk: elbo_lib.discretized_logistic_log_likelihood(
        m[:, :1], s[:, :1], kk[None, None], levels))(k[0])
    np.testing.assert_allclose(jnp.sum(jnp.exp(per_level)), 1.0, atol=1e-4)
  logits = jax.random.normal(jax.random.key(0), (1, 4, levels))
  per_level = jax.vmap(lambda kk: elbo_lib.categorical_log_likelihood(
      logits[:, :1], jnp.full((1, 1), kk)))(jnp.arange(levels))
  np.testing.assert_allclose(jnp.sum(jnp.exp(per_level)), 1.0, atol=1e-5)


def test_bernoulli_log_likelihood_by_hand():
  logits = jnp.array([[0.0, 2.0]])
  x = jnp.array([[1, 0]])
  expected = np.log(0.5) + np.log(1 - 1 / (1 + np.exp(-2.0)))
  np.testing.assert_allclose(elbo_lib.bernoulli_log_likelihood(logits, x), [expected], rtol=1e-6)
  chex.assert_shape(elbo_lib.bernoulli_log_likelihood(logits, x), (1,))
