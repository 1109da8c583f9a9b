r"""Adversarial losses: the two players' objectives and the discriminator penalties.

Every loss takes discriminator *logits* (unbounded real scores, one per example)
on real data, ``real_logits`` [B], and on generated data, ``fake_logits`` [B],
and returns a scalar averaged over the batch. The discriminator D minimises
``*_d_loss``; the generator G minimises ``*_g_loss``. Notation: σ is the
logistic sigmoid, softplus(t) = log(1 + e^t), so -log σ(t) = softplus(-t) and
-log(1 - σ(t)) = softplus(t).

* Non-saturating GAN (Goodfellow et al. 2014, arXiv:1406.2661):
    L_D = E_x[-log σ(D(x))] + E_z[-log(1 - σ(D(G(z))))]
        = E_x softplus(-D(x)) + E_z softplus(D(G(z)))
    L_G = E_z[-log σ(D(G(z)))] = E_z softplus(-D(G(z)))
  (the "-log D" trick of Sec. 3 in place of minimising log(1 - σ(D(G(z))))).
* Hinge (Lim & Ye 2017, arXiv:1705.02894; Miyato et al. 2018, arXiv:1802.05957):
    L_D = E_x max(0, 1 - D(x)) + E_z max(0, 1 + D(G(z)))
    L_G = -E_z D(G(z))
* Wasserstein (Arjovsky et al. 2017, arXiv:1701.07875), needs a Lipschitz
  critic, e.g. the gradient penalty below (WGAN-GP, Gulrajani et al. 2017,
  arXiv:1704.00028) or spectral normalisation:
    L_D = E_z D(G(z)) - E_x D(x)
    L_G = -E_z D(G(z))
* Least squares (Mao et al. 2017, arXiv:1611.04076, Eq. 2 with a=0, b=c=1):
    L_D = 1/2 E_x (D(x) - 1)^2 + 1/2 E_z D(G(z))^2
    L_G = 1/2 E_z (D(G(z)) - 1)^2

Penalties on the discriminator, added to any L_D:
* gradient penalty (Gulrajani et al. 2017, arXiv:1704.00028, Eq. 3):
    GP = E_{x̂} (||∇_x̂ D(x̂)||_2 - 1)^2,  x̂ = ε x + (1 - ε) G(z),  ε ~ U[0, 1]
  per example; the paper's weight is λ = 10.
* R1 (Mescheder et al. 2018, arXiv:1801.04406, Eq. 9):
    R1 = E_x ||∇_x D(x)||_2^2   on real data only, added as (γ / 2) R1.

The penalties take the discriminator as a function ``d_fn: x [B, ...] -> [B]``
that treats examples independently (no batch statistics), so that the gradient
of ``sum(d_fn(x))`` with respect to x holds each example's own gradient.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from gen_jax.errors import UserError


# ----------------------------------------------------------------- the losses

def non_saturating_d_loss(real_logits, fake_logits):
  """E softplus(-D(x)) + E softplus(D(G(z))) (Goodfellow et al. 2014)."""
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def non_saturating_g_loss(fake_logits):
  """E softplus(-D(G(z))) = E[-log σ(D(G(z)))] (Goodfellow et al. 2014, Sec. 3)."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def hinge_d_loss(real_logits, fake_logits):
  """E max(0, 1 - D(x)) + E max(0, 1 + D(G(z))) (Lim & Ye 2017; Miyato et al. 2018)."""
  return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_g_loss(fake_logits):
  """-E D(G(z)) (Lim & Ye 2017; Miyato et al. 2018)."""
  return -jnp.mean(fake_logits)


def wasserstein_d_loss(real_logits, fake_logits):
  """E D(G(z)) - E D(x): the negated Kantorovich-Rubinstein estimate (Arjovsky et al. 2017)."""
  return jnp.mean(fake_logits) - jnp.mean(real_logits)


def wasserstein_g_loss(fake_logits):
  """-E D(G(z)) (Arjovsky et al. 2017)."""
  return -jnp.mean(fake_logits)


def least_squares_d_loss(real_logits, fake_logits):
  """1/2 E (D(x) - 1)^2 + 1/2 E D(G(z))^2 (Mao et al. 2017, a=0, b=1)."""
  return 0.5 * jnp.mean((real_logits - 1.0) ** 2) + 0.5 * jnp.mean(fake_logits ** 2)


