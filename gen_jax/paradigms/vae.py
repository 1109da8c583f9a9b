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

Model fields (config.model): encoder ("conv" | "mlp"), channels (conv stages),
hidden (MLP widths), latent_dim, decoder, beta, eval_num_samples.
"""
from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.losses import elbo as elbo_lib
from gen_jax.losses.nll import bits_per_dim
from gen_jax.nets.conv import ConvDecoder, ConvEncoder, check_divisible, to_unit_range
from gen_jax.nets.mlp import MLP, flatten
from gen_jax.paradigms.base import Paradigm

DECODERS = ("categorical", "logistic", "bernoulli")


def _decoder_channels(decoder: str, num_levels: int, channels: int) -> int:
  return {"categorical": channels * num_levels, "logistic": 2 * channels,
          "bernoulli": channels}[decoder]


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


def make(model_config, info) -> Paradigm:
  """Builds the VAE paradigm for image data described by `info`."""
  if info.kind != "image":
    raise ValueError(f"The vae paradigm models images; dataset {info.name!r} holds "
                     f"{info.kind}. Use an image dataset (digits, mnist_idx, ...).")
  decoder = model_config.get("decoder", "categorical")
  if decoder not in DECODERS:
    raise ValueError(f"Unknown model.decoder {decoder!r}; use one of {DECODERS}.")
  levels = info.num_levels
  if decoder == "bernoulli" and levels != 2:
    raise ValueError(f"model.decoder='bernoulli' needs binary data but {info.name!r} has "
                     f"{levels} levels; set --config.preprocess=binarize or another decoder.")
  h, w, c = info.shape
  encoder_type = model_config.get("encoder", "conv")
  channels = tuple(model_config.get("channels", (32, 64)))
  if encoder_type == "conv":
    check_divisible(info.shape, len(channels), "vae")
  net = VAENet(image_shape=(h, w, c), latent_dim=model_config.latent_dim,
               out_channels=_decoder_channels(decoder, levels, c),
               encoder_type=encoder_type, channels=channels,
               hidden=tuple(model_config.get("hidden", (256, 256))))
  beta = float(model_config.get("beta", 1.0))
  eval_k = int(model_config.get("eval_num_samples", 1))
  num_dims = info.num_dims

  def log_px_given_z(out, x):
    """log p(x | z) on the data's levels; out [..., B, H, W, C'] -> [..., B]."""
    lead = out.shape[:-4]
    out = out.reshape(-1, *out.shape[-3:])
    xs = jnp.broadcast_to(x, (*lead, *x.shape)).reshape(-1, *x.shape[1:])
    if decoder == "categorical":
      ll = elbo_lib.categorical_log_likelihood(out.reshape(*out.shape[:-1], c, levels), xs)
    elif decoder == "logistic":
      mean, log_scale = jnp.split(out, 2, axis=-1)
      ll = elbo_lib.discretized_logistic_log_likelihood(
          jnp.tanh(mean), jnp.maximum(log_scale, -7.0), xs, levels)
    else:
      ll = elbo_lib.bernoulli_log_likelihood(out, xs)
    return ll.reshape(lead + x.shape[:1])

  def init(rng, batch):
    x = to_unit_range(batch["image"][:1], levels)
    return net.init(rng, x, jnp.zeros((1, model_config.latent_dim)))["params"]

  def posterior(params, batch):
    x_levels = batch["image"]
    chex.assert_rank(x_levels, 4)
    mean, logvar = net.apply({"params": params}, to_unit_range(x_levels, levels),
                             method=VAENet.encode)
    return x_levels, mean, logvar

  def loss(params, batch, rng):
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

  def sample(params, rng, num, temperature=1.0, decode="mean"):
    """z ~ N(0, temperature^2 I), then x = E[x|z] ("mean") or x ~ p(x|z) ("sample")."""
    key_z, key_x = jax.random.split(rng)
    z = temperature * jax.random.normal(key_z, (num, model_config.latent_dim))
    out = net.apply({"params": params}, z, method=VAENet.decode)
    if decoder == "categorical":
      logits = out.reshape(num, h, w, c, levels)
      if decode == "sample":
        x = jax.random.categorical(key_x, logits).astype(jnp.float32)
      else:
        x = jnp.sum(jax.nn.softmax(logits) * jnp.arange(levels), axis=-1)
      return x / (levels - 1)
    if decoder == "logistic":
      mean, log_scale = jnp.split(out, 2, axis=-1)
      mean = jnp.tanh(mean)
      if decode == "sample":
        u = jax.random.uniform(key_x, mean.shape, minval=1e-5, maxval=1 - 1e-5)
        mean = mean + jnp.exp(jnp.maximum(log_scale, -7.0)) * (jnp.log(u) - jnp.log1p(-u))
      return jnp.clip((mean + 1) / 2, 0.0, 1.0)
    probs = jax.nn.sigmoid(out)
    if decode == "sample":
      probs = jax.random.bernoulli(key_x, probs).astype(jnp.float32)
    return probs

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=False)
