"""GAN nets and the gan / cgan paradigms: shapes, contracts, errors, spectral norm."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.losses import adversarial as adv
from gen_jax.nets import gan as nets
from gen_jax.paradigms import cgan, gan
from tests.jaxpr_util import eqns

DIGITS = DatasetInfo(name='digits', kind='image', shape=(8, 8, 1), num_levels=17, num_classes=10)
MNIST = DatasetInfo(name='mnist_idx', kind='image', shape=(28, 28, 1), num_levels=256, num_classes=10)
TOY = DatasetInfo(name='toy2d/eight_gaussians', kind='points', shape=(2,))
TOY_LABELLED = DatasetInfo(name='toy2d/eight_gaussians', kind='points', shape=(2,), num_classes=8)

SMALL = dict(latent_dim=8, g_channels=8, d_channels=8, d_feature_dim=16,
             g_hidden=(16,), d_hidden=(16,))


def small_config(**fields):
  return ml_collections.ConfigDict({**SMALL, **fields})


def random_batch(info, n=4, seed=0):
  rng = np.random.default_rng(seed)
  label = rng.integers(0, info.num_classes or 1, n).astype(np.int32)
  if info.kind == 'image':
    return {'image': rng.integers(0, info.num_levels, (n, *info.shape)).astype(np.uint8),
            'label': label}
  return {'x': rng.standard_normal((n, *info.shape)).astype(np.float32), 'label': label}


@pytest.mark.parametrize('module, info', [(gan, DIGITS), (cgan, DIGITS), (gan, MNIST), (cgan, TOY_LABELLED)],
                         ids=['gan-digits', 'cgan-digits', 'gan-mnist', 'cgan-toy'])
def test_players_losses_and_samples(module, info):
  penalties = info.kind == 'points'      # the penalties' double backward is costly on convs
  fields = dict(loss='wgan_gp', r1_gamma=1.0) if penalties else dict(loss='hinge', r1_gamma=0.0)
  paradigm = module.make(small_config(n_critic=2, **fields), info)
  assert paradigm.players == ('discriminator', 'generator')
  assert paradigm.update_schedule == ('discriminator', 'discriminator', 'generator')
  assert paradigm.log_likelihood is None
  batch = random_batch(info)
  params = paradigm.init(jax.random.key(0), batch)
  assert set(params) == {'generator', 'discriminator'}
  d_total, d_metrics = jax.jit(paradigm.loss['discriminator'])(params, batch, jax.random.key(1))
  g_total, g_metrics = jax.jit(paradigm.loss['generator'])(params, batch, jax.random.key(2))
  assert d_total.shape == () and g_total.shape == ()
  if penalties:
    # The total is the adversarial loss plus the penalties with their weights.
    np.testing.assert_allclose(
        d_total, d_metrics['d_loss'] + 10.0 * d_metrics['d_gradient_penalty'] + 0.5 * d_metrics['d_r1'],
        rtol=1e-5)
    # WGAN: L_D = E D(G(z)) - E D(x).
    np.testing.assert_allclose(d_metrics['d_loss'], d_metrics['d_fake_logit'] - d_metrics['d_real_logit'],
                               rtol=1e-5, atol=1e-6)
  else:
    assert 'd_gradient_penalty' not in d_metrics and 'd_r1' not in d_metrics
    np.testing.assert_allclose(d_total, d_metrics['d_loss'], rtol=1e-6)
  # WGAN and hinge: L_G = -E D(G(z)).
  np.testing.assert_allclose(g_total, -g_metrics['g_fake_logit'], rtol=1e-5, atol=1e-7)
  assert all(np.isfinite(float(v)) for v in {**d_metrics, **g_metrics}.values())
  samples = jax.jit(paradigm.sample, static_argnums=2)(params, jax.random.key(3), 5)
  assert samples.shape == (5, *info.shape) and samples.dtype == jnp.float32
  if info.kind == 'image':
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0


def test_each_loss_reads_only_what_its_player_should_train():
  paradigm = gan.make(small_config(loss='hinge'), TOY)
  batch = random_batch(TOY)
  params = paradigm.init(jax.random.key(0), batch)

  @jax.jit
  def all_grads(params):
    return {player: jax.grad(lambda p, player=player: paradigm.loss[player](p, batch, jax.random.key(1))[0])(params)
            for player in paradigm.players}

  grads = all_grads(params)
  norm = lambda tree: float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(tree))))
  # The discriminator's loss depends on G through the fakes, and the generator's loss on
  # D: each fn reads both players, and the loop keeps the gradient w.r.t. its own player only.
  assert norm(grads['discriminator']['discriminator']) > 0
  assert norm(grads['generator']['generator']) > 0
  assert norm(grads['discriminator']['generator']) > 0   # so the loop must not apply it
  assert norm(grads['generator']['discriminator']) > 0


def test_fakes_use_the_data_scale_and_the_loss_matches_the_nets():
  """L_D of the paradigm = the loss function applied to D on [-1, 1] reals and G(z)."""
  paradigm = gan.make(small_config(loss='least_squares'), DIGITS)
  batch = random_batch(DIGITS)
  params = paradigm.init(jax.random.key(0), batch)
  d_total, m = paradigm.loss['discriminator'](params, batch, jax.random.key(1))
  x_real = batch['image'] / 16.0 * 2.0 - 1.0
  d = nets.ConvDiscriminator(channels=8, num_downsamples=2, feature_dim=16)
  real_logits = d.apply({'params': params['discriminator']}, jnp.asarray(x_real, jnp.float32))
  np.testing.assert_allclose(m['d_real_logit'], jnp.mean(real_logits), rtol=1e-5)
  fake_logits_mean = m['d_fake_logit']
  expected = 0.5 * jnp.mean((real_logits - 1) ** 2) + 0.5 * jnp.mean(
      d.apply({'params': params['discriminator']},
              2 * jnp.asarray(paradigm.sample(params, jax.random.split(jax.random.key(1))[0], 4)) - 1) ** 2)
  np.testing.assert_allclose(d_total, expected, rtol=1e-4)
  assert np.isfinite(float(fake_logits_mean))


def test_conditional_sample_labels():
  paradigm = cgan.make(small_config(), DIGITS)
  params = paradigm.init(jax.random.key(0), random_batch(DIGITS))
  key = jax.random.key(5)
  by_default = paradigm.sample(params, key, 12)
  explicit = paradigm.sample(params, key, 12, label=jnp.arange(12) % 10)
  np.testing.assert_array_equal(by_default, explicit)
  all_threes = paradigm.sample(params, key, 12, label=3)
  np.testing.assert_array_equal(all_threes[3], explicit[3])
  assert not np.array_equal(all_threes[4], explicit[4])
  with pytest.raises(TypeError):
    gan.make(small_config(), DIGITS).sample(params, key, 4, label=3)


def test_init_works_from_a_label_free_shape_only_batch():
  paradigm = cgan.make(small_config(), TOY_LABELLED)
  params = paradigm.init(jax.random.key(0), {'x': np.zeros((2, 2), np.float32)})
  assert params['discriminator']['projection']['embedding'].shape == (8, 16)


@pytest.mark.parametrize('module, info, fields, match', [
    (gan, DatasetInfo(name='odd', kind='image', shape=(10, 10, 1), num_levels=2), {}, 'num_upsamples'),
    (gan, TOY, {'net': 'conv'}, 'net="mlp"'),
    (gan, DatasetInfo(name='text_file', kind='text', shape=(65,), vocab='ab'), {}, 'text'),
    (cgan, TOY, {}, 'num_classes'),
    (gan, DIGITS, {'loss': 'minimax'}, 'config.model.loss'),
    (gan, DIGITS, {'n_critic': 0}, 'n_critic'),
])
def test_errors_name_the_cause_and_the_fix(module, info, fields, match):
  with pytest.raises(UserError, match=match):
    module.make(small_config(**fields), info)


def test_mlp_net_on_images_and_defaults():
  paradigm = gan.make(ml_collections.ConfigDict({'net': 'mlp', 'g_hidden': [8], 'd_hidden': [8]}), DIGITS)
  params = paradigm.init(jax.random.key(0), random_batch(DIGITS))
  samples = paradigm.sample(params, jax.random.key(1), 3)
  assert samples.shape == (3, 8, 8, 1)
  assert paradigm.update_schedule == ('discriminator', 'generator')


def test_spectral_normalize_gives_unit_largest_singular_value():
  w = jax.random.normal(jax.random.key(0), (48, 32))
  # Many iterations: converged, sigma_1(W / sigma) = 1.
  np.testing.assert_allclose(np.linalg.svd(nets.spectral_normalize(w, 200), compute_uv=False)[0],
                             1.0, rtol=1e-3)
  # Few iterations: the estimate of sigma_1 is a lower bound, so sigma_1(W / sigma) >= 1, near 1.
  s = np.linalg.svd(nets.spectral_normalize(w, 5), compute_uv=False)[0]
  assert 1.0 - 1e-5 <= s < 1.15
  # A conv kernel [kh, kw, in, out] is normalised as the [kh * kw * in, out] matrix.
  k = jax.random.normal(jax.random.key(1), (3, 3, 4, 8))
  s = np.linalg.svd(np.reshape(nets.spectral_normalize(k, 200), (-1, 8)), compute_uv=False)[0]
  np.testing.assert_allclose(s, 1.0, rtol=1e-3)


def test_spectrally_normalised_discriminator_is_1_lipschitz_per_layer():
  # With every layer normalised and LeakyReLU (1-Lipschitz), ||∇_x D(x)|| <= prod ||W_l|| ≈ 1.
  d = nets.MLPDiscriminator(hidden=(32, 32), spectral_norm=True, num_power_iters=100)
  x = jax.random.normal(jax.random.key(0), (64, 2))
  params = d.init(jax.random.key(1), x)
  sq = adv.r1_penalty(lambda v: d.apply(params, v), x) * 1.0      # mean ||∇D||^2
  grads = jax.vmap(jax.grad(lambda v: d.apply(params, v[None])[0]))(x)
  assert float(jnp.max(jnp.linalg.norm(grads, axis=1))) <= 1.0 + 1e-3
  assert float(sq) > 0.0


def test_projection_discriminator_differs_across_classes_by_the_embedding_inner_product():
  d = nets.MLPDiscriminator(hidden=(8,), num_classes=3)
  x = jax.random.normal(jax.random.key(0), (4, 2))
  params = d.init(jax.random.key(1), x, jnp.zeros(4, jnp.int32))
  phi = lambda v: nn_features(params, v)
  emb = params['params']['projection']['embedding']
  diff = d.apply(params, x, jnp.full(4, 2)) - d.apply(params, x, jnp.full(4, 0))
  np.testing.assert_allclose(diff, phi(x) @ (emb[2] - emb[0]), rtol=1e-5, atol=1e-6)


def nn_features(params, x):
  """φ(x) of a one-hidden-layer MLPDiscriminator, recomputed from its parameters."""
  layer = params['params']['SNDense_0']
  return jax.nn.leaky_relu(x @ layer['kernel'] + layer['bias'], 0.2)


@pytest.mark.parametrize('arg, info', [('digits', DIGITS), ('mnist_idx', MNIST), ('eight_gaussians', TOY)])
def test_configs_build_their_paradigms(arg, info):
  from experiments.configs import cgan as cgan_config
  from experiments.configs import gan as gan_config
  from gen_jax.paradigms import load_paradigm
  config = gan_config.get_config(arg)
  assert config.paradigm == 'gan' and config.dataset == info.name
  assert config.model.loss == 'non_saturating'
  paradigm = load_paradigm(config, info)
  shapes = jax.eval_shape(paradigm.init, jax.random.key(0), random_batch(info, 2))
  assert set(shapes) == {'generator', 'discriminator'}
  for player in ('generator', 'discriminator'):
    assert config.optimizer.per_player[player].b1 == 0.5
  if info.kind == 'image':
    config = cgan_config.get_config(arg)
    assert config.paradigm == 'cgan'
    load_paradigm(config, info)
  else:
    with pytest.raises(ValueError, match='labelled'):
      cgan_config.get_config(arg)


def test_bfloat16_policy_runs_both_players_in_bfloat16_with_float32_sigma_and_losses():
  """Under a bfloat16 policy (as the training step traces it) the spectrally normalised
  projection D and G run their convolutions in bfloat16 (their jnp / lax layers once mixed
  float32 inputs with bfloat16 kernels and failed), σ(W), the projection and every other
  reduction stay float32, and each player's loss is float32 and within 2e-2 of float32's."""
  from gen_jax import policy as policy_lib
  paradigm = cgan.make(small_config(spectral_norm=True, loss='hinge', r1_gamma=0.0), DIGITS)
  batch = jax.tree.map(jnp.asarray, random_batch(DIGITS))     # device arrays, as in the step
  params = paradigm.init(jax.random.key(0), batch)
  policy = policy_lib.Policy(compute_dtype=jnp.bfloat16)
  for player, loss_fn in paradigm.loss.items():
    def loss(p):
      with policy.active():
        return loss_fn(policy.cast_to_compute(p), batch, jax.random.key(1))[0]
    value = jax.jit(loss)(params)
    value32 = jax.jit(loss_fn)(params, batch, jax.random.key(1))[0]
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(value, value32, rtol=2e-2, atol=1e-3, err_msg=player)
    found = list(eqns(jax.make_jaxpr(loss)(params).jaxpr))
    convs = [e for e in found if e.primitive.name == 'conv_general_dilated']
    assert convs and all(v.aval.dtype == jnp.bfloat16 for e in convs for v in e.invars), player
    sums = [e for e in found if e.primitive.name in ('reduce_sum', 'sqrt')]
    assert sums and all(v.aval.dtype == jnp.float32 for e in sums for v in e.invars), player


