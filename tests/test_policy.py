"""Mixed precision and remat fields (gen_jax.policy): what runs in bfloat16, what stays float32."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import ddpm, gpt, vae
from gen_jax import policy as policy_lib
from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.train import build as build_lib
from gen_jax.train import loop
from tests.jaxpr_util import eqns

DIGITS = DatasetInfo("digits", "image", (8, 8, 1), num_levels=17, num_classes=10)
TEXT = DatasetInfo("text_file", "text", (17,), vocab="abcdefghij\n")
REDUCTIONS = ("reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin", "cumsum",
              "cumlogsumexp", "reduce_precision")


def tiny(name, **fields):
  if name == "vae":
    config = vae.get_config("digits")
    config.model.channels, config.model.latent_dim = (8,), 2
  elif name == "ddpm":
    config = ddpm.get_config("digits")
    config.model.channels, config.model.channel_mult, config.model.groups = 8, (1, 2), 4
  else:
    config = gpt.get_config("shakespeare_small")
    config.seq_len = 16
    config.model.update(num_layers=1, num_heads=2, embed_dim=16, max_len=16)
  config.batch_size = 8
  config.update(fields)
  return config, (TEXT if name == "gpt" else DIGITS)


def batch_for(info, seed=0):
  rng = np.random.default_rng(seed)
  if info.kind == "text":
    tokens = np.tile(np.arange(info.shape[0]) % len(info.vocab), (8, 1))   # a learnable text
    return {"tokens": tokens.astype(np.int32)}
  return {"image": rng.integers(0, info.num_levels, (8, *info.shape)).astype(np.uint8),
          "label": rng.integers(0, 10, (8,)).astype(np.int32)}


def traced_loss(name):
  """The jaxpr of the paradigm's loss as the step traces it under a bfloat16 policy."""
  config, info = tiny(name, compute_dtype="bfloat16")
  run = build_lib.build(config, info=info)
  batch = run.put_batch(batch_for(info))
  params = run.init_state(batch).params

  def loss(params):
    with run.policy.active():
      return run.paradigm.loss(run.policy.cast_to_compute(params), batch, run.keys["train"])[0]
  return jax.make_jaxpr(loss)(params).jaxpr


@pytest.mark.parametrize("name", ["gpt", "vae", "ddpm"])
def test_bfloat16_runs_the_matmuls_and_the_loss_reduces_over_float32(name):
  jaxpr = traced_loss(name)
  matmuls = [e for e in eqns(jaxpr) if e.primitive.name in ("dot_general", "conv_general_dilated")]
  # Every matmul has a bfloat16 operand (flax's attention with force_fp32_for_softmax weighs
  # the bfloat16 values by float32 probabilities); most run wholly in bfloat16.
  assert matmuls and all(any(v.aval.dtype == jnp.bfloat16 for v in e.invars) for e in matmuls)
  wholly = [e for e in matmuls if all(v.aval.dtype == jnp.bfloat16 for v in e.invars)]
  assert len(wholly) > len(matmuls) / 2, name
  reduced = [e for e in eqns(jaxpr) if e.primitive.name in REDUCTIONS]
  assert reduced
  for e in reduced:
    for v in e.invars:
      assert v.aval.dtype in (jnp.float32, jnp.int32, jnp.bool_), (name, e)


def test_a_bfloat16_model_trains_its_loss_falls_and_its_state_stays_float32():
  config, info = tiny("gpt", compute_dtype="bfloat16", ema_decay=0.9)
  config.optimizer.update(warmup_steps=0, learning_rate=1e-2, schedule="constant")
  run = build_lib.build(config, info=info)
  batch = run.put_batch(batch_for(info))
  state = run.init_state(batch)
  step = loop.jit_train_step(run)
  losses = []
  for _ in range(30):
    state, metrics = step(state, batch, run.keys["train"])
    losses.append(float(metrics["loss"]))
  assert metrics["loss"].dtype == jnp.float32
  assert losses[-1] < 0.7 * losses[0], losses
  for tree in (state.params, state.opt_state, state.ema_params):
    floats = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats and all(x.dtype == jnp.float32 for x in floats)


