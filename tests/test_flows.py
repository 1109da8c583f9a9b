"""Flow layers and the flow NLL against truth: exact inverses, brute-force Jacobian
log-determinants (jax.jacfwd + slogdet), ActNorm's init statistics, hand-computed NLLs."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.losses import nll as nll_lib
from gen_jax.nets import flows
from tests.jaxpr_util import eqns


def perturb(params, seed, scale=0.1):
  """Adds N(0, scale^2) noise (numpy) to every parameter, so that no layer is at its identity init."""
  rs = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda l: l + jnp.asarray(scale * rs.standard_normal(l.shape), l.dtype), params)


def brute_force_log_det(module, params, x1):
  """log|det J| of one example's flattened forward map, J from jax.jacfwd."""
  shape = x1.shape
  f = lambda v: module.apply({"params": params}, v.reshape((1,) + shape))[0].reshape(-1)
  jac = jax.jacfwd(f)(x1.reshape(-1))
  assert jac.shape[0] == jac.shape[1]
  sign, log_abs_det = jnp.linalg.slogdet(jac)
  assert float(sign) != 0.0
  return float(log_abs_det)


LAYERS = {
    "actnorm_image": (lambda: flows.ActNorm(), (2, 2, 4)),
    "actnorm_vector": (lambda: flows.ActNorm(), (3,)),
    "conv1x1_image": (lambda: flows.InvertibleConv1x1(seed=3), (2, 2, 4)),
    "linear_vector": (lambda: flows.InvertibleConv1x1(seed=5), (4,)),
    "coupling_checkerboard": (lambda: flows.AffineCoupling("checkerboard", 0, hidden=8), (4, 4, 2)),
    "coupling_checkerboard_odd": (lambda: flows.AffineCoupling("checkerboard", 1, hidden=8), (4, 4, 1)),
    "coupling_channel": (lambda: flows.AffineCoupling("channel", 0, hidden=8), (2, 2, 4)),
    "coupling_channel_odd": (lambda: flows.AffineCoupling("channel", 1, hidden=8), (2, 2, 4)),
    "coupling_alternate": (lambda: flows.AffineCoupling("alternate", 1, hidden=8), (3,)),
    "coupling_checkerboard_resnet": (
        lambda: flows.AffineCoupling("checkerboard", 0, hidden=8, res_blocks=2), (4, 4, 2)),
    "squeeze": (lambda: flows.Squeeze(), (4, 4, 2)),
    "glow_4x4x2": (lambda: flows.MultiScaleFlow((4, 4, 2), 2, 2, 8, "glow"), (4, 4, 2)),
    "realnvp_4x4x2": (lambda: flows.MultiScaleFlow((4, 4, 2), 2, 2, 8, "realnvp"), (4, 4, 2)),
    "glow_digits": (lambda: flows.MultiScaleFlow((8, 8, 1), 2, 1, 8, "glow"), (8, 8, 1)),
    "realnvp_digits_3_scales": (lambda: flows.MultiScaleFlow((8, 8, 1), 3, 1, 8, "realnvp"), (8, 8, 1)),
    "glow_4x4x2_split_prior": (lambda: flows.MultiScaleFlow((4, 4, 2), 2, 2, 8, "glow", "learned"),
                               (4, 4, 2)),
    "realnvp_digits_3_scales_split_prior": (
        lambda: flows.MultiScaleFlow((8, 8, 1), 3, 1, 8, "realnvp", "learned"), (8, 8, 1)),
    "realnvp_4x4x2_resnet": (
        lambda: flows.MultiScaleFlow((4, 4, 2), 2, 1, 8, "realnvp", res_blocks=1), (4, 4, 2)),
    "vector_flow": (lambda: flows.VectorFlow(num_steps=3, hidden=8), (2,)),
}


