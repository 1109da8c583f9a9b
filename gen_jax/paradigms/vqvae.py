r"""VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning",
arXiv:1711.00937): a conv encoder to a grid of D-dim vectors, each replaced by
its nearest of K codebook entries (straight-through gradients), and a conv
decoder to p(x | z_q) over the data's levels (the VAE's decoders: categorical,
discretized logistic or Bernoulli; `gen_jax.losses.elbo`).

loss = -log p(x | z_q) + [codebook loss] + beta * commitment  (`gen_jax.losses.vq`),
per image, in nats. The codebook learns by one of (model.codebook_update):
  * "ema": exponential moving averages of the encoder outputs assigned to each
    entry, with random restarts of entries whose EMA usage falls below
    model.dead_code_threshold. This state (params["codebook"]) is not trained
    by the optimizer: the paradigm declares it `non_trainable` and updates it
    in `post_update`, once per step, from the encoder outputs of the step's
    batch under the freshly updated encoder.
  * "loss": the codebook loss ||sg[z_e] - z_q||^2 by gradient descent.

Metrics: recon (nats per image) and recon_bits_per_dim (-log2 p(x | z_q) per
sub-pixel), commitment, perplexity (exp of the entropy of the batch's code
usage: the effective number of codes), dead_codes (codes no grid position of
the batch chose).

The VQ-VAE alone is a model of x only with a prior over codes. As in the
paper (Sec. 3.2), the prior is uniform while the VQ-VAE trains, and with the
deterministic encoder the ELBO is log p(x | z_q(x)) - h w log K: that is
`log_likelihood` (a bound, `likelihood_is_exact=False`), and `sample` draws
from that same model (uniform codes, decoded): such samples are not meant to
look like data. A learned prior over the codes (`vq_gpt`, `maskgit`) replaces
the uniform one and gives both real samples and a tighter bound.

As a stage-1 tokenizer (`gen_jax.workdir`): encode -> int32 codes
[B, h, w], decode -> E[x | z_q] in [0, 1], decoder_log_likelihood = log p(x | z_q).

Model fields (config.model): `Fields` below (channels: stride-2 stages, h = H / 2^len;
dead_code_threshold 0 = no restarts).
"""
from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.losses import elbo as elbo_lib
from gen_jax.losses import vq as vq_lib
from gen_jax.losses.nll import bits_per_dim
from gen_jax.nets.conv import check_divisible, to_unit_range
from gen_jax.nets.vq import VQVAENet, lookup, nearest_code, straight_through
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.paradigms.vae import check_image_decoder

CODEBOOK_UPDATES = ("ema", "loss")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields:
  """vqvae's config.model fields, with their defaults."""
  channels: tuple[int, ...] = (64,)  # stride-2 conv stages: 8x8 -> 4x4 code grid
  code_dim: int = 16                 # D of each codebook entry
  num_codes: int = 64                # K
  decoder: str = "categorical"       # categorical | logistic | bernoulli, as the VAE's
  beta: float = 0.25                 # commitment weight
  codebook_update: str = "ema"       # ema (with dead-code restarts) | loss (codebook loss)
  codebook_decay: float = 0.99       # gamma of the EMA codebook
  dead_code_threshold: float = 0.5   # restart codes whose EMA usage per batch is below this


