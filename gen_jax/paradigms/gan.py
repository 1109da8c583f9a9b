r"""GAN: a generator and a discriminator trained as two players.

Goodfellow et al. 2014 (arXiv:1406.2661) with the DCGAN architecture (Radford
et al. 2016, arXiv:1511.06434). The discriminator D minimises L_D and the
generator G minimises L_G, chosen by ``config.model.loss`` from
`gen_jax.losses.adversarial`:

  non_saturating  L_D = E softplus(-D(x)) + E softplus(D(G(z))),  L_G = E softplus(-D(G(z)))
  hinge           L_D = E relu(1 - D(x)) + E relu(1 + D(G(z))),   L_G = -E D(G(z))
  wasserstein     L_D = E D(G(z)) - E D(x),                       L_G = -E D(G(z))
  wgan_gp         wasserstein + λ E (||∇D(x̂)|| - 1)^2  (λ = ``gp_weight``, arXiv:1704.00028)
  least_squares   L_D = ½E (D(x) - 1)^2 + ½E D(G(z))^2,           L_G = ½E (D(G(z)) - 1)^2

and ``r1_gamma`` > 0 adds (γ/2) E_x ||∇_x D(x)||^2 to L_D for any loss
(Mescheder et al. 2018, arXiv:1801.04406). z ~ N(0, I_latent_dim).

A loss the library lacks needs no edit here: write it as an
`adversarial.AdversarialLoss` of two plain functions of the logits and pass it
as ``make(config.model, info, adversarial_loss=pair)`` (or ``build(...)``); it
replaces ``config.model.loss`` (R1 still follows ``r1_gamma``; the gradient
penalty belongs to the named 'wgan_gp' and is not added). Its ``g_loss`` may
read D(x) as well (``g_sees_real=True``), as relativistic losses do
(notebooks/02_your_own_loss.ipynb trains one).

The two-player contract (`gen_jax.paradigms.base`): params are
``{'generator': ..., 'discriminator': ...}``; ``loss`` is
``{'discriminator': fn, 'generator': fn}``, each fn(params, batch, rng) reading
the whole params dict, and the loop differentiates fn w.r.t. params[player]
only, updating the players in ``update_schedule`` order:
``('discriminator',) * n_critic + ('generator',)``. So the discriminator loss
reads G's parameters without training them, and vice versa.

Data scale: images are levels 0..L-1, mapped to [-1, 1] for both players
(x = 2k/(L-1) - 1; G ends in tanh) and back to [0, 1] by ``sample``; points
are modelled as they are.

There is no likelihood: ``log_likelihood`` is None. A GAN defines its density
only implicitly, as the push-forward of N(0, I) through G on a low-dimensional
manifold, so its quality is measured from samples (Fréchet distance,
precision/recall, mode coverage).

The conditional model (`gen_jax.paradigms.cgan`) is the same paradigm built by
`build(..., conditional=True)`: G takes a class embedding, D is a projection
discriminator (Miyato & Koyama 2018, arXiv:1802.05637), both sides use the
batch's labels.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import chex
import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.losses import adversarial
from gen_jax.nets import gan as gan_nets
from gen_jax.paradigms.base import Paradigm, parse_model_config

GENERATOR = 'generator'
DISCRIMINATOR = 'discriminator'

@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields:
  """The config.model fields of gan and cgan, with their defaults."""
  loss: str = 'non_saturating'      # non_saturating | hinge | wasserstein | wgan_gp | least_squares
  latent_dim: int = 64              # dimension of z ~ N(0, I)
  net: str = 'auto'                 # conv | mlp | auto (conv for images, mlp for points)
  g_channels: int = 64              # conv G: channels of the last upsampling stage (x2 before it)
  d_channels: int = 32              # conv D: channels of the first conv (x2 at each downsampling)
  num_upsamples: int = 2            # conv: stride-2 stages (8x8 from 2x2, 28x28 from 7x7)
  d_feature_dim: int = 128          # conv D: width of the feature layer φ(x) (projection space)
  g_hidden: tuple[int, ...] = (128, 128)   # mlp G hidden widths
  d_hidden: tuple[int, ...] = (128, 128)   # mlp D hidden widths
  spectral_norm: bool = False       # spectral normalisation of every D layer (arXiv:1802.05957)
  num_power_iters: int = 5          # power-iteration steps of the spectral norm
  n_critic: int = 1                 # discriminator updates per generator update
  gp_weight: float = 10.0           # λ of the gradient penalty, used by loss='wgan_gp'
  r1_gamma: float = 0.0             # γ of the R1 penalty (γ/2) E||∇D(x)||^2; 0 = off; any loss
  label_features: int = 16          # conditional G: size of the class embedding concatenated to z


def _check_info(info, net, num_upsamples, conditional):
  """Raises ValueError (cause + fix) when the data cannot be modelled."""
  kind = 'conditional GAN (cgan)' if conditional else 'GAN'
  if info.kind not in ('image', 'points'):
    raise UserError(
        f'The {kind} models images or 2-D points, but dataset {info.name!r} is {info.kind!r} '
        'data. Use an autoregressive paradigm for text, or pick an image/toy2d dataset.')
  if info.kind == 'points' and net == 'conv':
    raise UserError(
        f'config.model.net="conv" needs images, but {info.name!r} holds points of shape '
        f'{info.shape}. Set config.model.net="mlp" (or "auto").')
  if info.kind == 'image' and net == 'conv':
    if len(info.shape) != 3:
      raise UserError(f'Images must be [H, W, C]; dataset {info.name!r} has shape {info.shape}.')
    height, width, _ = info.shape
    factor = 2 ** num_upsamples
    if height % factor or width % factor or height < factor or width < factor:
      raise UserError(
          f'The conv GAN upsamples {num_upsamples} times (x{factor}), so H and W must be '
          f'multiples of {factor}, but {info.name!r} images are {height}x{width}. '
          f'Set config.model.num_upsamples to a value such that 2**num_upsamples divides '
          f'{height} and {width} (2 for 8x8 and 28x28), or config.model.net="mlp".')
  if net not in ('conv', 'mlp'):
    raise UserError(f'Unknown config.model.net {net!r}; use "conv", "mlp" or "auto".')
  if conditional and not info.num_classes:
    raise UserError(
        f'The conditional GAN needs class labels, but dataset {info.name!r} has none '
        '(num_classes is unset). Use the unconditional paradigm "gan", or a labelled dataset.')


def build(model_config, info, *, conditional: bool,
          adversarial_loss: Optional[adversarial.AdversarialLoss] = None) -> Paradigm:
  """The (conditional) GAN paradigm for `info`'s data, configured by `model_config`.

  Args:
    model_config: `config.model` (`Fields` above; missing fields take their defaults,
      unknown ones are refused).
    info: the dataset's `gen_jax.data.DatasetInfo`.
    conditional: class-conditional G and projection D, both fed batch['label'].
    adversarial_loss: the players' objectives; None takes the pair that
      `config.model.loss` names. A given pair replaces it (and the 'wgan_gp'
      gradient penalty); R1 still follows `r1_gamma`.
  Returns:
    a two-player `Paradigm` whose log_likelihood is None.
  """
  f = parse_model_config(Fields, model_config)
  net = f.net
  if net == 'auto':
    net = 'conv' if info.kind == 'image' else 'mlp'
  _check_info(info, net, f.num_upsamples, conditional)
  if adversarial_loss is None:
    loss_name = f.loss
    if loss_name not in adversarial.LOSS_NAMES:
      raise UserError(f'Unknown adversarial loss {loss_name!r}. Set config.model.loss to one '
                      f'of {adversarial.LOSS_NAMES}.')
    pair = adversarial.get_adversarial_loss(loss_name)
    gp_weight = float(f.gp_weight) if loss_name == 'wgan_gp' else 0.0
  else:
    pair, gp_weight = adversarial_loss, 0.0
  r1_gamma = float(f.r1_gamma)
  n_critic = int(f.n_critic)
  if n_critic < 1:
    raise UserError(f'config.model.n_critic must be >= 1, got {n_critic}.')
  latent_dim = int(f.latent_dim)
  num_classes = info.num_classes if conditional else None
  is_image = info.kind == 'image'
  data_shape = tuple(info.shape)

  if net == 'conv':
    generator = gan_nets.ConvGenerator(
        image_shape=data_shape, channels=f.g_channels, num_upsamples=f.num_upsamples,
        num_classes=num_classes, label_features=f.label_features)
    discriminator = gan_nets.ConvDiscriminator(
        channels=f.d_channels, num_downsamples=f.num_upsamples,
        feature_dim=f.d_feature_dim, spectral_norm=f.spectral_norm,
        num_classes=num_classes, num_power_iters=f.num_power_iters)
  else:
    generator = gan_nets.MLPGenerator(
        out_shape=data_shape, hidden=f.g_hidden, tanh_output=is_image,
        num_classes=num_classes, label_features=f.label_features)
    discriminator = gan_nets.MLPDiscriminator(
        hidden=f.d_hidden, spectral_norm=f.spectral_norm,
        num_classes=num_classes, num_power_iters=f.num_power_iters)

  def to_model_space(batch):
    """The batch's examples as the players see them: [-1, 1] images or raw points."""
    if is_image:
      x = batch['image']
      chex.assert_rank(x, 4)
      return x.astype(jnp.float32) * (2.0 / (info.num_levels - 1)) - 1.0
    x = batch['x']
    chex.assert_rank(x, 2)
    return x.astype(jnp.float32)

  def labels_of(batch):
    return batch['label'].astype(jnp.int32) if conditional else None

  def generate(g_params, z, label):
    return generator.apply({'params': g_params}, z, label)

  def discriminate(d_params, x, label):
    return discriminator.apply({'params': d_params}, x, label)

  def init(rng, example_batch):
    x = to_model_space(example_batch)
    # Shapes only: a shape-only example batch may come without labels.
    label = jnp.zeros((x.shape[0],), jnp.int32) if conditional else None
    g_rng, d_rng = jax.random.split(rng)
    z = jnp.zeros((x.shape[0], latent_dim), jnp.float32)
    return {GENERATOR: generator.init(g_rng, z, label)['params'],
            DISCRIMINATOR: discriminator.init(d_rng, x, label)['params']}

  def fake_batch(params, batch, rng):
    x_real = to_model_space(batch)
    label = labels_of(batch)
    z = jax.random.normal(rng, (x_real.shape[0], latent_dim), jnp.float32)
    x_fake = generate(params[GENERATOR], z, label)
    chex.assert_equal_shape([x_real, x_fake])
    return x_real, x_fake, label

  def discriminator_loss(params, batch, rng):
    """L_D (+ λ GP + γ/2 R1), differentiated by the loop w.r.t. params['discriminator']."""
    z_rng, gp_rng = jax.random.split(rng)
    x_real, x_fake, label = fake_batch(params, batch, z_rng)
    d_params = params[DISCRIMINATOR]
    d_fn = lambda x: discriminate(d_params, x, label)
    real_logits, fake_logits = d_fn(x_real), d_fn(x_fake)
    d_loss = pair.d_loss(real_logits, fake_logits)
    total = d_loss
    metrics = {'d_loss': d_loss,
               'd_real_logit': jnp.mean(real_logits),
               'd_fake_logit': jnp.mean(fake_logits)}
    if gp_weight > 0:
      gp = adversarial.gradient_penalty(d_fn, x_real, x_fake, gp_rng)
      total = total + gp_weight * gp
      metrics['d_gradient_penalty'] = gp
    if r1_gamma > 0:
      r1 = adversarial.r1_penalty(d_fn, x_real)
      total = total + 0.5 * r1_gamma * r1
      metrics['d_r1'] = r1
    metrics['d_total'] = total
    return total, metrics

  def generator_loss(params, batch, rng):
    """L_G, differentiated by the loop w.r.t. params['generator']."""
    z_rng, _ = jax.random.split(rng)
    x_real, x_fake, label = fake_batch(params, batch, z_rng)
    fake_logits = discriminate(params[DISCRIMINATOR], x_fake, label)
    # D(x) costs a forward pass: only for objectives that read it (relativistic ones).
    real_logits = discriminate(params[DISCRIMINATOR], x_real, label) if pair.g_sees_real else None
    g_loss = pair.generator_loss(real_logits, fake_logits)
    return g_loss, {'g_loss': g_loss, 'g_fake_logit': jnp.mean(fake_logits)}

  def to_data_space(x):
    return (x + 1.0) * 0.5 if is_image else x

  if conditional:
    def sample(params, rng, num, label: Optional[Any] = None):
      """`num` samples of G(z, y); `label` an int class, an int array [num], or None
      for classes 0, 1, ..., K-1, 0, 1, ... (so a grid with K columns has one class
      per column). Images float32 [num, H, W, C] in [0, 1]; points [num, D]."""
      if label is None:
        label = jnp.arange(num) % num_classes
      label = jnp.broadcast_to(jnp.asarray(label, jnp.int32), (num,))
      z = jax.random.normal(rng, (num, latent_dim), jnp.float32)
      return to_data_space(generate(params[GENERATOR], z, label))
  else:
    def sample(params, rng, num):
      """`num` samples G(z), z ~ N(0, I): images float32 [num, H, W, C] in [0, 1]; points [num, D]."""
      z = jax.random.normal(rng, (num, latent_dim), jnp.float32)
      return to_data_space(generate(params[GENERATOR], z, None))

  return Paradigm(
      init=init,
      loss={DISCRIMINATOR: discriminator_loss, GENERATOR: generator_loss},
      sample=sample,
      log_likelihood=None,
      likelihood_is_exact=False,
      update_schedule=(DISCRIMINATOR,) * n_critic + (GENERATOR,),
      source=_describe_pair(adversarial_loss, r1_gamma),
  )


def _describe_pair(pair, r1_gamma: float) -> str:
  """'' for the pair config.model.loss names; else where the user's own d_loss / g_loss live
  (recorded in the run's config.json, whose model.loss then does not say what trained)."""
  if pair is None:
    return ""
  name = lambda f: f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"
  return (f"gen_jax.paradigms.gan with adversarial_loss d_loss={name(pair.d_loss)}, "
          f"g_loss={name(pair.g_loss)}, g_sees_real={pair.g_sees_real}, r1_gamma={r1_gamma:g}")


def make(model_config, info, adversarial_loss=None) -> Paradigm:
  """The unconditional GAN for `info`'s data (see the module docstring); `adversarial_loss`
  (an `adversarial.AdversarialLoss`) replaces the pair `config.model.loss` names."""
  return build(model_config, info, conditional=False, adversarial_loss=adversarial_loss)
