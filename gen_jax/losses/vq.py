r"""VQ-VAE objective, codebook learning rules and code-usage statistics.

Per example (van den Oord et al. 2017, arXiv:1711.00937, Eq. 3), with sg the
stop-gradient and z_q the nearest codebook entries of the encoder's grid z_e:

    L = -log p(x | z_q) + ||sg[z_e] - z_q||^2 + beta ||z_e - sg[z_q]||^2,

summed over the grid positions and code dimensions. The middle term (the
codebook loss) moves the codebook by gradient descent; alternatively the
codebook is the exponential moving average of the encoder outputs assigned to
each entry (ibid., Appendix A.1), with dead codes restarted at encoder outputs
(Dhariwal et al. 2020, Jukebox, arXiv:2005.00341, Sec. 3.3 "random restarts").
A multi-scale residual quantiser (VAR, arXiv:2404.02905) averages the codebook and
commitment terms over its scales' partial sums (`multiscale_vq_loss`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _sum_except_batch(x):
  return x.reshape(x.shape[0], -1).sum(axis=1)


def commitment_loss(z_e, z_q):
  r"""||z_e - sg[z_q]||^2 per example [B] (the encoder commits to its codes)."""
  return _sum_except_batch((z_e - jax.lax.stop_gradient(z_q)) ** 2)


def codebook_loss(z_e, z_q):
  r"""||sg[z_e] - z_q||^2 per example [B] (the codebook moves to the encoder outputs)."""
  return _sum_except_batch((jax.lax.stop_gradient(z_e) - z_q) ** 2)


def code_counts(indices, num_codes: int):
  """n_k: how many grid positions chose code k; int [...] -> float32 [K]."""
  return jnp.zeros((num_codes,), jnp.float32).at[indices.reshape(-1)].add(1.0)


def perplexity(counts):
  r"""exp(H(p)), p_k = n_k / sum n: the effective number of codes in use (1..K)."""
  p = counts / jnp.maximum(jnp.sum(counts), 1.0)
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


def ema_codebook_update(ema_count, ema_sum, z, indices, decay: float, epsilon: float = 1e-5):
  r"""One EMA step of the codebook (van den Oord et al. 2017, Appendix A.1, Eqs. 6-8).

      N_k <- gamma N_k + (1 - gamma) n_k,           n_k = #{i : k(i) = k}
      m_k <- gamma m_k + (1 - gamma) sum_{i: k(i)=k} z_i
      e_k  = m_k / N~_k,  N~_k = (N_k + eps) / (N + K eps) N,  N = sum_k N_k

  (N~ is the Laplace-smoothed count of Sonnet's VectorQuantizerEMA, so an
  unused entry does not divide by zero.) z [..., D] are the encoder outputs and
  indices [...] their codes. Returns (ema_count [K], ema_sum [K, D], codebook [K, D]).
  """
  num_codes = ema_count.shape[0]
  z = z.reshape(-1, z.shape[-1])
  one_hot = jax.nn.one_hot(indices.reshape(-1), num_codes, dtype=z.dtype)   # [N, K]
  ema_count = decay * ema_count + (1.0 - decay) * one_hot.sum(axis=0)
  ema_sum = decay * ema_sum + (1.0 - decay) * one_hot.T @ z
  total = jnp.sum(ema_count)
  smoothed = (ema_count + epsilon) / (total + num_codes * epsilon) * total
  return ema_count, ema_sum, ema_sum / smoothed[:, None]


def restart_dead_codes(rng, ema_count, ema_sum, codebook, z, threshold: float):
  r"""Random restarts: every entry whose EMA count N_k is below `threshold`
  becomes a random encoder output z_j of the batch (e_k = m_k = z_j, N_k = 1).

  z [..., D]. Returns (ema_count, ema_sum, codebook, dead [K] bool).
  """
  z = z.reshape(-1, z.shape[-1])
  dead = ema_count < threshold
  pick = z[jax.random.randint(rng, (codebook.shape[0],), 0, z.shape[0])]
  codebook = jnp.where(dead[:, None], pick, codebook)
  ema_sum = jnp.where(dead[:, None], pick, ema_sum)
  ema_count = jnp.where(dead, 1.0, ema_count)
  return ema_count, ema_sum, codebook, dead


def ema_codebook_step(rng, codebook: dict, z, indices, decay: float, threshold: float) -> dict:
  """The codebook params {"embedding", "ema_count", "ema_sum"} after one `ema_codebook_update`
  from encoder outputs z [..., D] and their codes `indices` [...], then `restart_dead_codes`
  when `threshold` > 0: a VQ paradigm's `post_update`."""
  count, total, embedding = ema_codebook_update(codebook["ema_count"], codebook["ema_sum"], z,
                                                indices, decay)
  if threshold > 0:
    count, total, embedding, _ = restart_dead_codes(rng, count, total, embedding, z, threshold)
  return {"embedding": embedding, "ema_count": count, "ema_sum": total}


def multiscale_vq_loss(f, partial_sums):
  r"""The quantiser terms of a multi-scale residual VQ-VAE (VAR, Tian et al. 2024,
  arXiv:2404.02905, Sec. 3.2; as its VectorQuantizer2, averaged over the K scales):

      codebook   = (1/K) sum_k ||sg[f] - f_hat_k||^2,
      commitment = (1/K) sum_k ||f - sg[f_hat_k]||^2,

  f_hat_k = sum_{j<=k} phi_j(up(z(r_j))) the partial sums (`gen_jax.nets.vq.multiscale_quantize`).
  The codebook term trains the codebook and the phi_k (whose only gradient it is: the decoder
  reads f_hat with straight-through gradients to f); the commitment term the encoder.
  f [B, h, w, D], partial_sums [K x [B, h, w, D]] -> (codebook [B], commitment [B]).
  """
  num = len(partial_sums)
  codebook = sum(codebook_loss(f, f_hat_k) for f_hat_k in partial_sums) / num
  commitment = sum(commitment_loss(f, f_hat_k) for f_hat_k in partial_sums) / num
  return codebook, commitment