def init_perturbed(name, batch=4):
  make, shape = LAYERS[name]
  module = make()
  x = jax.random.normal(jax.random.key(0), (batch,) + shape)
  variables = module.init(jax.random.key(1), x)
  params = perturb(variables.get("params", {}), 2)
  return module, params, x


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_inverts_exactly_and_log_det_matches_brute_force_jacobian(name):
  module, params, x = init_perturbed(name)
  z, log_det = module.apply({"params": params}, x)
  assert log_det.shape == (x.shape[0],)
  # inverse(forward(x)) == x, and the inverse's log_det is minus the forward's.
  x_back, log_det_inv = module.apply({"params": params}, z, reverse=True)
  np.testing.assert_allclose(x_back, x, atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(log_det_inv, -log_det, atol=1e-4)
  # The forward/inverse methods say the same.
  z2, _ = module.apply({"params": params}, x, method=module.forward)
  np.testing.assert_array_equal(z2, z)
  np.testing.assert_array_equal(module.apply({"params": params}, z, method=module.inverse), x_back)
  # log_det == log|det jacfwd| on two examples.
  for i in range(2):
    expected = brute_force_log_det(module, params, x[i])
    np.testing.assert_allclose(float(log_det[i]), expected, atol=1e-4)
  if name != "squeeze":  # the perturbed layers really change volume
    assert abs(float(log_det[0])) > 1e-3


def test_multiscale_model_has_nontrivial_log_det_and_flat_latent():
  module, params, x = init_perturbed("glow_digits")
  z, log_det = module.apply({"params": params}, x)
  assert z.shape == (x.shape[0], 64)
  assert np.all(np.isfinite(log_det))


@pytest.mark.parametrize("shape", [(2, 2, 3), (5,)])
def test_actnorm_data_dependent_init_gives_zero_mean_unit_variance(shape):
  x = 3.0 + 2.5 * jax.random.normal(jax.random.key(0), (64,) + shape) * jnp.arange(1, shape[-1] + 1)
  module = flows.ActNorm()
  params = module.init(jax.random.key(1), x)["params"]
  y, log_det = module.apply({"params": params}, x)
  axes = tuple(range(y.ndim - 1))
  np.testing.assert_allclose(jnp.mean(y, axes), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.var(y, axes), 1.0, atol=1e-4)
  # log_det = positions * sum_c -log std_c
  positions = math.prod(shape[:-1])
  np.testing.assert_allclose(log_det, -positions * jnp.sum(jnp.log(jnp.std(x, axes))), rtol=1e-5)


def test_actnorm_inside_a_flow_is_initialised_on_the_activations_it_sees():
  """Each ActNorm normalises what the layers before it produce at init."""
  module = flows.VectorFlow(num_steps=2, hidden=8)
  x = 5.0 + 3.0 * jax.random.normal(jax.random.key(0), (128, 2))
  params = module.init(jax.random.key(1), x)["params"]
  # The second step's ActNorm sees the output of step 0 (actnorm, linear, identity coupling).
  h = x
  for name in ("k0_actnorm", "k0_linear", "k0_coupling"):
    layer = {"k0_actnorm": flows.ActNorm(), "k0_linear": flows.InvertibleConv1x1(seed=0),
             "k0_coupling": flows.AffineCoupling("alternate", 0, hidden=8)}[name]
    h, _ = layer.apply({"params": params[name]}, h)
  y, _ = flows.ActNorm().apply({"params": params["k1_actnorm"]}, h)
  np.testing.assert_allclose(jnp.mean(y, 0), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.var(y, 0), 1.0, atol=1e-4)


@pytest.mark.parametrize("mask,shape", [("checkerboard", (4, 4, 2)), ("channel", (2, 2, 4)),
                                        ("alternate", (2,))])
def test_coupling_starts_as_identity(mask, shape):
  module = flows.AffineCoupling(mask, 0, hidden=8)
  x = jax.random.normal(jax.random.key(0), (3,) + shape)
  params = module.init(jax.random.key(1), x)["params"]
  z, log_det = module.apply({"params": params}, x)
  np.testing.assert_array_equal(z, x)
  np.testing.assert_array_equal(log_det, 0.0)


def test_resnet_coupling_starts_as_identity():
  module = flows.AffineCoupling("checkerboard", 0, hidden=8, res_blocks=2)
  x = jax.random.normal(jax.random.key(0), (3, 4, 4, 2))
  params = module.init(jax.random.key(1), x)["params"]
  z, log_det = module.apply({"params": params}, x)
  np.testing.assert_array_equal(z, x)
  np.testing.assert_array_equal(log_det, 0.0)


@pytest.mark.parametrize("res_blocks", [0, 1, 2])
def test_conv_conditioner_receptive_field_grows_by_two_pixels_per_conv(res_blocks):
  """conv3x3 - [res blocks of two conv3x3] - conv1x1 - conv3x3: the output at the centre
  depends on exactly the inputs within radius 2 + 2 * res_blocks (the Jacobian's support)."""
  module = flows.ConvConditioner(hidden=4, out=1, res_blocks=res_blocks)
  h = jax.random.normal(jax.random.key(0), (1, 15, 15, 1))
  params = perturb(module.init(jax.random.key(1), h)["params"], 3)
  grad = jax.grad(lambda h: module.apply({"params": params}, h)[0, 7, 7, 0])(h)[0, :, :, 0]
  rows, cols = np.nonzero(np.abs(np.asarray(grad)) > 0)
  radius = 2 + 2 * res_blocks
  assert max(np.abs(rows - 7).max(), np.abs(cols - 7).max()) == radius


def test_coupling_masks_pass_half_through():
  b = flows.coupling_mask((4, 4, 2), "checkerboard", 0)
  assert b.sum() == 16 and b[0, 0, 0] == 1 and b[0, 1, 0] == 0
  b = flows.coupling_mask((2, 2, 4), "channel", 1)
  np.testing.assert_array_equal(b[0, 0], [0, 0, 1, 1])
  np.testing.assert_array_equal(flows.coupling_mask((3,), "alternate", 1), [0, 1, 0])


def test_squeeze_layout_and_inverse():
  x = jnp.arange(2 * 4 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 4, 1)
  y = flows.squeeze(x)
  assert y.shape == (2, 2, 2, 4)
  np.testing.assert_array_equal(y[0, 0, 0], [0, 1, 4, 5])  # the top-left 2x2 block
  np.testing.assert_array_equal(flows.unsqueeze(y), x)


def test_multiscale_plan_shapes_and_errors():
  _, latents = flows.multiscale_plan((8, 8, 1), 2, "glow")
  assert latents == [(4, 4, 2), (2, 2, 8)]
  _, latents = flows.multiscale_plan((8, 8, 1), 3, "realnvp")
  assert latents == [(4, 4, 2), (2, 2, 4), (2, 2, 4)]
  _, latents = flows.multiscale_plan((28, 28, 1), 2, "glow")
  assert latents == [(14, 14, 2), (7, 7, 8)]
  assert sum(math.prod(s) for s in latents) == 28 * 28
  with pytest.raises(ValueError, match="divisible by 8"):
    flows.multiscale_plan((28, 28, 1), 3, "glow")
  with pytest.raises(ValueError, match="too small"):
    flows.multiscale_plan((8, 8, 1), 4, "realnvp")


# --- the loss -----------------------------------------------------------------

def test_uniform_flow_on_levels_scores_log2_levels():
  """A density uniform on [0, 1)^D for y = v / L (log p_y = 0) is uniform on [0, L)^D: log2(L) bits/dim."""
  for levels in (2, 17, 256):
    d = 64
    log_p_v = nll_lib.dequantized_log_likelihood(jnp.zeros((3,)), d, 1.0 / levels)
    np.testing.assert_allclose(log_p_v, -d * np.log(levels), rtol=1e-6)
    np.testing.assert_allclose(nll_lib.bits_per_dim(-log_p_v, d), np.log2(levels), rtol=1e-6)


def test_dequantized_flow_nll_by_hand():
  """Identity flow, standard normal base, y = (x + u) / L - 1/2: the NLL computed by hand."""
  levels, d = 17, 6
  x = jnp.array([[0, 3, 16, 8, 1, 9], [16, 16, 0, 0, 5, 2]], jnp.uint8)
  rng = jax.random.key(7)
  v = nll_lib.uniform_dequantize(rng, x)
  u = np.asarray(v) - np.asarray(x, np.float64)
  assert np.all((u >= 0) & (u < 1))
  y = (np.asarray(x, np.float64) + u) / levels - 0.5
  by_hand = (0.5 * (y**2).sum(1) + 0.5 * d * np.log(2 * np.pi) + d * np.log(levels))  # nats
  z = jnp.asarray(y, jnp.float32)
  bpd, metrics = nll_lib.dequantized_flow_nll(nll_lib.standard_normal_log_prob(z),
                                              jnp.zeros((2,)), d, levels)
  np.testing.assert_allclose(metrics["nll_nats"], by_hand.mean(), rtol=1e-6)
  np.testing.assert_allclose(bpd, by_hand.mean() / d / np.log(2), rtol=1e-6)
  # A log_det adds to log p: the NLL drops by its mean.
  _, m2 = nll_lib.dequantized_flow_nll(nll_lib.standard_normal_log_prob(z), jnp.array([1.0, 3.0]),
                                       d, levels)
  np.testing.assert_allclose(m2["nll_nats"], by_hand.mean() - 2.0, rtol=1e-6)


def test_standard_normal_log_prob():
  z = jnp.array([[0.0, 0.0], [1.0, -2.0]])
  np.testing.assert_allclose(nll_lib.standard_normal_log_prob(z),
                             [-np.log(2 * np.pi), -np.log(2 * np.pi) - 2.5], rtol=1e-6)


def test_logit_transform_inverts_and_log_det_matches_brute_force_jacobian():
  """RealNVP's y = logit(alpha + (1 - 2 alpha) w) on w in [0, 1), checked by hand and by jacfwd."""
  alpha = 0.05
  module = flows.LogitTransform(alpha)
  w = jax.random.uniform(jax.random.key(0), (3, 4, 4, 1))
  y, log_det = module.apply({}, w)
  s = alpha + (1 - 2 * alpha) * np.asarray(w, np.float64)
  np.testing.assert_allclose(y, np.log(s / (1 - s)), rtol=1e-5, atol=1e-5)
  w_back, log_det_inv = module.apply({}, y, reverse=True)
  np.testing.assert_allclose(w_back, w, atol=2e-6)
  np.testing.assert_allclose(log_det_inv, -log_det, rtol=1e-5)
  for i in range(2):
    np.testing.assert_allclose(float(log_det[i]), brute_force_log_det(module, {}, w[i]), atol=1e-4)
  # w = 0 and w -> 1 stay finite (y = logit(alpha), logit(1 - alpha)).
  y_edges, _ = module.apply({}, jnp.array([[0.0, 1.0]]))
  np.testing.assert_allclose(y_edges, [[np.log(alpha / (1 - alpha)), np.log((1 - alpha) / alpha)]],
                             rtol=1e-5)


def test_learned_split_prior_starts_as_the_standard_prior():
  """Its conv is zero-initialised: mu = 0, sigma = 1, so at init the flow (same other params)
  maps x to the same z with the same log_det as with RealNVP's N(0, I) split."""
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  standard = flows.MultiScaleFlow((8, 8, 1), 2, 1, 8, "glow", "standard")
  learned = flows.MultiScaleFlow((8, 8, 1), 2, 1, 8, "glow", "learned")
  params = learned.init(jax.random.key(1), x)["params"]
  assert set(params) - set(standard.init(jax.random.key(1), x)["params"]) == {"split0_prior"}
  shared = {k: v for k, v in params.items() if k != "split0_prior"}
  z_l, ld_l = learned.apply({"params": params}, x)
  z_s, ld_s = standard.apply({"params": shared}, x)
  np.testing.assert_array_equal(z_l, z_s)
  np.testing.assert_allclose(ld_l, ld_s, atol=1e-5)


# --- mixed precision and remat (gen_jax.policy) -------------------------------

SINGLE_LAYERS = ["actnorm_image", "actnorm_vector", "conv1x1_image", "linear_vector",
                 "coupling_checkerboard", "coupling_channel_odd", "coupling_alternate",
                 "coupling_checkerboard_resnet"]
WHOLE_FLOWS = ["glow_4x4x2_split_prior", "glow_digits", "realnvp_4x4x2",
               "realnvp_digits_3_scales_split_prior", "vector_flow"]


def bf16_apply(module, params, x):
  """(z, log_det) as the training step computes them under a bfloat16 policy."""
  from gen_jax import policy as policy_lib
  policy = policy_lib.Policy(compute_dtype=jnp.bfloat16)
  with policy.active():
    return module.apply({"params": policy.cast_to_compute(params)}, x), policy


@pytest.mark.parametrize("name", SINGLE_LAYERS)
def test_bfloat16_layer_log_det_is_float32_and_the_exact_log_det_of_the_computed_map(name):
  """Under a bfloat16 policy a layer's log_det is float32 and equals log|det jacfwd| of the
  map it computes (bfloat16 conditioner included) to float32 rounding, as in float32."""
  module, params, x = init_perturbed(name)
  (z, log_det), policy = bf16_apply(module, params, x)
  assert z.dtype == log_det.dtype == jnp.float32
  with policy.active():
    for i in range(2):
      expected = brute_force_log_det(module, policy.cast_to_compute(params), x[i])
      np.testing.assert_allclose(float(log_det[i]), expected, atol=1e-4)


@pytest.mark.parametrize("name", ["actnorm_image", "conv1x1_image", "linear_vector"])
def test_bfloat16_actnorm_and_conv1x1_sum_their_log_det_in_float32(name):
  """No conditioner: under bfloat16 the layer is bitwise the float32 layer with its
  parameters rounded to bfloat16 -- a bfloat16 sum of the log-scales would not be."""
  module, params, x = init_perturbed(name)
  (z, log_det), _ = bf16_apply(module, params, x)
  rounded = jax.tree.map(lambda p: p.astype(jnp.bfloat16).astype(jnp.float32), params)
  z32, log_det32 = module.apply({"params": rounded}, x)
  np.testing.assert_array_equal(log_det, log_det32)
  np.testing.assert_array_equal(z, z32)


@pytest.mark.parametrize("name", WHOLE_FLOWS)
def test_bfloat16_flow_log_det_is_float32_and_close_to_float32(name):
  """A whole flow under bfloat16 (conditioners in bfloat16): float32 z and log_det within
  1.5e-2 of the float32 flow's (relative to its largest |log_det|), every reduction of the
  traced map over float32 and its convolutions / matmuls with a bfloat16 operand."""
  module, params, x = init_perturbed(name)
  z32, log_det32 = module.apply({"params": params}, x)
  (z, log_det), policy = bf16_apply(module, params, x)
  assert z.dtype == log_det.dtype == jnp.float32
  np.testing.assert_allclose(log_det, log_det32, atol=1.5e-2 * float(jnp.abs(log_det32).max()))
  with policy.active():
    jaxpr = jax.make_jaxpr(lambda p: module.apply({"params": p}, x))(
        policy.cast_to_compute(params)).jaxpr
  found = list(eqns(jaxpr))
  sums = [e for e in found if e.primitive.name == "reduce_sum"]
  assert sums and all(v.aval.dtype == jnp.float32 for e in sums for v in e.invars)
  convs = [e for e in found if e.primitive.name in ("conv_general_dilated", "dot_general")
           and any(v.aval.dtype == jnp.bfloat16 for v in e.invars)]
  assert convs          # the conditioners really ran in bfloat16


@pytest.mark.parametrize("name,remat", [("glow_digits", "blocks"),
                                        ("realnvp_4x4x2_resnet", "dots_with_no_batch_dims_saveable"),
                                        ("vector_flow", "blocks")])
def test_remat_flow_gives_the_same_loss_and_gradients_and_holds_less(name, remat):
  """Rematerialised coupling conditioners: same parameter tree, the same NLL and gradients as
  without (float rounding), fewer bytes held for the backward pass, and the remat really in
  the gradient's jaxpr."""
  from gen_jax import policy as policy_lib
  module, params, x = init_perturbed(name)

  def loss(p):
    z, log_det = module.apply({"params": p}, x)
    return jnp.mean(0.5 * jnp.sum(z**2, axis=1) - log_det)

  def held(p):   # bytes of the VJP's residuals
    return sum(r.size * r.dtype.itemsize for r in jax.tree.leaves(jax.vjp(loss, p)[1]))

  ref_loss, ref_grads = jax.value_and_grad(loss)(params)
  ref_held = held(params)
  assert "remat" not in str(jax.make_jaxpr(jax.grad(loss))(params))
  with policy_lib.Policy(remat=remat).active():
    tree = jax.tree.structure(module.init(jax.random.key(1), x)["params"])
    assert tree == jax.tree.structure(params)
    value, grads = jax.value_and_grad(loss)(params)
    assert "remat" in str(jax.make_jaxpr(jax.grad(loss))(params))
    assert held(params) < 0.9 * ref_held
  np.testing.assert_allclose(value, ref_loss, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
