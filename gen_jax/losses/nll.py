r"""Negative log-likelihoods and their units, shared by the likelihood families.

Units. Every likelihood in gen_jax is reported on the data's own discrete
levels: a sub-pixel takes one of L values k = 0..L-1, so a uniform model scores
-log p(x) = D log L nats, i.e. log2(L) bits/dim (4.09 for the 17-level digits,
8 for 256-level MNIST). A model that works on rescaled data y = scale * x + shift
converts its density with the change of variables
log p(x) = log p(y) + D log|scale|.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from gen_jax import policy as policy_lib


def bits_per_dim(nll_nats, num_dims, scale=1.0):
  r"""NLL in nats of y = scale * x + shift -> bits per dimension of x.

  log p(x) = log p(y) + D log(scale), hence
  bits/dim(x) = (nll_y / D - log(scale)) / log(2).
  A uniform model on L levels (nll = D log L, scale = 1) gives log2(L).
  """
  return (nll_nats / num_dims - jnp.log(scale)) / jnp.log(2.0)


# --- Autoregressive next-token NLL (the autoregressive family) ---------------

def token_nll(logits, targets):
  r"""Per-token cross-entropy -log softmax(logits)[target] in nats.

  logits [..., V] float, targets [...] int -> [...] nats:
  -log p(x_t | x_<t) = logsumexp_v(logits_v) - logits_{x_t}, in float32.

  The gradient is written out, d/dlogits = softmax(logits) - onehot(target), with the
  softmax recomputed in the backward pass from the logits kept in the active compute dtype
  (`gen_jax.policy`): under bfloat16 the logits the network produced are bfloat16 (the
  policy upcasts them losslessly), so keeping them so loses nothing and halves the largest
  array a language model's backward pass holds ([B, T, V]); autodiff would keep the float32
  exp(logits - lse) instead.
  """
  return _token_nll(logits.astype(jnp.float32), targets.astype(jnp.int32))


@jax.custom_vjp
def _token_nll(logits, targets):
  lse = jax.nn.logsumexp(logits, axis=-1)
  return lse - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]


def _token_nll_fwd(logits, targets):
  lse = jax.nn.logsumexp(logits, axis=-1)
  nll = lse - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return nll, (logits.astype(policy_lib.current().compute_dtype), lse, targets)


def _token_nll_bwd(residuals, g):
  kept, lse, targets = residuals
  p = jnp.exp(kept.astype(jnp.float32) - lse[..., None])
  onehot = jax.nn.one_hot(targets, p.shape[-1], dtype=p.dtype)
  return (p - onehot) * g[..., None], None


_token_nll.defvjp(_token_nll_fwd, _token_nll_bwd)


def next_token_nll(logits, targets, token_mask=None, dims_per_token=1):
  r"""Mean next-token NLL of an autoregressive model, padded positions masked.

  -log p(x) = -\sum_t log p(x_t | x_<t) (the chain rule; exact likelihood).
  Returns (nats per token: the mean over tokens where `token_mask` is True,
  metrics) with metrics nats_per_token, bits_per_token and bits_per_dim
  (= bits per token / dims_per_token; a token is one dimension for text and for
  pixel tokens, so on L levels a uniform model gives log2(L)).

  Args:
    logits: [B, T, V] next-token logits (logits[:, t] predicts targets[:, t]).
    targets: int [B, T].
    token_mask: optional bool [B, T]; False marks padding that is not counted.
    dims_per_token: data dimensions one token stands for.
  """
  nll = token_nll(logits, targets)
  if token_mask is None:
    token_mask = jnp.ones(nll.shape, bool)
  w = token_mask.astype(jnp.float32)
  nats = jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1.0)
  bits = nats / jnp.log(2.0)
  return nats, {"nats_per_token": nats, "bits_per_token": bits,
                "bits_per_dim": bits / dims_per_token}


def sequence_log_likelihood(logits, targets, token_mask=None):
  """log p(x) = sum_t log p(x_t | x_<t) in nats per sequence, [B] (masked tokens skipped)."""
  nll = token_nll(logits, targets)
  if token_mask is not None:
    nll = jnp.where(token_mask, nll, 0.0)
  return -jnp.sum(nll, axis=-1)


# --- Normalizing flows: change of variables + uniform / variational dequantization

def standard_normal_log_prob(z):
  r"""log N(z; 0, I) = -|z|^2 / 2 - (D / 2) log(2 pi), summed over all axes but the first: [B, ...] -> [B]."""
  z = z.reshape(z.shape[0], -1)
  return jnp.sum(-0.5 * jnp.square(z) - 0.5 * jnp.log(2 * jnp.pi), axis=1)


def flow_log_prob(log_p_z, log_det):
  r"""Change of variables for a bijection z = f(y) (RealNVP, arXiv:1605.08803, eq. 3):

  log p_Y(y) = log p_Z(f(y)) + log|det df(y)/dy|.   [B], [B] -> [B] nats.
  """
  return log_p_z + log_det


def uniform_dequantize(rng, x_levels):
  r"""v = x + u, u ~ U[0, 1)^D: integer levels {0..L-1} -> float32 in [0, L)
  (Theis et al. 2016, arXiv:1511.01844; the same map as gen_jax.data.preprocess.dequantize,
  restated here because losses do not import the data layer)."""
  u = jax.random.uniform(rng, jnp.shape(x_levels), dtype=jnp.float32)
  return jnp.asarray(x_levels, jnp.float32) + u


def dequantized_log_likelihood(log_p_y, num_dims, scale):
  r"""Density of the dequantized levels v in [0, L)^D, from the density of y = scale * v + shift.

  log p_V(v) = log p_Y(y) + D log(scale)   (change of variables, per example, nats).

  With v = x + u, u ~ U[0, 1)^D, the discrete model P(x) = \int_{[0,1)^D} p_V(x + u) du
  satisfies, by Jensen,
      E_u[log p_V(x + u)] <= log P(x),
  so log p_V(x + u) for one draw of u is an unbiased estimate of a *lower bound* on the
  log-probability of the levels x, in nats on the data's own levels (a flow that is
  uniform on [0, L)^D gives -D log L, i.e. log2(L) bits/dim). The flow's density of v
  itself is exact; only its use for the discrete x is a bound.

  Args:
    log_p_y: [B] log-density of y under the flow (`flow_log_prob`).
    num_dims: D, the number of sub-pixels of one example.
    scale: the factor of y = scale * v + shift (1 / L for y in [0, 1) or [-1/2, 1/2)).
  """
  return log_p_y + num_dims * jnp.log(scale)


def variational_dequantization_bound(log_p_v, log_q_u):
  r"""The variational dequantization bound of Flow++ (Ho et al. 2019, arXiv:1902.00275, §3.1).

  With v = x + u, u ~ q(u | x) on [0, 1)^D, and P(x) = \int_{[0,1)^D} p_V(x + u) du,
      log P(x) = log E_q[p_V(x + u) / q(u | x)] >= E_q[log p_V(x + u) - log q(u | x)]
  (Jensen). The gap is KL(q(u | x) || p_V(x + u) / P(x)): it vanishes when q is the model's
  own conditional density of u in x's cell. Uniform dequantization is q = 1 (log q = 0).
  Returns the one-sample estimate log p_V(x + u) - log q(u | x), [B] nats.
  """
  return log_p_v - log_q_u


def dequantized_flow_nll(log_p_z, log_det, num_dims, num_levels, log_q_u=None):
  r"""Mean NLL of dequantized images under a flow of y with v / L = w, y = h(w) (h affine
  or logit, its log-determinant included in `log_det`).

  -log p_V(v) = -log p_Z(z) - log|det dz/dw| + D log L, averaged over the batch: a one-sample
  estimate of the upper bound -E_u log p_V(x + u) >= -log P(x) for u ~ U[0, 1)^D (see
  `dequantized_log_likelihood`), or, given `log_q_u` = log q(u | x) of a learned
  dequantizer, of -E_q[log p_V(x + u) - log q(u | x)] >= -log P(x)
  (`variational_dequantization_bound`). Returns (bits/dim on the data's levels,
  {'bits_per_dim', 'nll_nats'} with nll_nats per example, plus 'log_q_u_per_dim' with `log_q_u`).
  """
  log_p_v = dequantized_log_likelihood(flow_log_prob(log_p_z, log_det), num_dims, 1.0 / num_levels)
  metrics = {}
  if log_q_u is not None:
    log_p_v = variational_dequantization_bound(log_p_v, log_q_u)
    metrics["log_q_u_per_dim"] = jnp.mean(log_q_u) / num_dims
  nll = -jnp.mean(log_p_v)
  bpd = bits_per_dim(nll, num_dims)
  return bpd, {"bits_per_dim": bpd, "nll_nats": nll, **metrics}
