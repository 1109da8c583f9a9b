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
  -log p(x_t | x_<t) = logsumexp_v(logits_v) - logits_{x_t}.
  """
  logits = logits.astype(jnp.float32)
  lse = jax.nn.logsumexp(logits, axis=-1)
  picked = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
  return lse - picked


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
