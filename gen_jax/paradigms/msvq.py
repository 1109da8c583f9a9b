r"""Multi-scale residual VQ-VAE: the tokenizer of next-scale prediction (VAR: Tian, Jiang, Yuan,
Peng, Wang 2024, "Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale
Prediction", arXiv:2404.02905, Sec. 3.2, Algorithms 1 and 2). Stage 1 of `var`.

The encoder maps an image to a feature map f [h, w, D] (model.channels stride-2 stages, or none:
h = H, the image's own resolution). f is quantised at the scales r_1 < ... < r_K = h
(model.scales), each scale the residual the coarser ones left
(`gen_jax.nets.vq.multiscale_quantize`):

    r_k = Q(interpolate(f_rest, r_k x r_k)),   f_rest <- f_rest - phi_k(upsample(z(r_k), h x w)),

with the nearest entry of one codebook of K entries (`nearest_code`), area interpolation down,
bicubic up, and phi_k(z) = (1 - phi_mix) z + phi_mix Conv3x3_k(z). The decoder reads the sum
f_hat = sum_k phi_k(upsample(z(r_k))) with straight-through gradients to f, and gives p(x | f_hat)
over the data's levels (the VAE's decoders, `gen_jax.losses.elbo`).

loss = -log p(x | f_hat) + codebook + beta * commitment, per image in nats, the quantiser terms
averaged over the scales' partial sums (`gen_jax.losses.vq.multiscale_vq_loss`). The codebook
learns as vqvae's does (model.codebook_update): "ema", exponential moving averages of the
interpolated residuals assigned to each entry at every scale, with dead-code restarts (the
codebook term then trains only the phi_k), or "loss", by gradient descent on the codebook term.
Metrics: those of vqvae (recon, recon_bits_per_dim, commitment, perplexity and dead_codes over
all scales' codes, bits_per_dim under the uniform code prior).

As a stage-1 tokenizer (`gen_jax.workdir`): encode -> int32 codes [B, L], the token maps of all
scales flattened coarse to fine, row-major within a scale (L = sum_k r_k^2: 1 + 4 + 16 + 64 = 85
for 1, 2, 4, 8); decode -> E[x | f_hat(codes)] in [0, 1]; decoder_log_likelihood =
log p(x | f_hat(codes)). Alone it is a model of x with a uniform prior over the L codes:
log_likelihood = log p(x | f_hat(k(x))) - L log K (a bound) and sample decodes uniform codes,
as vqvae's (not meant to look like data; `var` learns the prior).

`tokenizer(model_config, info)` gives the pure functions `var` builds on (its inputs are the
stage-1 features of the coarser scales, `Tokenizer.next_scale_inputs`).
Model fields (config.model): `Fields` below; the scales must end at the feature map's size h
(H / 2^len(channels)).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import UserError
from gen_jax.losses import elbo as elbo_lib
from gen_jax.losses import vq as vq_lib
from gen_jax.losses.nll import bits_per_dim
from gen_jax.nets import vq as vq_nets
from gen_jax.nets.conv import check_divisible, to_unit_range
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.paradigms.vae import check_image_decoder
from gen_jax.paradigms.vqvae import CODEBOOK_UPDATES


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields:
  """msvq's config.model fields, with their defaults."""
  channels: tuple[int, ...] = ()     # stride-2 conv stages before f; () = f at the image's size
  width: int = 64                    # conv width of the encoder/decoder without stages
  code_dim: int = 16                 # D of each codebook entry
  num_codes: int = 64                # K, one codebook for every scale
  scales: tuple[int, ...] = (1, 2, 4, 8)   # r_1 < ... < r_K = h (the feature map's size)
  phi_mix: float = 0.5               # phi_k = (1 - phi_mix) id + phi_mix conv_k (VAR: 0.5)
  decoder: str = "categorical"       # categorical | logistic | bernoulli, as the VAE's
  beta: float = 0.25                 # commitment weight
  codebook_update: str = "ema"       # ema (with dead-code restarts) | loss (codebook loss)
  codebook_decay: float = 0.99       # gamma of the EMA codebook
  dead_code_threshold: float = 0.5   # restart codes whose EMA usage per batch is below this


