"""A loss written outside the library trains with the GAN paradigm and the loop unchanged.

The hook: `gan.make(config.model, info, adversarial_loss=AdversarialLoss(d_loss, g_loss))`,
where the pair are plain functions of the discriminator's logits; `g_sees_real=True`
lets the generator's loss read D(x) too (relativistic losses).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gen_jax.data.info import DatasetInfo
from gen_jax.losses import adversarial as adv
from gen_jax.nets import gan as nets
from gen_jax.paradigms import gan

DIGITS = DatasetInfo(name='digits', kind='image', shape=(8, 8, 1), num_levels=17, num_classes=10)
SMALL = dict(latent_dim=8, g_channels=8, d_channels=8, d_feature_dim=16, r1_gamma=0.0)


def _batch(n=4, seed=0):
  rng = np.random.default_rng(seed)
  return {'image': rng.integers(0, 17, (n, 8, 8, 1)).astype(np.uint8),
          'label': rng.integers(0, 10, n).astype(np.int32)}


def _values_and_grads(paradigm, params, batch):
  """{player: (loss, d loss / d params)} in one compiled function."""
  @jax.jit
  def fn(params):
    return {player: jax.value_and_grad(
        lambda p: paradigm.loss[player](p, batch, jax.random.key(i))[0])(params)
            for i, player in enumerate(paradigm.players)}
  return fn(params)


def test_a_pair_written_outside_equals_the_named_loss_it_rewrites():
  """Hinge written by hand (Lim & Ye 2017) == config.model.loss='hinge', values and gradients."""
  hand = adv.AdversarialLoss(
      d_loss=lambda r, f: jnp.mean(jnp.maximum(0.0, 1.0 - r)) + jnp.mean(jnp.maximum(0.0, 1.0 + f)),
      g_loss=lambda f: -jnp.mean(f))
  model = ml_collections.ConfigDict({**SMALL, 'loss': 'hinge'})
  named = gan.make(model, DIGITS)
  custom = gan.make(model, DIGITS, adversarial_loss=hand)
  batch = _batch()
  params = named.init(jax.random.key(0), batch)
  expected, got = _values_and_grads(named, params, batch), _values_and_grads(custom, params, batch)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_a_relativistic_generator_loss_reads_the_real_logits():
  """g_loss(real, fake) = E D(x) - E D(G(z)): compare with D applied to the real batch."""
  pair = adv.AdversarialLoss(d_loss=adv.non_saturating_d_loss,
                             g_loss=lambda r, f: jnp.mean(r) - jnp.mean(f), g_sees_real=True)
  paradigm = gan.make(ml_collections.ConfigDict(SMALL), DIGITS, adversarial_loss=pair)
  batch = _batch()
  params = paradigm.init(jax.random.key(0), batch)
  g_total, g_metrics = jax.jit(paradigm.loss['generator'])(params, batch, jax.random.key(2))
  d = nets.ConvDiscriminator(channels=8, num_downsamples=2, feature_dim=16)
  x_real = jnp.asarray(batch['image'], jnp.float32) / 16.0 * 2.0 - 1.0
  real_mean = float(jnp.mean(d.apply({'params': params['discriminator']}, x_real)))
  np.testing.assert_allclose(g_total, real_mean - g_metrics['g_fake_logit'], rtol=1e-5, atol=1e-6)
  # The same generator loss without the flag would read only the fakes: the flag matters.
  assert abs(real_mean) > 1e-4


def test_a_custom_pair_trains_in_the_loop(tmp_path):
  """RaSGAN (Jolicoeur-Martineau 2018) bound outside the library, 4 steps of the loop."""
  from experiments.configs import gan as gan_config
  from gen_jax import data as data_lib
  from gen_jax import workdir as workdir_lib
  from gen_jax.train.metrics import read_metrics

  def ra_d(real, fake):
    return (jnp.mean(jax.nn.softplus(-(real - jnp.mean(fake))))
            + jnp.mean(jax.nn.softplus(fake - jnp.mean(real))))

  def ra_g(real, fake):
    return ra_d(fake, real)

  config = gan_config.get_config('digits')
  config.num_train_steps = 4
  config.log_every_steps = 2
  config.checkpoint_every_steps = config.eval_every_steps = config.sample_every_steps = 4
  config.model.update(SMALL)
  info = data_lib.get_info(config.dataset)
  paradigm = gan.make(config.model, info,
                      adversarial_loss=adv.AdversarialLoss(ra_d, ra_g, g_sees_real=True))
  workdir_lib.train(config, str(tmp_path), paradigm=paradigm, progress=False)
  records = [r for r in read_metrics(str(tmp_path)) if 'loss' in r]
  assert [r['step'] for r in records] == [2, 4]
  # At the start D is nearly indifferent, so both RaSGAN losses are near 2 log 2.
  assert all(abs(r['generator/g_loss'] - 2 * np.log(2)) < 0.5 for r in records)
  assert (tmp_path / 'samples' / 'step_4.png').exists()
