r"""How well a stage 1 (a tokenizer: VQ-VAE codes, VAE latents) reconstructs, and how it uses
its codes.

    row, recon = stage1_scores(stage1, test_levels, train_levels, classifier.reference("digits"))

`stage1` is duck-typed as `gen_jax.workdir.Stage1`: encode(levels) -> codes, decode(codes) ->
images in [0, 1], decoder_log_likelihood(codes, levels) -> log p(x | code) [B] in nats,
info, config, workdir, step. The scores, on images x (levels) with code(x) = encode(x):
  * recon bits/dim: -log2 p(x | code(x)) per sub-pixel on the data's levels, the decoder's
    term of the two-stage bound -log p(x) <= -log p(x | z) - log p(z);
  * recon MSE: the mean squared error of decode(code(x)) against x in [0, 1];
  * recon FD: FD of the reconstructions against the reference images (what the decoder
    loses: a floor for the FD of any prior over its codes);
  * for integer codes, their usage over `train_images`: the perplexity exp(H(p)) of the code
    frequencies p (K when uniform, of K codes) and the dead codes (never used).
"""
from __future__ import annotations

import math

import jax
import numpy as np

from gen_jax.eval import features


def _batched(fn, *arrays, size=500):
  return np.concatenate([np.asarray(fn(*(a[i:i + size] for a in arrays)))
                         for i in range(0, len(arrays[0]), size)])


def code_usage(codes, num_codes: int) -> dict:
  """{'num_codes', 'code_perplexity': exp(-sum p log p) of the codes' frequencies,
  'dead_codes': codes never used}."""
  counts = np.bincount(np.asarray(codes).reshape(-1), minlength=num_codes)
  freq = counts[counts > 0] / counts.sum()
  return {"num_codes": num_codes, "code_perplexity": float(np.exp(-np.sum(freq * np.log(freq)))),
          "dead_codes": int(np.sum(counts == 0))}


def stage1_scores(stage1, images, train_images, reference) -> tuple:
  """(row, reconstructions of the first 64 `images`): the scores above of a stage-1 run on
  `images` (levels), code usage over `train_images`, FD against `reference`
  (`gen_jax.eval.classifier.Reference`)."""
  encode, decode = jax.jit(stage1.encode), jax.jit(stage1.decode)
  log_p = jax.jit(stage1.decoder_log_likelihood)
  codes = _batched(encode, images)
  recon, ll = _batched(decode, codes), _batched(log_p, codes, images)
  info = stage1.info
  row = {"workdir": stage1.workdir, "paradigm": stage1.config.paradigm, "step": stage1.step,
         "recon_bits_per_dim": float(-ll.mean() / (info.num_dims * math.log(2.0))),
         "recon_mse": float(np.mean((recon - features.levels_to_unit(images, info.num_levels)) ** 2)),
         "recon " + reference.fd_name: reference.scores(recon)[reference.fd_name]}
  train_codes = _batched(encode, train_images)
  if np.issubdtype(train_codes.dtype, np.integer):
    row.update(code_usage(train_codes, int(stage1.config.model.num_codes)))
  return row, recon[:64]
