"""DiT (gen_jax.nets.dit) against truth: patchify round-trips and is the raster layout written
out by hand, adaLN-Zero makes a fresh block the identity and a fresh DiT output 0, so each
diffusion objective's denoiser at init is what its preconditioning gives a zero network."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.losses import score_matching as sm
from gen_jax.nets.dit import DiT, DiTBlock, patchify, sincos_2d, unpatchify
from gen_jax.paradigms import ddpm, diffusion, edm

DIGITS = DatasetInfo(name='digits', kind='image', shape=(8, 8, 1), num_levels=17, num_classes=10)


def test_patchify_is_the_raster_layout_and_round_trips():
  x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3))
  tokens = patchify(x, 2)
  assert tokens.shape == (2, 6, 12)
  # patch (row 1, col 2) is token 1 * 3 + 2; its values are x[1*2:(1+1)*2, 2*2:(2+1)*2, :] row-major
  np.testing.assert_array_equal(tokens[:, 5], x[:, 2:4, 4:6, :].reshape(2, 12))
  np.testing.assert_array_equal(unpatchify(tokens, 2, 4, 6), x)


def test_sincos_position_embedding_by_hand():
  e = np.asarray(sincos_2d(2, 3, 8))
  assert e.shape == (6, 8)
  omega = 1.0 / 10_000 ** (np.arange(2) / 2)            # dim/4 = 2 frequencies an axis
  row, col = 1, 2                                       # position 1 * 3 + 2
  want = np.concatenate([np.sin(row * omega), np.cos(row * omega),
                         np.sin(col * omega), np.cos(col * omega)])
  np.testing.assert_allclose(e[5], want, rtol=1e-6)


def test_a_fresh_adaln_zero_block_is_the_identity():
  h = jax.random.normal(jax.random.key(1), (2, 5, 16))
  c = jax.random.normal(jax.random.key(2), (2, 16))
  block = DiTBlock(num_heads=4)
  params = block.init(jax.random.key(3), h, c, False)
  np.testing.assert_array_equal(block.apply(params, h, c, False), h)
  # with the modulation perturbed it is not: the test can fail
  params = jax.tree.map(lambda p: p + 0.1, params)
  assert not np.allclose(block.apply(params, h, c, False), h)


@pytest.mark.parametrize('num_classes', [0, 10])
def test_a_fresh_dit_outputs_zero_and_perturbed_it_does_not(num_classes):
  x = jax.random.normal(jax.random.key(4), (3, 8, 8, 1))
  t = jnp.array([1.0, 500.0, 999.0])
  net = DiT(patch_size=2, width=32, depth=2, num_heads=4, num_classes=num_classes)
  params = net.init(jax.random.key(5), x, t)
  out = net.apply(params, x, t, jnp.array([1, 2, 10]) if num_classes else None)
  assert out.shape == x.shape
  np.testing.assert_array_equal(out, 0.0)
  moved = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(6), p.shape), params)
  assert np.abs(net.apply(moved, x, t)).max() > 1e-3


def _model_config(**kw):
  return ml_collections.ConfigDict(dict(net='dit', patch_size=2, dit_width=32, dit_depth=2,
                                        dit_heads=4) | kw)


def test_ddpm_with_dit_predicts_zero_noise_at_init():
  """A zero network's eps_hat = 0: the DDPM loss at init is E||eps||^2 = 1 a dimension."""
  p = ddpm.make(_model_config(num_diffusion_steps=100), DIGITS)
  batch = {'image': jnp.asarray(np.random.default_rng(0).integers(0, 17, (256, 8, 8, 1)), jnp.uint8),
           'label': jnp.zeros((256,), jnp.int32)}
  params = p.init(jax.random.key(0), batch)
  loss, _ = p.loss(params, batch, jax.random.key(1))
  np.testing.assert_allclose(loss, 1.0, rtol=0.02)     # mean of eps^2 over 256 * 64 draws


def test_edm_with_dit_denoiser_at_init_is_c_skip_x():
  net = diffusion.build_net(_model_config(), DIGITS, 'edm')
  x = jax.random.normal(jax.random.key(7), (4, 8, 8, 1))
  sigma = jnp.array([0.01, 0.5, 2.0, 80.0])
  params = net.init(jax.random.key(8), x, sigma)
  model = lambda y, c_noise: net.apply(params, y, 250.0 * c_noise)
  d = sm.edm_denoiser(model, 0.5)(x, sigma)
  c_skip = 0.25 / (sigma ** 2 + 0.25)
  np.testing.assert_allclose(d, c_skip[:, None, None, None] * x, rtol=1e-6, atol=1e-7)
  assert edm.Fields().net == 'unet'


def test_bad_dit_settings_are_refused():
  with pytest.raises(UserError, match="patch_size"):
    DiT(patch_size=3).init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,)))
  with pytest.raises(UserError, match="unet, dit"):
    diffusion.build_net(_model_config(net='vit'), DIGITS, 'ddpm')


def test_remat_blocks_gives_the_same_loss_and_gradients():
  from gen_jax import policy as policy_lib
  net = DiT(patch_size=2, width=32, depth=2, num_heads=4)
  x = jax.random.normal(jax.random.key(9), (2, 8, 8, 1))
  t = jnp.array([3.0, 700.0])
  params = jax.tree.map(lambda p: p + 0.05, net.init(jax.random.key(10), x, t))   # not the identity

  def loss(params, remat):
    with policy_lib.Policy(remat=remat).active():
      return jnp.mean(net.apply(params, x, t) ** 2)
  want, want_grad = jax.value_and_grad(loss)(params, "none")
  got, grad = jax.value_and_grad(loss)(params, "blocks")
  np.testing.assert_allclose(got, want, rtol=1e-6)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7), grad, want_grad)


def test_edm_with_dit_has_an_ode_likelihood():
  """The ODE likelihood's divergence runs through the DiT's custom-VJP attention and MLP
  (reverse mode); a fresh DiT's D = c_skip x makes it finite and the same as the U-Net's."""
  batch = {'image': jnp.asarray(np.random.default_rng(1).integers(0, 17, (2, 8, 8, 1)), jnp.uint8)}
  lls = []
  for net in ('dit', 'unet'):
    cfg = _model_config(net=net, channels=8,
                        channel_mult=(1,), num_res_blocks=1, attn_resolutions=(), groups=4)
    p = edm.make(cfg, DIGITS)
    params = p.init(jax.random.key(0), batch)
    lls.append(np.asarray(p.log_likelihood(params, batch, jax.random.key(1))))
  assert np.all(np.isfinite(lls[0]))
  np.testing.assert_allclose(lls[0], lls[1], rtol=1e-3)   # both zero networks: the same ODE