def least_squares_g_loss(fake_logits):
  """1/2 E (D(G(z)) - 1)^2 (Mao et al. 2017, c=1)."""
  return 0.5 * jnp.mean((fake_logits - 1.0) ** 2)


class AdversarialLoss(NamedTuple):
  """The two players' objectives of one GAN formulation, as plain functions of logits.

  Attributes:
    d_loss: (real_logits [B], fake_logits [B]) -> scalar, minimised by D.
    g_loss: (fake_logits [B]) -> scalar, minimised by G; when ``g_sees_real`` it is
      (real_logits [B], fake_logits [B]) -> scalar, for objectives in which G's loss
      depends on D(x) too, such as the relativistic losses (Jolicoeur-Martineau 2018,
      arXiv:1807.00734), where G raises D(G(z)) relative to D(x).
    g_sees_real: whether ``g_loss`` takes the real logits as its first argument.

  A pair written outside the library trains with the GAN paradigm unchanged:
  ``gen_jax.paradigms.gan.make(config.model, info, adversarial_loss=pair)``.
  """
  d_loss: Callable
  g_loss: Callable
  g_sees_real: bool = False

  def generator_loss(self, real_logits, fake_logits):
    """L_G from both logits, whichever form ``g_loss`` takes."""
    if self.g_sees_real:
      return self.g_loss(real_logits, fake_logits)
    return self.g_loss(fake_logits)


NON_SATURATING = AdversarialLoss(non_saturating_d_loss, non_saturating_g_loss)
HINGE = AdversarialLoss(hinge_d_loss, hinge_g_loss)
WASSERSTEIN = AdversarialLoss(wasserstein_d_loss, wasserstein_g_loss)
LEAST_SQUARES = AdversarialLoss(least_squares_d_loss, least_squares_g_loss)

# The names a config may give as `config.model.loss`. 'wgan_gp' is the
# Wasserstein loss; the paradigm adds the gradient penalty for it.
_BY_NAME = {
    'non_saturating': NON_SATURATING,
    'hinge': HINGE,
    'wasserstein': WASSERSTEIN,
    'wgan_gp': WASSERSTEIN,
    'least_squares': LEAST_SQUARES,
}
LOSS_NAMES = tuple(_BY_NAME)


def get_adversarial_loss(name: str) -> AdversarialLoss:
  """The loss pair a config names; ValueError naming the choices otherwise."""
  if name not in _BY_NAME:
    raise UserError(
        f'Unknown adversarial loss {name!r}. Set config.model.loss to one of {LOSS_NAMES}.')
  return _BY_NAME[name]


# -------------------------------------------------------------- the penalties

def _per_example_grad_sq_norm(d_fn, x):
  """||∇_x D(x)||^2 for each example of x [B, ...] -> [B]."""
  grads = jax.grad(lambda v: jnp.sum(d_fn(v)))(x)
  return jnp.sum(jnp.reshape(grads, (x.shape[0], -1)) ** 2, axis=1)


def interpolate(real, fake, rng):
  """x̂ = ε real + (1 - ε) fake with one ε ~ U[0, 1] per example (WGAN-GP, Alg. 1)."""
  eps = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  return eps * real + (1.0 - eps) * fake


def gradient_penalty(d_fn, real, fake, rng):
  r"""E_{x̂} (||∇_x̂ D(x̂)||_2 - 1)^2 on random interpolates (Gulrajani et al. 2017, Eq. 3).

  Args:
    d_fn: x [B, ...] -> logits [B], examples treated independently.
    real, fake: [B, ...] real and generated examples (same shape).
    rng: key for the interpolation weights ε.
  Returns:
    the scalar penalty (multiply by λ, 10 in the paper, and add to L_D).
  """
  x_hat = interpolate(real, fake, rng)
  # sqrt(s + tiny) keeps the gradient finite where ∇D(x̂) = 0.
  norm = jnp.sqrt(_per_example_grad_sq_norm(d_fn, x_hat) + 1e-12)
  return jnp.mean((norm - 1.0) ** 2)


def r1_penalty(d_fn, real):
  r"""E_x ||∇_x D(x)||_2^2 on real data (Mescheder et al. 2018, Eq. 9); add (γ/2) R1 to L_D."""
  return jnp.mean(_per_example_grad_sq_norm(d_fn, real))
