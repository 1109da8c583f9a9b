r"""Variational autoencoder and beta-VAE (Kingma & Welling 2014, arXiv:1312.6114;
Higgins et al. 2017).

q(z|x) = N(mean(x), diag(exp(logvar(x)))), p(z) = N(0, I), and p(x|z) a
distribution over the data's own levels:
  * "categorical": an independent softmax over the L levels of every sub-pixel;
  * "logistic": the discretized logistic of PixelCNN++ over the L levels;
  * "bernoulli": binary data (L = 2; e.g. `preprocess="binarize"`).
loss = -ELBO (beta-weighted KL); log_likelihood = the ELBO (k = 1) or the
importance-weighted bound with k = model.eval_num_samples (Burda et al. 2016):
both are bounds on log P(x), never exact.

As a stage-1 tokenizer (`gen_jax.workdir`): encode = the posterior mean
E_q[z | x] [B, latent_dim], decode = E[x | z] in [0, 1], and
decoder_log_likelihood = log p(x | z).

Training objective: the ELBO with the closed-form KL (train_num_samples = 1),
or with model.train_num_samples = k > 1 the IWAE bound L_k itself (Burda et
al. 2016, arXiv:1509.00519, Eq. 8; k reparameterized samples z_j ~ q(z|x)),
loss = -L_k, computed by the same function as the evaluation bound.

Model fields (config.model): `Fields` below.
"""
from __future__ import annotations

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.losses import elbo as elbo_lib
from gen_jax.losses.nll import bits_per_dim
from gen_jax.nets.conv import ConvDecoder, ConvEncoder, check_divisible, to_unit_range
from gen_jax.nets.mlp import MLP, flatten
from gen_jax.paradigms.base import Paradigm, parse_model_config


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields:
  """vae's config.model fields, with their defaults."""
  encoder: str = "conv"              # conv | mlp
  channels: tuple[int, ...] = (32, 64)   # stride-2 conv stages (8x8 -> 4x4 -> 2x2)
  hidden: tuple[int, ...] = (256, 256)   # MLP widths when encoder == "mlp"
  latent_dim: int = 16
  decoder: str = "categorical"       # categorical | logistic | bernoulli (binarized data)
  beta: float = 1.0                  # beta-VAE weight on the KL
  eval_num_samples: int = 1          # k of the IWAE bound log_likelihood reports (1 = ELBO)
  train_num_samples: int = 1         # k > 1: train the IWAE bound L_k itself (beta must be 1)


class VAENet(nn.Module):
  """Encoder x -> (mean, logvar) and decoder z -> parameters of p(x|z)."""
  image_shape: tuple
  latent_dim: int
  out_channels: int
  encoder_type: str = "conv"
  channels: tuple = (32, 64)
  hidden: tuple = (256, 256)

  def setup(self):
    if self.encoder_type == "conv":
      self.encoder = ConvEncoder(self.channels, 2 * self.latent_dim)
      self.decoder = ConvDecoder(self.image_shape, self.channels, self.out_channels)
    else:
      h, w, _ = self.image_shape
      self.encoder = MLP((*self.hidden, 2 * self.latent_dim))
      self.decoder = MLP((*reversed(self.hidden), h * w * self.out_channels))

  def encode(self, x):
    h = self.encoder(x if self.encoder_type == "conv" else flatten(x))
    mean, logvar = jnp.split(h, 2, axis=-1)
    return mean, logvar

  def decode(self, z):
    """z [..., D] -> decoder outputs [..., H, W, out_channels]."""
    out = self.decoder(z.reshape(-1, z.shape[-1]))
    return out.reshape(*z.shape[:-1], *self.image_shape[:2], self.out_channels)

  def __call__(self, x, z):
    return self.encode(x), self.decode(z)


def check_image_decoder(info, decoder: str, paradigm: str) -> None:
  """UserError unless `info` holds images whose levels `decoder` can model (the decoders
  of gen_jax.losses.elbo, shared by vae and vqvae)."""
  if info.kind != "image":
    raise UserError(f"The {paradigm} paradigm models images; dataset {info.name!r} holds "
                     f"{info.kind}. Use an image dataset (digits, mnist_idx, ...).")
  elbo_lib.check_decoder(decoder, info.num_levels)