def test_bfloat16_losses_agree_with_float32_at_init():
  for name in ("gpt", "vae"):
    values = {}
    for dtype in ("float32", "bfloat16"):
      config, info = tiny(name, compute_dtype=dtype)
      run = build_lib.build(config, info=info)
      batch = run.put_batch(batch_for(info))
      state = run.init_state(batch)
      _, metrics = loop.jit_train_step(run)(state, batch, run.keys["train"])
      values[dtype] = float(metrics["loss"])
    np.testing.assert_allclose(values["bfloat16"], values["float32"], rtol=2e-2, err_msg=name)


def test_param_dtype_bfloat16_stores_bfloat16_parameters():
  config, info = tiny("vae", param_dtype="bfloat16", compute_dtype="bfloat16")
  run = build_lib.build(config, info=info)
  params = run.init_state(run.put_batch(batch_for(info))).params
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}


@pytest.mark.parametrize("fields,match", [
    (dict(compute_dtype="float16"), "float16 needs loss scaling.*bfloat16"),
    (dict(param_dtype="float64"), "param_dtype='float64' is not a dtype"),
    (dict(remat="everything"), "remat='everything' is not a rematerialisation policy.*blocks"),
])
def test_bad_accelerator_fields_are_refused_in_one_line(fields, match):
  config, info = tiny("vae", **fields)
  with pytest.raises(UserError, match=match) as e:
    build_lib.build(config, info=info)
  assert "\n" not in str(e.value)


def test_outside_a_step_the_policy_is_float32_without_remat():
  assert policy_lib.current() == policy_lib.Policy()
  with policy_lib.Policy(jnp.bfloat16, remat="blocks").active() as p:
    assert policy_lib.current() is p
  assert policy_lib.current() == policy_lib.Policy()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_token_nll_gradient_is_autodiffs_of_the_log_softmax(dtype):
  """The written-out gradient (softmax recomputed from logits kept in the compute dtype)
  against autodiff of -log_softmax on the same (bfloat16-representable) logits."""
  from gen_jax.losses.nll import token_nll
  logits = (3 * jax.random.normal(jax.random.key(0), (3, 5, 7))).astype(dtype).astype(jnp.float32)
  targets = jax.random.randint(jax.random.key(1), (3, 5), 0, 7)
  reference = lambda z: jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(z), targets[..., None], -1))
  with policy_lib.Policy(dtype).active():
    value, grad = jax.value_and_grad(lambda z: jnp.mean(token_nll(z, targets)))(logits)
  np.testing.assert_allclose(value, reference(logits), rtol=1e-6)
  np.testing.assert_allclose(grad, jax.grad(reference)(logits), atol=1e-7)


def test_remat_and_bfloat16_cut_the_activations_the_backward_pass_holds():
  """gen_jax.train.dry_run.saved_for_backward on a small GPT: remat="blocks" holds a fraction
  of the activations and bfloat16 less again (float32 LayerNorm and loss terms weigh more in a
  tiny model than at paper scale, where the memory suite measures 1.9x); the weights part
  shrinks with bfloat16 copies."""
  from gen_jax.train import dry_run
  held = {}
  for dtype in ("float32", "bfloat16"):
    for remat in ("none", "blocks"):
      config, info = tiny("gpt", compute_dtype=dtype, remat=remat)
      config.model.update(num_layers=4, embed_dim=32)
      held[dtype, remat] = dry_run.saved_for_backward(build_lib.build(config, info=info), 8)
  act = {k: v["activations"] for k, v in held.items()}
  assert act["float32", "blocks"] < act["float32", "none"] / 3, act
  assert act["bfloat16", "blocks"] < act["float32", "blocks"] / 1.3, act   # 1.9x at 124M
  assert held["bfloat16", "none"]["weights"] < held["float32", "none"]["weights"]
