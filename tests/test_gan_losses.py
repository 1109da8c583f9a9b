"""Adversarial losses and penalties against values computed by hand."""
from __future__ import annotations

import math

from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.losses import adversarial as adv

REAL = jnp.array([1.0, -2.0])
FAKE = jnp.array([0.5, 3.0])


def _softplus(t):
  return math.log1p(math.exp(t))


def test_non_saturating_matches_hand_computation():
  # L_D = mean(softplus(-1), softplus(2)) + mean(softplus(.5), softplus(3))
  #     = (0.31326 + 2.12693) / 2 + (0.97408 + 3.04859) / 2 = 3.23143
  expected_d = (_softplus(-1.0) + _softplus(2.0)) / 2 + (_softplus(0.5) + _softplus(3.0)) / 2
  assert expected_d == pytest.approx(3.231427, abs=1e-5)
  np.testing.assert_allclose(adv.non_saturating_d_loss(REAL, FAKE), expected_d, rtol=1e-6)
  # L_G = mean(-log sigmoid(.5), -log sigmoid(3)) = (0.47408 + 0.04859) / 2
  expected_g = (-math.log(1 / (1 + math.exp(-0.5))) - math.log(1 / (1 + math.exp(-3.0)))) / 2
  assert expected_g == pytest.approx(0.261331, abs=1e-5)
  np.testing.assert_allclose(adv.non_saturating_g_loss(FAKE), expected_g, rtol=1e-6)


def test_non_saturating_is_the_binary_cross_entropy():
  # -log sigmoid(r) - log(1 - sigmoid(f)) with probabilities, no softplus.
  sig = lambda t: 1.0 / (1.0 + np.exp(-np.asarray(t, np.float64)))
  bce = np.mean(-np.log(sig(REAL))) + np.mean(-np.log(1.0 - sig(FAKE)))
  np.testing.assert_allclose(adv.non_saturating_d_loss(REAL, FAKE), bce, rtol=1e-6)


def test_hinge_matches_hand_computation():
  # L_D = mean(max(0, 1-1), max(0, 1+2)) + mean(max(0, 1+.5), max(0, 1+3)) = 1.5 + 2.75
  np.testing.assert_allclose(adv.hinge_d_loss(REAL, FAKE), 4.25, rtol=1e-6)
  np.testing.assert_allclose(adv.hinge_g_loss(FAKE), -1.75, rtol=1e-6)
  # Beyond the margins (real > 1, fake < -1) the discriminator loss is exactly 0.
  assert float(adv.hinge_d_loss(jnp.array([1.5, 2.0]), jnp.array([-1.5, -3.0]))) == 0.0


def test_wasserstein_matches_hand_computation():
  # L_D = mean(fake) - mean(real) = 1.75 - (-0.5); L_G = -mean(fake)
  np.testing.assert_allclose(adv.wasserstein_d_loss(REAL, FAKE), 2.25, rtol=1e-6)
  np.testing.assert_allclose(adv.wasserstein_g_loss(FAKE), -1.75, rtol=1e-6)


def test_least_squares_matches_hand_computation():
  # L_D = .5 * mean(0^2, (-3)^2) + .5 * mean(.5^2, 3^2) = 2.25 + 2.3125
  np.testing.assert_allclose(adv.least_squares_d_loss(REAL, FAKE), 4.5625, rtol=1e-6)
  # L_G = .5 * mean((-.5)^2, 2^2) = 1.0625
  np.testing.assert_allclose(adv.least_squares_g_loss(FAKE), 1.0625, rtol=1e-6)


def test_config_names_give_the_loss_pairs():
  assert adv.get_adversarial_loss('hinge') is adv.HINGE
  assert adv.get_adversarial_loss('wgan_gp') is adv.WASSERSTEIN
  with pytest.raises(ValueError, match='config.model.loss'):
    adv.get_adversarial_loss('minimax')


# A tiny discriminator: x [B, 3] -> [B].
W = jnp.array([[0.3, -1.2], [0.7, 0.4], [-0.5, 0.9]])
V = jnp.array([1.5, -0.8])


def tiny_d(x):
  return jnp.tanh(x @ W) @ V