def make(model_config, info) -> Paradigm:
  """Builds the VAE paradigm for image data described by `info`."""
  fields = parse_model_config(Fields, model_config)
  decoder = fields.decoder
  check_image_decoder(info, decoder, "vae")
  levels = info.num_levels
  h, w, c = info.shape
  encoder_type = fields.encoder
  channels = tuple(fields.channels)
  if encoder_type == "conv":
    check_divisible(info.shape, len(channels), "vae")
  latent_dim = fields.latent_dim
  net = VAENet(image_shape=(h, w, c), latent_dim=latent_dim,
               out_channels=elbo_lib.decoder_channels(decoder, levels, c),
               encoder_type=encoder_type, channels=channels, hidden=tuple(fields.hidden))
  beta = float(fields.beta)
  eval_k = int(fields.eval_num_samples)
  train_k = int(fields.train_num_samples)
  if train_k < 1:
    raise UserError(f"model.train_num_samples must be >= 1, got {train_k}.")
  if train_k > 1 and beta != 1.0:
    raise UserError(f"model.train_num_samples={train_k} trains the IWAE bound, which has no beta; "
                     "set model.beta=1 or model.train_num_samples=1 (the beta-weighted ELBO).")
  num_dims = info.num_dims

  def log_px_given_z(out, x):
    """log p(x | z) on the data's levels; out [..., B, H, W, C'] -> [..., B]."""
    lead = out.shape[:-4]
    out = out.reshape(-1, *out.shape[-3:])
    xs = jnp.broadcast_to(x, (*lead, *x.shape)).reshape(-1, *x.shape[1:])
    ll = elbo_lib.decoder_log_likelihood(decoder, out, xs, levels)
    return ll.reshape(lead + x.shape[:1])

  def init(rng, batch):
    x = to_unit_range(batch["image"][:1], levels)
    return net.init(rng, x, jnp.zeros((1, latent_dim)))["params"]

  def posterior(params, batch):
    x_levels = batch["image"]
    chex.assert_rank(x_levels, 4)
    mean, logvar = net.apply({"params": params}, to_unit_range(x_levels, levels),
                             method=VAENet.encode)
    return x_levels, mean, logvar

  def loss(params, batch, rng):
    if train_k > 1:
      bound = log_likelihood(params, batch, rng, num_samples=train_k)
      return -bound.mean(), {"iwae_bound": bound.mean(),
                             "bits_per_dim": bits_per_dim(-bound.mean(), num_dims)}
    x, mean, logvar = posterior(params, batch)
    z = elbo_lib.reparameterize(rng, mean, logvar)
    out = net.apply({"params": params}, z, method=VAENet.decode)
    objective, terms = elbo_lib.elbo(log_px_given_z(out, x), mean, logvar, beta)
    chex.assert_shape(objective, x.shape[:1])
    bound = terms["recon"] - terms["kl"]          # the beta = 1 ELBO, a bound on log P(x)
    return -objective.mean(), {
        "recon": -terms["recon"].mean(), "kl": terms["kl"].mean(),
        "bits_per_dim": bits_per_dim(-bound.mean(), num_dims)}

  def log_likelihood(params, batch, rng, num_samples=eval_k):
    """ELBO (num_samples = 1) or IWAE bound L_k; nats per example, a bound."""
    x, mean, logvar = posterior(params, batch)
    z = elbo_lib.reparameterize(rng, mean, logvar, num_samples)       # [K, B, D]
    out = net.apply({"params": params}, z, method=VAENet.decode)
    return elbo_lib.iwae_bound(log_px_given_z(out, x), z, mean, logvar)

  def encode(params, x_levels):
    """The posterior mean E_q[z | x], float32 [B, latent_dim] (the VAE's latents for stage 2)."""
    return posterior(params, {"image": x_levels})[1]

  def decoder_log_likelihood(params, z, x_levels):
    """log p(x | z) in nats per example [B] on the data's levels."""
    return log_px_given_z(net.apply({"params": params}, z, method=VAENet.decode),
                          jnp.asarray(x_levels))

  def decode(params, z):
    """x = E[x | z] in [0, 1], [B, H, W, C] (the mean of the decoder over the levels)."""
    return elbo_lib.decoder_mean(decoder, net.apply({"params": params}, z, method=VAENet.decode),
                                 levels)

  def sample(params, rng, num, temperature=1.0, decode="mean"):
    """z ~ N(0, temperature^2 I), then x = E[x|z] ("mean") or x ~ p(x|z) ("sample")."""
    key_z, key_x = jax.random.split(rng)
    z = temperature * jax.random.normal(key_z, (num, latent_dim))
    out = net.apply({"params": params}, z, method=VAENet.decode)
    if decode == "sample":
      return elbo_lib.decoder_sample(decoder, key_x, out, levels)
    return elbo_lib.decoder_mean(decoder, out, levels)

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=False, encode=encode, decode=decode,
                  decoder_log_likelihood=decoder_log_likelihood)