def check_scales(scales, size: int, num_stages: int, image_shape) -> tuple[int, ...]:
  """The ladder as a tuple of ints, or a UserError naming the fix: positive, strictly
  increasing, ending at the feature map's size."""
  scales = tuple(int(r) for r in scales)
  stages = f"image {image_shape[0]}x{image_shape[1]} after {num_stages} stride-2 stage(s)"
  if not scales or any(r < 1 for r in scales) or any(a >= b for a, b in zip(scales, scales[1:])):
    raise UserError(f"model.scales={scales} is no ladder: give positive, strictly increasing "
                    f"sizes ending at the feature map's size {size} ({stages}), e.g. "
                    f"--config.model.scales='{_example_ladder(size)}'.")
  if scales[-1] != size:
    raise UserError(f"model.scales={scales} ends at {scales[-1]} but the feature map is "
                    f"{size}x{size} ({stages}): make the last scale {size}, e.g. "
                    f"--config.model.scales='{_example_ladder(size)}' (or change model.channels).")
  return scales


def _example_ladder(size: int) -> tuple[int, ...]:
  ladder, r = [], 1
  while r < size:
    ladder.append(r)
    r *= 2
  return (*ladder, size)


@dataclasses.dataclass(frozen=True, eq=False)
class Tokenizer:
  """The multi-scale residual quantiser of one msvq config, as pure functions of its params
  ({"net", "codebook"}). Codes are int32 [B, L] flattened coarse to fine (`flatten`)."""
  net: Any                    # gen_jax.nets.vq.MultiScaleVQNet
  scales: tuple[int, ...]
  size: tuple[int, int]       # (h, w) of the feature map
  code_dim: int
  num_codes: int
  levels: int
  decoder: str

  @property
  def lengths(self) -> tuple[int, ...]:
    """Tokens of each scale, r_k^2."""
    return tuple(r * r for r in self.scales)

  @property
  def offsets(self) -> tuple[int, ...]:
    """Position of each scale's first token in the flattened codes."""
    return tuple(int(o) for o in np.cumsum((0,) + self.lengths[:-1]))

  @property
  def num_tokens(self) -> int:
    return sum(self.lengths)

  def features(self, params, x_levels):
    """Images (levels) [B, H, W, C] -> the encoder's feature map f [B, h, w, D]."""
    chex.assert_rank(x_levels, 4)
    return self.net.apply({"params": params["net"]}, to_unit_range(x_levels, self.levels),
                          method=vq_nets.MultiScaleVQNet.encode)

  def phi(self, params, k: int, z):
    return self.net.apply({"params": params["net"]}, k, z, method=vq_nets.MultiScaleVQNet.phi)

  def decoder_out(self, params, f_hat):
    return self.net.apply({"params": params["net"]}, f_hat, method=vq_nets.MultiScaleVQNet.decode)

  def quantize(self, params, x_levels):
    """(f, codes per scale, residuals per scale, partial sums f_hat_k): `multiscale_quantize`."""
    f = self.features(params, x_levels)
    return (f, *vq_nets.multiscale_quantize(f, params["codebook"]["embedding"], self.scales,
                                            lambda k, z: self.phi(params, k, z)))

  def flatten(self, codes_per_scale):
    """[int [B, r_k, r_k]] -> int32 [B, L], coarse to fine."""
    return jnp.concatenate([c.reshape(c.shape[0], -1) for c in codes_per_scale],
                           axis=1).astype(jnp.int32)

  def split(self, codes):
    """int [B, L] -> [int32 [B, r_k, r_k]] per scale (UserError when L is not this ladder's)."""
    codes = jnp.asarray(codes, jnp.int32)
    if codes.ndim != 2 or codes.shape[1] != self.num_tokens:
      raise UserError(f"codes of shape {codes.shape} are not the {self.num_tokens} tokens of "
                      f"the scales {self.scales}: give int [B, {self.num_tokens}] (msvq encode).")
    return [codes[:, o:o + n].reshape(-1, r, r)
            for o, n, r in zip(self.offsets, self.lengths, self.scales)]

  def contribution(self, params, k: int, codes_k):
    """phi_k(upsample(z(r_k))) [B, h, w, D] of scale k's codes [B, r_k, r_k]."""
    return vq_nets.scale_contribution(params["codebook"]["embedding"], codes_k, self.size,
                                      lambda z: self.phi(params, k, z))

  def f_hat(self, params, codes):
    """codes [B, L] -> f_hat = sum_k phi_k(upsample(z(r_k))) [B, h, w, D]."""
    return sum(self.contribution(params, k, c) for k, c in enumerate(self.split(codes)))

  def next_scale_inputs(self, params, codes):
    r"""VAR's teacher-forcing inputs (its `idxBl_to_var_input`): for scales k = 2..K the
    coarser scales' sum interpolated to scale k, interpolate(sum_{j<k} phi_j(up(z(r_j))),
    r_k x r_k), flattened row-major: [B, L - r_1^2, D]."""
    per_scale = self.split(codes)
    f_hat, inputs = 0.0, []
    for k in range(1, len(self.scales)):
      f_hat = f_hat + self.contribution(params, k - 1, per_scale[k - 1])
      r = self.scales[k]
      inputs.append(vq_nets.resize_area(f_hat, (r, r)).reshape(f_hat.shape[0], r * r, -1))
    return jnp.concatenate(inputs, axis=1)

  def decode(self, params, codes):
    """codes [B, L] -> E[x | f_hat] in [0, 1], [B, H, W, C]."""
    return elbo_lib.decoder_mean(self.decoder, self.decoder_out(params, self.f_hat(params, codes)),
                                 self.levels)

  def decoder_log_likelihood(self, params, codes, x_levels):
    """log p(x | f_hat(codes)) in nats per image [B] on the levels."""
    return elbo_lib.decoder_log_likelihood(
        self.decoder, self.decoder_out(params, self.f_hat(params, codes)), jnp.asarray(x_levels),
        self.levels)


