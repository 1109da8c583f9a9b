"""U-Net and score-MLP shapes, wiring, conditioning and errors (tiny widths)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.nets.unet import ScoreMLP, UNet, timestep_embedding

# Its module-scoped fixture is costly: one xdist worker runs the module (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_unet")


def _perturb(params, key, scale=0.05):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape)
                                   for p, k in zip(leaves, keys)])


def test_timestep_embedding_values():
  emb = timestep_embedding(jnp.array([0.0, 3.0]), 8)
  assert emb.shape == (2, 8)
  np.testing.assert_allclose(emb[0], [1, 1, 1, 1, 0, 0, 0, 0], atol=1e-7)
  freqs = [10_000 ** (-i / 4) for i in range(4)]
  np.testing.assert_allclose(emb[1, :4], [math.cos(3 * f) for f in freqs], rtol=1e-5)
  np.testing.assert_allclose(emb[1, 4:], [math.sin(3 * f) for f in freqs], rtol=1e-5,
                             atol=1e-7)


@pytest.fixture(scope='module')
def digits_net():
  """One 8x8 conditional net with attention and dropout, initialised once (compiling a
  U-Net init is the slow part of this file), then perturbed so no block is zero."""
  net = UNet(channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
             num_classes=3, dropout=0.5, groups=4)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  params = jax.jit(net.init)(jax.random.key(1), x, jnp.zeros(2), jnp.array([0, 3]))['params']
  apply = jax.jit(net.apply, static_argnames='train')
  return net, x, params, apply


def test_unet_zero_init_output_and_every_parameter_is_used(digits_net):
  net, x, params, apply = digits_net
  t, lab = jnp.array([3.0, 500.0]), jnp.array([1, 3])
  out = apply({'params': params}, x, t, lab)
  assert out.shape == x.shape
  np.testing.assert_array_equal(out, 0.0)                      # zero-initialised output conv
  assert any('AttnBlock' in k for k in params)
  params = _perturb(params, jax.random.key(2))
  w = jax.random.normal(jax.random.key(3), x.shape)
  grads = jax.jit(jax.grad(lambda p: jnp.sum(w * apply({'params': p}, x, t, lab))))(params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    name = jax.tree_util.keystr(path)
    if 'Embed' in name:     # only the rows of the labels used receive gradient
      continue
    assert float(jnp.abs(g).max()) > 0, f'parameter {name} receives no gradient'


def test_unet_conditioning_time_label_null_label_and_dropout(digits_net):
  net, x, params, apply = digits_net
  params = _perturb(params, jax.random.key(2))
  f = lambda t, lab, **kw: apply({'params': params}, x, jnp.array([t, t]), lab, **kw)
  assert not np.allclose(f(1.0, jnp.array([0, 0])), f(1.0, jnp.array([1, 1])))
  assert not np.allclose(f(1.0, jnp.array([0, 0])), f(400.0, jnp.array([0, 0])))
  np.testing.assert_array_equal(f(1.0, None), f(1.0, jnp.array([3, 3])))   # None = null label
  np.testing.assert_array_equal(f(1.0, None), f(1.0, None))
  dropped = f(1.0, None, train=True, rngs={'dropout': jax.random.key(5)})
  assert not np.allclose(f(1.0, None), dropped)


def test_unet_28x28_shapes():
  """MNIST-sized net (28 -> 14 -> 7, attention at 7): shapes by abstract evaluation."""
  net = UNet(channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(7,),
             num_classes=10, groups=4)
  x = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
  t = jax.ShapeDtypeStruct((3,), jnp.float32)
  lab = jax.ShapeDtypeStruct((3,), jnp.int32)
  variables = jax.eval_shape(net.init, jax.random.key(0), x, t, lab)
  out = jax.eval_shape(net.apply, variables, x, t, lab)
  assert out.shape == (3, 28, 28, 1)
  attn = [k for k in variables['params'] if 'AttnBlock' in k]
  assert len(attn) >= 3          # down path, middle, up path at 7x7


def test_unet_rejects_indivisible_images():
  net = UNet(channels=8, channel_mult=(1, 2, 2, 2))
  with pytest.raises(ValueError, match='divisible by 8'):
    net.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)), jnp.zeros(1))


def test_score_mlp_shapes_and_conditioning():
  net = ScoreMLP(hidden=32, num_layers=2, num_classes=8)
  x = jax.random.normal(jax.random.key(0), (5, 2))
  params = _perturb(net.init(jax.random.key(1), x, jnp.zeros(5))['params'], jax.random.key(2))
  out = net.apply({'params': params}, x, jnp.full((5,), 10.0), jnp.arange(5))
  assert out.shape == (5, 2)
  np.testing.assert_array_equal(net.apply({'params': params}, x, jnp.zeros(5)),
                                net.apply({'params': params}, x, jnp.zeros(5), jnp.full((5,), 8)))


@pytest.mark.parametrize("remat", ["blocks", "dots_with_no_batch_dims_saveable"])
def test_remat_gives_the_same_loss_and_gradients_and_holds_less(remat):
  """Rematerialised residual blocks (gen_jax.policy.remat_block): same parameter tree, the
  same loss and gradients as without (dropout on: the masks are redrawn identically), fewer
  bytes held for the backward pass, and the remat really in the gradient's jaxpr."""
  from gen_jax import policy as policy_lib
  net = UNet(channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4, dropout=0.1)
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
  t = jnp.arange(4.0)
  params = net.init(jax.random.key(1), x, t)

  def loss(p):
    y = net.apply(p, x, t, train=True, rngs={"dropout": jax.random.key(2)})
    return jnp.mean((y - x) ** 2 + 0.1 * y)

  def held(p):   # bytes of the VJP's residuals
    return sum(r.size * r.dtype.itemsize for r in jax.tree.leaves(jax.vjp(loss, p)[1]))

  ref_loss, ref_grads = jax.value_and_grad(loss)(params)
  ref_held = held(params)
  assert "remat" not in str(jax.make_jaxpr(jax.grad(loss))(params))
  with policy_lib.Policy(remat=remat).active():
    assert jax.tree.structure(net.init(jax.random.key(1), x, t)) == jax.tree.structure(params)
    value, grads = jax.value_and_grad(loss)(params)
    assert "remat" in str(jax.make_jaxpr(jax.grad(loss))(params))
    assert held(params) < 0.8 * ref_held
  np.testing.assert_allclose(value, ref_loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
