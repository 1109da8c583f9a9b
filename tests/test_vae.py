"""The VAE paradigm: every decoder and encoder runs, bounds are ordered, shapes are checked."""
import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl.testing import parameterized

from gen_jax.data.info import DatasetInfo
from gen_jax.paradigms import vae

DIGITS = DatasetInfo(name="digits", kind="image", shape=(8, 8, 1), num_levels=17, num_classes=10)
BINARY = DatasetInfo(name="digits", kind="image", shape=(8, 8, 1), num_levels=2, num_classes=10)


def model(**kw):
  return ml_collections.ConfigDict(dict(encoder="conv", channels=(8,), hidden=(32,),
                                        latent_dim=3, decoder="categorical", beta=1.0,
                                        eval_num_samples=1) | kw)


def batch_for(info, n=6):
  rng = np.random.default_rng(0)
  return {"image": rng.integers(0, info.num_levels, (n, *info.shape)).astype(np.uint8),
          "label": np.zeros(n, np.int32)}


class VAETest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      ("categorical_conv", model(), DIGITS),
      ("logistic_conv", model(decoder="logistic"), DIGITS),
      ("bernoulli_mlp", model(decoder="bernoulli", encoder="mlp"), BINARY))
  def test_loss_likelihood_and_samples(self, config, info):
    p = vae.make(config, info)
    batch = batch_for(info)
    params = p.init(jax.random.key(0), batch)
    loss, metrics = self.variant(p.loss)(params, batch, jax.random.key(1))
    chex.assert_shape(loss, ())
    chex.assert_tree_all_finite((loss, metrics))
    # With beta = 1 the loss is -ELBO; bits/dim = -ELBO / (64 log 2) on the data's levels.
    np.testing.assert_allclose(metrics["bits_per_dim"], loss / (64 * np.log(2)), rtol=1e-5)
    ll = self.variant(p.log_likelihood)(params, batch, jax.random.key(2))
    chex.assert_shape(ll, (6,))
    samples = p.sample(params, jax.random.key(3), 5)
    chex.assert_shape(samples, (5, 8, 8, 1))
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0
    assert not p.likelihood_is_exact

  def test_iwae_bound_is_at_least_the_elbo_on_average(self):
    p = vae.make(model(), DIGITS)
    batch = batch_for(DIGITS, 32)
    params = p.init(jax.random.key(0), batch)
    keys = jax.random.split(jax.random.key(1), 20)
    elbo = np.mean([p.log_likelihood(params, batch, k, num_samples=1) for k in keys])
    iwae = np.mean([p.log_likelihood(params, batch, k, num_samples=64) for k in keys])
    assert iwae > elbo

  def test_beta_weights_the_kl(self):
    batch = batch_for(DIGITS)
    p1, p4 = vae.make(model(), DIGITS), vae.make(model(beta=4.0), DIGITS)
    params = p1.init(jax.random.key(0), batch)
    l1, m1 = p1.loss(params, batch, jax.random.key(1))
    l4, m4 = p4.loss(params, batch, jax.random.key(1))
    np.testing.assert_allclose(l4 - l1, 3.0 * m1["kl"], atol=1e-4)  # float32 loss ~ 150

  def test_bad_configurations_are_named(self):
    with pytest.raises(ValueError, match="binarize"):
      vae.make(model(decoder="bernoulli"), DIGITS)
    with pytest.raises(ValueError, match="divisible"):
      vae.make(model(channels=(8, 8, 8, 8)), DIGITS)
    with pytest.raises(ValueError, match="models images"):
      vae.make(model(), DatasetInfo(name="toy2d/moons", kind="points", shape=(2,)))
    p = vae.make(model(), DIGITS)
    params = p.init(jax.random.key(0), batch_for(DIGITS))
    with pytest.raises(AssertionError):
      p.loss(params, {"image": jnp.zeros((4, 64), jnp.uint8)}, jax.random.key(0))


def test_iwae_training_objective_is_the_evaluation_bound():
  """model.train_num_samples = k trains -L_k: the same numbers as log_likelihood(num_samples=k)."""
  batch = batch_for(DIGITS, 8)
  p5 = vae.make(model(train_num_samples=5), DIGITS)
  params = p5.init(jax.random.key(0), batch)
  key = jax.random.key(1)
  loss, metrics = jax.jit(p5.loss)(params, batch, key)
  bound = jax.jit(lambda q: p5.log_likelihood(q, batch, key, num_samples=5))(params)
  np.testing.assert_allclose(loss, -jnp.mean(bound), rtol=1e-5)
  np.testing.assert_allclose(metrics["bits_per_dim"], loss / (64 * np.log(2)), rtol=1e-5)
  grads = jax.jit(jax.grad(lambda q: p5.loss(q, batch, key)[0]))(params)
  chex.assert_tree_all_finite(grads)
  with pytest.raises(ValueError, match="no beta"):
    vae.make(model(train_num_samples=5, beta=2.0), DIGITS)


def test_iwae_with_one_sample_is_the_elbo():
  """L_1 = log p(x|z) + log p(z) - log q(z|x), z ~ q: an unbiased estimate of the closed-form-KL
  ELBO that train_num_samples = 1 trains (the difference has mean 0 over draws of z)."""
  batch = batch_for(DIGITS, 4)
  p1 = vae.make(model(train_num_samples=1), DIGITS)
  params = p1.init(jax.random.key(0), batch)
  keys = jax.random.split(jax.random.key(1), 4000)
  l1 = jax.jit(jax.vmap(lambda k: jnp.mean(p1.log_likelihood(params, batch, k, num_samples=1))))(keys)
  elbo = jax.jit(jax.vmap(lambda k: -p1.loss(params, batch, k)[0]))(keys)
  diff = np.asarray(l1 - elbo, np.float64)
  assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(len(diff)) + 1e-3
  assert diff.std() > 0           # different estimators (sampled vs closed-form KL), same mean


def test_vae_as_a_tokenizer():
  """encode = posterior mean, decode = E[x|z] / 16, decoder_log_likelihood = log p(x|z)."""
  p = vae.make(model(), DIGITS)
  batch = batch_for(DIGITS)
  params = p.init(jax.random.key(0), batch)
  net = vae.VAENet(image_shape=(8, 8, 1), latent_dim=3, out_channels=17, channels=(8,))
  x = jnp.asarray(batch["image"])
  mean, _ = net.apply({"params": params}, jnp.asarray(x, jnp.float32) / 8 - 1, method=vae.VAENet.encode)
  z = p.encode(params, x)
  np.testing.assert_allclose(z, mean, rtol=1e-6)
  logits = np.asarray(net.apply({"params": params}, z, method=vae.VAENet.decode), np.float64)
  logits = logits.reshape(6, 8, 8, 1, 17)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  np.testing.assert_allclose(p.decode(params, z), (probs * np.arange(17)).sum(-1) / 16, atol=1e-5)
  picked = np.take_along_axis(np.log(probs), np.asarray(x)[..., None].astype(int), -1)
  np.testing.assert_allclose(p.decoder_log_likelihood(params, z, x),
                             picked.reshape(6, -1).sum(1), rtol=1e-5)