def tokenizer(model_config, info) -> Tokenizer:
  """The `Tokenizer` of an msvq config on image data `info` (scales checked)."""
  fields = parse_model_config(Fields, model_config)
  check_image_decoder(info, fields.decoder, "msvq")
  channels = tuple(fields.channels)
  if channels:
    check_divisible(info.shape, len(channels), "msvq")
  h, w, c = info.shape
  size = (h // 2 ** len(channels), w // 2 ** len(channels))
  if size[0] != size[1]:
    raise UserError(f"msvq quantises square maps r x r, and the feature map is {size[0]}x{size[1]} "
                    "(image not square): use a square image dataset.")
  scales = check_scales(fields.scales, size[0], len(channels), info.shape)
  net = vq_nets.MultiScaleVQNet(
      channels=channels, width=int(fields.width), code_dim=int(fields.code_dim),
      out_channels=elbo_lib.decoder_channels(fields.decoder, info.num_levels, c),
      num_scales=len(scales), phi_mix=float(fields.phi_mix))
  return Tokenizer(net=net, scales=scales, size=size, code_dim=int(fields.code_dim),
                   num_codes=int(fields.num_codes), levels=info.num_levels, decoder=fields.decoder)


def make(model_config, info) -> Paradigm:
  """Builds the multi-scale residual VQ-VAE for image data described by `info`."""
  fields = parse_model_config(Fields, model_config)
  update = fields.codebook_update
  if update not in CODEBOOK_UPDATES:
    raise UserError(f"Unknown model.codebook_update {update!r}; use one of {CODEBOOK_UPDATES}.")
  tok = tokenizer(fields, info)
  num_codes, code_dim, levels = tok.num_codes, tok.code_dim, info.num_levels
  beta, decay = float(fields.beta), float(fields.codebook_decay)
  threshold = float(fields.dead_code_threshold)
  num_dims = info.num_dims
  log_num_codes = tok.num_tokens * math.log(num_codes)   # -log of the uniform prior over codes

  def init(rng, batch):
    """Network params, and the codebook at interpolations of the batch's feature maps to every
    scale (data-dependent, as vqvae's)."""
    key_net, key_pick = jax.random.split(rng)
    x = batch["image"]
    params = {"net": tok.net.init(key_net, to_unit_range(x, levels))["params"]}
    f = tok.features(params, x)
    pool = jnp.concatenate([vq_nets.resize_area(f, (r, r)).reshape(-1, code_dim)
                            for r in tok.scales])
    pick = jax.random.randint(key_pick, (num_codes,), 0, pool.shape[0])
    noise = 0.01 * jax.random.normal(jax.random.fold_in(key_pick, 1), (num_codes, code_dim))
    codebook = {"embedding": pool[pick] + noise}
    if update == "ema":
      codebook["ema_count"] = jnp.ones((num_codes,), jnp.float32)
      codebook["ema_sum"] = codebook["embedding"]
    params["codebook"] = codebook
    return params

  def loss(params, batch, rng):
    del rng
    x = batch["image"]
    f, codes, _, partial_sums = tok.quantize(params, x)
    f_hat = vq_nets.straight_through(f, partial_sums[-1])
    recon = -elbo_lib.decoder_log_likelihood(fields.decoder, tok.decoder_out(params, f_hat), x,
                                             levels)
    codebook_term, commit = vq_lib.multiscale_vq_loss(f, partial_sums)
    total = recon + beta * commit + codebook_term
    chex.assert_shape(total, x.shape[:1])
    counts = vq_lib.code_counts(tok.flatten(codes), num_codes)
    return total.mean(), {
        "recon": recon.mean(), "recon_bits_per_dim": bits_per_dim(recon.mean(), num_dims),
        "commitment": commit.mean(), "codebook_loss": codebook_term.mean(),
        "perplexity": vq_lib.perplexity(counts),
        "dead_codes": jnp.sum(counts == 0).astype(jnp.float32),
        "bits_per_dim": bits_per_dim(recon.mean() + log_num_codes, num_dims)}

  def post_update(params, batch, rng):
    """EMA codebook step (and restarts) from this batch's residuals at every scale."""
    _, codes, residuals, _ = tok.quantize(params, batch["image"])
    z = jax.lax.stop_gradient(jnp.concatenate([r.reshape(-1, code_dim) for r in residuals]))
    indices = tok.flatten(codes).reshape(-1)
    return {**params, "codebook": vq_lib.ema_codebook_step(rng, params["codebook"], z, indices,
                                                           decay, threshold)}

  def encode(params, x_levels):
    """Images (levels) -> int32 codes [B, L], the scales' token maps coarse to fine."""
    return tok.flatten(tok.quantize(params, jnp.asarray(x_levels))[1])

  def decode(params, codes):
    """int codes [B, L] -> E[x | f_hat] in [0, 1], [B, H, W, C]."""
    return tok.decode(params, codes)

  def decoder_log_likelihood(params, codes, x_levels):
    """log p(x | f_hat(codes)) in nats per image [B] on the levels."""
    return tok.decoder_log_likelihood(params, codes, x_levels)

  def log_likelihood(params, batch, rng=None):
    """log p(x | f_hat(k(x))) - L log K: the ELBO under the uniform code prior, nats [B] (a bound)."""
    x = batch["image"]
    return decoder_log_likelihood(params, encode(params, x), x) - log_num_codes

  def sample(params, rng, num):
    """Images from the uniform code prior (L codes ~ U{0..K-1}, decoded): see the docstring."""
    return decode(params, jax.random.randint(rng, (num, tok.num_tokens), 0, num_codes))

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=False, encode=encode, decode=decode,
                  decoder_log_likelihood=decoder_log_likelihood,
                  non_trainable=("codebook",) if update == "ema" else (),
                  post_update=post_update if update == "ema" else None)
