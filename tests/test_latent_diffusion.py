"""latent_diffusion: diffusion on a frozen VAE's standardised latents, decoded by the VAE.

A tiny VAE is trained here on digits (stage 1), then latent_diffusion for a few steps on
its encoded dataset (stage 2), both through the loop. Truth used, computed independently
of the encoded-dataset cache and of latent_diffusion.py:
  * the VAE's posterior means mu(x), from its network (VAENet.encode) and its checkpoint;
  * the per-dimension mean and std of mu(x) over the train split, in float64 numpy;
  * E[x | z] of the categorical decoder, sum_k softmax(logits)_k k / (L - 1);
  * the EDM paradigm built directly on 'points' data, whose sampler's output u must come
    back as x = E[x | m + s u].
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.eval.speed import with_steps
from experiments.configs import latent_diffusion as ld_config
from experiments.configs import vae as vae_config
from gen_jax import data as data_lib
from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.paradigms import diffusion as common
from gen_jax.paradigms import edm
from gen_jax.paradigms.vae import VAENet
from gen_jax import workdir as workdir_lib

# Its module-scoped fixture is costly: one xdist worker runs the module (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_latent_diffusion")

LATENT_DIM, LEVELS = 3, 17


def _stage2_config(vae_dir, **stage1_overrides):
  config = with_steps(ld_config.get_config('digits'), 4)
  config.stage1.workdir = vae_dir
  config.stage1.model.latent_dim = LATENT_DIM
  config.stage1.update(stage1_overrides)
  config.batch_size = 32
  config.model.hidden, config.model.num_layers, config.model.num_steps = 32, 1, 4
  config.num_samples = 8
  return config


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('latent_diffusion')
  vae = with_steps(vae_config.get_config('digits'), 30)
  vae.model.channels, vae.model.latent_dim, vae.batch_size = (8,), LATENT_DIM, 32
  vae_dir, ld_dir = str(root / 'vae'), str(root / 'ld')
  workdir_lib.train(vae, vae_dir, progress=False)
  config = _stage2_config(vae_dir)
  workdir_lib.train(config, ld_dir, progress=False)
  return vae_dir, ld_dir, config


def _vae_net_and_params(vae_dir):
  run, state, _ = workdir_lib.restore(vae_dir)
  net = VAENet(image_shape=(8, 8, 1), latent_dim=LATENT_DIM, out_channels=LEVELS,
               channels=(8,))
  return net, run.sampling_params(state)


def _posterior_mean(net, params, images):
  x = 2.0 * jnp.asarray(images, jnp.float32) / (LEVELS - 1) - 1.0   # the VAE's input: [-1, 1]
  mean, _ = net.apply({'params': params}, x, method=VAENet.encode)
  return np.asarray(mean, np.float64)


def test_trains_and_samples_images_in_unit_range(runs):
  _, ld_dir, config = runs
  losses = [json.loads(l)['loss'] for l in open(os.path.join(ld_dir, 'metrics.jsonl'))
            if '"loss"' in l]
  assert losses and np.all(np.isfinite(losses))
  run, state, step = workdir_lib.restore(ld_dir)
  assert step == 4 and run.info.kind == 'latents'
  x = np.asarray(run.paradigm.sample(run.sampling_params(state), jax.random.key(0), 5))
  assert x.shape == (5, 8, 8, 1) and x.dtype == np.float32
  assert x.min() >= 0.0 and x.max() <= 1.0
  assert run.paradigm.log_likelihood is None          # documented: no bound on log P(x)
  assert os.path.exists(os.path.join(ld_dir, 'samples', 'step_4.png'))


def test_latents_are_posterior_means_standardised_by_train_statistics(runs):
  vae_dir, ld_dir, config = runs
  net, params = _vae_net_and_params(vae_dir)
  kw = workdir_lib.data_kwargs(config)
  served = data_lib.split_arrays('encoded', 'train', data_dir=kw['data_dir'],
                                 manual_dir=kw['manual_dir'], stage1=kw['stage1'])
  digits = data_lib.split_arrays('digits', 'train')
  np.testing.assert_array_equal(served['image'], digits['image'])     # stored order
  mu = _posterior_mean(net, params, digits['image'])
  np.testing.assert_allclose(served['z'], mu, atol=1e-5)
  info = data_lib.get_info('encoded', **kw)
  np.testing.assert_allclose(np.reshape(info.latent_mean, -1), mu.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.reshape(info.latent_std, -1), mu.std(0), rtol=1e-5)

  # The loss is EDM's loss on u = (mu(x) - m) / s, for the same key.
  run, state, _ = workdir_lib.restore(ld_dir)
  points = DatasetInfo(name='u', kind='points', shape=(LATENT_DIM,))
  reference = common.make_paradigm(edm.make_spec(config.model, points), config.model, points, 'edm')
  batch = next(data_lib.train_iterator('encoded', batch_size=16, seed=3, **kw))
  u = (_posterior_mean(net, params, batch['image']) - mu.mean(0)) / mu.std(0)
  key = jax.random.key(5)
  got, _ = run.paradigm.loss(state.params, batch, key)
  want, _ = reference.loss(state.params, {'x': jnp.asarray(u, jnp.float32)}, key)
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_samples_undo_the_standardisation_exactly(runs):
  vae_dir, ld_dir, config = runs
  net, vae_params = _vae_net_and_params(vae_dir)
  digits = data_lib.split_arrays('digits', 'train')
  mu = _posterior_mean(net, vae_params, digits['image'])
  run, state, _ = workdir_lib.restore(ld_dir)
  params = run.sampling_params(state)
  points = DatasetInfo(name='u', kind='points', shape=(LATENT_DIM,))
  reference = common.make_paradigm(edm.make_spec(config.model, points), config.model, points, 'edm')
  key = jax.random.key(11)
  u = np.asarray(reference.sample(params, key, 6), np.float64)
  z = mu.mean(0) + mu.std(0) * u
  logits = net.apply({'params': vae_params}, jnp.asarray(z, jnp.float32), method=VAENet.decode)
  probs = jax.nn.softmax(logits.reshape(6, 8, 8, 1, LEVELS), axis=-1)
  want = np.asarray(jnp.sum(probs * jnp.arange(LEVELS), -1)) / (LEVELS - 1)
  got = np.asarray(run.paradigm.sample(params, key, 6))
  np.testing.assert_allclose(got, want, atol=2e-5)
  _, trajectory = run.paradigm.sample(params, key, 6, return_trajectory=True)
  assert trajectory.shape[1:] == (6, 8, 8, 1)                       # frames decoded too
  np.testing.assert_allclose(trajectory[-1], got, atol=1e-5)


def test_a_mismatched_stage1_is_refused(runs, tmp_path):
  vae_dir, _, _ = runs
  config = _stage2_config(vae_dir)
  config.stage1.model.latent_dim = LATENT_DIM + 2
  with pytest.raises(UserError, match='latent_dim'):
    workdir_lib.train(config, str(tmp_path / 'ld'), progress=False)
  config = _stage2_config(vae_dir, paradigm='vqvae')
  with pytest.raises(UserError, match='paradigm'):
    workdir_lib.train(config, str(tmp_path / 'ld2'), progress=False)