def make(model_config, info) -> Paradigm:
  """Builds the VQ-VAE for image data described by `info`."""
  fields = parse_model_config(Fields, model_config)
  decoder = fields.decoder
  check_image_decoder(info, decoder, "vqvae")
  levels = info.num_levels
  update = fields.codebook_update
  if update not in CODEBOOK_UPDATES:
    raise UserError(f"Unknown model.codebook_update {update!r}; use one of {CODEBOOK_UPDATES}.")
  channels = tuple(fields.channels)
  check_divisible(info.shape, len(channels), "vqvae")
  h, w, c = info.shape
  grid = (h // 2 ** len(channels), w // 2 ** len(channels))
  num_codes, code_dim = int(fields.num_codes), int(fields.code_dim)
  beta = float(fields.beta)
  decay = float(fields.codebook_decay)
  threshold = float(fields.dead_code_threshold)
  net = VQVAENet(channels=channels, code_dim=code_dim,
                 out_channels=elbo_lib.decoder_channels(decoder, levels, c))
  num_dims = info.num_dims
  log_num_codes = math.prod(grid) * math.log(num_codes)     # -log of the uniform prior over codes

  def encoder_out(params, x_levels):
    chex.assert_rank(x_levels, 4)
    return net.apply({"params": params["net"]}, to_unit_range(x_levels, levels),
                     method=VQVAENet.encode)

  def decoder_out(params, z_q):
    return net.apply({"params": params["net"]}, z_q, method=VQVAENet.decode)

  def init(rng, batch):
    """Network params, and the codebook at encoder outputs of the batch (data-dependent)."""
    key_net, key_pick = jax.random.split(rng)
    x = batch["image"]
    params = {"net": net.init(key_net, to_unit_range(x, levels))["params"]}
    z_e = encoder_out(params, x).reshape(-1, code_dim)
    pick = jax.random.randint(key_pick, (num_codes,), 0, z_e.shape[0])
    noise = 0.01 * jax.random.normal(jax.random.fold_in(key_pick, 1), (num_codes, code_dim))
    codebook = {"embedding": z_e[pick] + noise}
    if update == "ema":
      codebook["ema_count"] = jnp.ones((num_codes,), jnp.float32)
      codebook["ema_sum"] = codebook["embedding"]
    params["codebook"] = codebook
    return params

  def quantize(params, x_levels):
    """(z_e [B, h, w, D], codes int32 [B, h, w], z_q [B, h, w, D])."""
    z_e = encoder_out(params, x_levels)
    codebook = params["codebook"]["embedding"]
    codes = nearest_code(z_e, codebook)
    return z_e, codes, lookup(codebook, codes)

  def loss(params, batch, rng):
    del rng
    x = batch["image"]
    z_e, codes, z_q = quantize(params, x)
    recon = -elbo_lib.decoder_log_likelihood(decoder, decoder_out(params, straight_through(z_e, z_q)),
                                             x, levels)
    commit = vq_lib.commitment_loss(z_e, z_q)
    total = recon + beta * commit
    if update == "loss":
      total = total + vq_lib.codebook_loss(z_e, z_q)
    chex.assert_shape(total, x.shape[:1])
    counts = vq_lib.code_counts(codes, num_codes)
    return total.mean(), {
        "recon": recon.mean(), "recon_bits_per_dim": bits_per_dim(recon.mean(), num_dims),
        "commitment": commit.mean(), "perplexity": vq_lib.perplexity(counts),
        "dead_codes": jnp.sum(counts == 0).astype(jnp.float32),
        "bits_per_dim": bits_per_dim(recon.mean() + log_num_codes, num_dims)}

  def post_update(params, batch, rng):
    """EMA codebook step (and restarts) from this batch's encoder outputs."""
    z_e, codes, _ = quantize(params, batch["image"])
    z_e = jax.lax.stop_gradient(z_e)
    return {**params, "codebook": vq_lib.ema_codebook_step(rng, params["codebook"], z_e, codes,
                                                           decay, threshold)}

  def encode(params, x_levels):
    """Images (levels) -> int32 codes [B, h, w]."""
    return quantize(params, jnp.asarray(x_levels))[1]

  def decode(params, codes):
    """int codes [B, h, w] -> E[x | z_q] in [0, 1], [B, H, W, C]."""
    z_q = lookup(params["codebook"]["embedding"], jnp.asarray(codes, jnp.int32))
    return elbo_lib.decoder_mean(decoder, decoder_out(params, z_q), levels)

  def decoder_log_likelihood(params, codes, x_levels):
    """log p(x | z_q(codes)) in nats per image [B] on the levels."""
    z_q = lookup(params["codebook"]["embedding"], jnp.asarray(codes, jnp.int32))
    return elbo_lib.decoder_log_likelihood(decoder, decoder_out(params, z_q),
                                           jnp.asarray(x_levels), levels)

  def log_likelihood(params, batch, rng=None):
    """log p(x | z_q(x)) - h w log K: the ELBO under the uniform code prior, nats [B] (a bound)."""
    x = batch["image"]
    return decoder_log_likelihood(params, encode(params, x), x) - log_num_codes

  def sample(params, rng, num):
    """Images from the uniform code prior (codes ~ U{0..K-1}^{h x w}, decoded): see the docstring."""
    return decode(params, jax.random.randint(rng, (num, *grid), 0, num_codes))

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=False, encode=encode, decode=decode,
                  decoder_log_likelihood=decoder_log_likelihood,
                  non_trainable=("codebook",) if update == "ema" else (),
                  post_update=post_update if update == "ema" else None)