def test_interpolates_lie_on_the_segment():
  real = jax.random.normal(jax.random.key(0), (64, 3))
  fake = jax.random.normal(jax.random.key(1), (64, 3))
  x_hat = adv.interpolate(real, fake, jax.random.key(2))
  eps = (x_hat - fake) / (real - fake)      # one ε per example, the same in every coordinate
  np.testing.assert_allclose(eps, jnp.repeat(eps[:, :1], 3, axis=1), rtol=1e-4, atol=1e-5)
  assert bool(jnp.all((eps >= 0) & (eps <= 1)))
  assert float(jnp.std(eps[:, 0])) > 0.2   # not a constant


def test_gradient_penalty_matches_per_example_jax_grad():
  real = jax.random.normal(jax.random.key(0), (5, 3))
  fake = 2.0 + jax.random.normal(jax.random.key(1), (5, 3))
  rng = jax.random.key(3)
  x_hat = adv.interpolate(real, fake, rng)
  expected = 0.0
  for i in range(5):                          # one example at a time, scalar D
    g = jax.grad(lambda xi: tiny_d(xi[None])[0])(x_hat[i])
    expected += (float(jnp.linalg.norm(g)) - 1.0) ** 2 / 5
  np.testing.assert_allclose(adv.gradient_penalty(tiny_d, real, fake, rng), expected, rtol=1e-5)


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
  # D(x) = w.x has gradient w everywhere: GP = (||w|| - 1)^2 = (5 - 1)^2 = 16.
  w = jnp.array([3.0, 4.0])
  real = jax.random.normal(jax.random.key(0), (7, 2))
  fake = jax.random.normal(jax.random.key(1), (7, 2))
  np.testing.assert_allclose(adv.gradient_penalty(lambda x: x @ w, real, fake, jax.random.key(2)),
                             16.0, rtol=1e-6)


def test_r1_matches_per_example_jax_grad_and_closed_form():
  real = jax.random.normal(jax.random.key(0), (6, 3))
  expected = np.mean([float(jnp.sum(jax.grad(lambda xi: tiny_d(xi[None])[0])(real[i]) ** 2))
                      for i in range(6)])
  np.testing.assert_allclose(adv.r1_penalty(tiny_d, real), expected, rtol=1e-5)
  # D(x) = 1/2 x^T A x (A symmetric): grad = A x, R1 = mean ||A x||^2.
  a = jnp.array([[2.0, 0.5, 0.0], [0.5, 1.0, -1.0], [0.0, -1.0, 3.0]])
  quad = lambda x: 0.5 * jnp.einsum('bi,ij,bj->b', x, a, x)
  np.testing.assert_allclose(adv.r1_penalty(quad, real),
                             np.mean(np.sum((np.asarray(real) @ np.asarray(a)) ** 2, axis=1)),
                             rtol=1e-5)


def test_penalties_work_on_image_shaped_inputs_under_jit():
  w = jax.random.normal(jax.random.key(0), (4, 4, 1))
  d = lambda x: jnp.sum(x * w, axis=(1, 2, 3))     # linear: gradient w per example
  real = jax.random.normal(jax.random.key(1), (3, 4, 4, 1))
  fake = jax.random.normal(jax.random.key(2), (3, 4, 4, 1))
  gp = jax.jit(lambda r, f, k: adv.gradient_penalty(d, r, f, k))(real, fake, jax.random.key(3))
  np.testing.assert_allclose(gp, (float(jnp.linalg.norm(w)) - 1.0) ** 2, rtol=1e-5)
  np.testing.assert_allclose(jax.jit(lambda r: adv.r1_penalty(d, r))(real),
                             float(jnp.sum(w ** 2)), rtol=1e-5)


class LossVariantsTest(chex.TestCase):
  """The same hand-computed values with and without jit."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      ('non_saturating', adv.NON_SATURATING, 3.2314274, 0.2613321),
      ('hinge', adv.HINGE, 4.25, -1.75),
      ('wasserstein', adv.WASSERSTEIN, 2.25, -1.75),
      ('least_squares', adv.LEAST_SQUARES, 4.5625, 1.0625))
  def test_pair(self, pair, expected_d, expected_g):
    d, g = self.variant(lambda r, f: (pair.d_loss(r, f), pair.g_loss(f)))(REAL, FAKE)
    chex.assert_shape((d, g), ())
    np.testing.assert_allclose(d, expected_d, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g, expected_g, rtol=1e-6, atol=1e-7)
