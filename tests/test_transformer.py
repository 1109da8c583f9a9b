"""Truth tests of gen_jax.nets.transformer: causality, the key/value cache, the attention
kernel against a softmax attention written out here, and rematerialisation."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import policy as policy_lib
from gen_jax.errors import UserError
from gen_jax.nets.transformer import Transformer
from gen_jax.paradigms import gpt

V, T, B = 11, 12, 3


def _model(**kw):
  kw = dict(vocab_size=V, max_len=T, num_layers=2, num_heads=2, embed_dim=16) | kw
  return Transformer(**kw)


def _setup(seed=0, **kw):
  model = _model(**kw)
  tokens = jax.random.randint(jax.random.key(seed), (B, T), 0, V)
  params = model.init(jax.random.key(seed + 1), tokens)
  return model, params, tokens


def test_shapes_and_tied_embeddings():
  model, params, tokens = _setup()
  logits = model.apply(params, tokens)
  assert logits.shape == (B, T, V)
  names = set(params["params"])
  assert "wte" in names and not any("head" in n for n in names)  # output uses wte^T


@pytest.mark.parametrize("t", [0, 5, T - 1])
def test_causality_changing_token_t_leaves_earlier_logits(t):
  model, params, tokens = _setup(use_bias=True)
  changed = tokens.at[:, t].set((tokens[:, t] + 1) % V)
  a, b = model.apply(params, tokens), model.apply(params, changed)
  np.testing.assert_array_equal(np.asarray(a[:, :t]), np.asarray(b[:, :t]))
  assert np.abs(np.asarray(a[:, t:] - b[:, t:])).max() > 1e-4  # the change is seen from t on


def test_bidirectional_sees_the_future():
  model, params, tokens = _setup(causal=False)
  changed = tokens.at[:, -1].set((tokens[:, -1] + 1) % V)
  a, b = model.apply(params, tokens), model.apply(params, changed)
  assert np.abs(np.asarray(a[:, 0] - b[:, 0])).max() > 1e-4


@pytest.mark.parametrize("prefill", [1, 4])
def test_cached_logits_equal_full_forward_at_every_position(prefill):
  model, params, tokens = _setup(use_bias=True)
  full = model.apply(params, tokens)
  cache = model.apply(params, B, method=Transformer.init_cache)
  step = jax.jit(lambda tok, cache, i: model.apply(params, tok, cache, i, method=Transformer.decode))
  logits, cache = step(tokens[:, :prefill], cache, 0)
  got = [logits]
  for i in range(prefill, T):
    logits, cache = step(tokens[:, i:i + 1], cache, i)
    got.append(logits)
  np.testing.assert_allclose(np.concatenate(got, 1), full, atol=1e-5, rtol=0)


def test_conditioning_prefix_is_attended_and_cached():
  model, params, tokens = _setup()
  cond = jax.random.normal(jax.random.key(7), (B, 2, 16))
  short = tokens[:, :T - 2]
  full = model.apply(params, short, cond=cond)
  assert full.shape == (B, T - 2, V)
  assert np.abs(np.asarray(full - model.apply(params, short, cond=-cond))).max() > 1e-4
  cache = model.apply(params, B, method=Transformer.init_cache)
  logits, cache = model.apply(params, short[:, :3], cache, 0, cond=cond, method=Transformer.decode)
  got = [logits]
  for i in range(3, T - 2):
    logits, cache = model.apply(params, short[:, i:i + 1], cache, i + 2, method=Transformer.decode)
    got.append(logits)
  np.testing.assert_allclose(np.concatenate(got, 1), full, atol=1e-5, rtol=0)


def test_dropout_only_in_training():
  model, params, tokens = _setup(dropout=0.5)
  a = model.apply(params, tokens)
  np.testing.assert_array_equal(a, model.apply(params, tokens))
  c = model.apply(params, tokens, train=True, rngs={"dropout": jax.random.key(3)})
  assert np.abs(np.asarray(a - c)).max() > 1e-3


def test_too_long_input_is_an_error():
  model, params, _ = _setup()
  with pytest.raises(ValueError, match="max_len"):
    model.apply(params, jnp.zeros((1, T + 1), jnp.int32))


def test_mlp_written_out_backward_equals_autodiff():
  from gen_jax.nets.transformer import mlp
  ks = jax.random.split(jax.random.key(0), 5)
  x = jax.random.normal(ks[0], (2, 5, 8))
  w1, w2 = jax.random.normal(ks[1], (8, 16)), jax.random.normal(ks[2], (16, 8)) * 0.3
  b1, b2 = jax.random.normal(ks[3], (16,)), jax.random.normal(ks[4], (8,))
  reference = lambda x, w1, b1, w2, b2: jax.nn.gelu(x @ w1 + b1, approximate=True) @ w2 + b2
  f = lambda fn: lambda *a: jnp.sum(jnp.sin(fn(*a)))
  np.testing.assert_allclose(mlp(x, w1, b1, w2, b2), reference(x, w1, b1, w2, b2), atol=1e-5)
  got = jax.grad(f(mlp), argnums=range(5))(x, w1, b1, w2, b2)
  want = jax.grad(f(reference), argnums=range(5))(x, w1, b1, w2, b2)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4)
  g_nobias = jax.grad(f(mlp), argnums=(0, 1, 3))(x, w1, None, w2, None)
  assert g_nobias[0].shape == x.shape


# ------------------------------------------------- reference softmax attention ---

def _layer_norm(x, p):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / jnp.sqrt(var + 1e-5) * p["scale"] + p.get("bias", 0.0)


def _reference_logits(params, tokens, causal):
  """The transformer written out from its parameters, attention as einsum + softmax + mask."""
  p = params["params"]
  h = p["wte"]["embedding"][tokens] + p["wpe"][:tokens.shape[1]]
  t = h.shape[1]
  mask = jnp.tril(jnp.ones((t, t), bool)) if causal else jnp.ones((t, t), bool)
  for i in range(sum(k.startswith("block_") for k in p)):
    blk = p[f"block_{i}"]
    a = blk["attn"]
    x = _layer_norm(h, blk["ln1"])
    q, k, v = (jnp.einsum("btc,chd->bhtd", x, a["qkv_kernel"][:, j])
               + (a["qkv_bias"][j][:, None] if "qkv_bias" in a else 0.0) for j in range(3))
    s = jnp.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(q.shape[-1])
    s = jnp.where(mask, s, -jnp.inf)
    y = jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(s, axis=-1), v)
    h = h + jnp.einsum("bhtd,hdc->btc", y, a["proj_kernel"]) + a.get("proj_bias", 0.0)
    m = blk["mlp"]
    x = _layer_norm(h, blk["ln2"])
    x = jax.nn.gelu(x @ m["fc_kernel"] + m.get("fc_bias", 0.0), approximate=True)
    h = h + x @ m["fc_out_kernel"] + m.get("fc_out_bias", 0.0)
  return _layer_norm(h, p["ln_f"]) @ p["wte"]["embedding"].T


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dot_product_attention_equals_written_out_softmax_attention(causal, use_bias):
  model, params, tokens = _setup(causal=causal, use_bias=use_bias)
  np.testing.assert_allclose(model.apply(params, tokens), _reference_logits(params, tokens, causal),
                             atol=1e-5, rtol=1e-5)


def _prefill_then_decode(model, params, tokens):
  """Logits of a 5-token prefill, then one cached token at a time."""
  cache = model.apply(params, B, method=Transformer.init_cache)
  logits, cache = model.apply(params, tokens[:, :5], cache, 0, method=Transformer.decode)
  got = [logits]
  for i in range(5, T):
    logits, cache = model.apply(params, tokens[:, i:i + 1], cache, i, method=Transformer.decode)
    got.append(logits)
  return np.concatenate(got, 1)


def test_cached_decoding_equals_written_out_softmax_attention():
  model, params, tokens = _setup(use_bias=True)
  np.testing.assert_allclose(_prefill_then_decode(model, params, tokens), _reference_logits(params, tokens, True),
                             atol=1e-5, rtol=1e-5)


def test_unknown_attention_impl_is_refused():
  tokens = jnp.zeros((1, T), jnp.int32)
  with pytest.raises(UserError, match="xla, cudnn"):
    _model(attention_impl="flash").init(jax.random.key(0), tokens)
  with pytest.raises(UserError, match="xla, cudnn"):
    gpt.make_model({"attention_impl": "flash"}, V, T)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="cuDNN is there on a GPU")
def test_cudnn_without_a_gpu_is_refused():
  with pytest.raises(UserError, match="attention_impl=xla") as e:
    gpt.make_model({"attention_impl": "cudnn"}, V, T)
  assert "\n" not in str(e.value)
  with pytest.raises(UserError, match="attention_impl=xla"):
    _model(attention_impl="cudnn").init(jax.random.key(0), jnp.zeros((1, T), jnp.int32))


# ------------------------------------------------------- rematerialisation ---

def _loss_fn(model, tokens, remat):
  def loss(params):
    with policy_lib.Policy(remat=remat).active():
      logits = model.apply(params, tokens[:, :-1], train=True, rngs={"dropout": jax.random.key(5)})
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], -1).mean()
  return loss


@pytest.mark.parametrize("remat", ["blocks", "dots_with_no_batch_dims_saveable"])
def test_remat_gives_the_same_loss_and_gradients(remat):
  model, params, tokens = _setup(use_bias=True, dropout=0.1)   # dropout: `train` stays static
  want_loss, want_grad = jax.value_and_grad(_loss_fn(model, tokens, "none"))(params)
  loss, grad = jax.value_and_grad(_loss_fn(model, tokens, remat))(params)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7), grad, want_grad)
  primitives = lambda r: str(jax.make_jaxpr(jax.grad(_loss_fn(model, tokens, r)))(params))
  assert "checkpoint" in primitives(remat) or "remat" in primitives(remat)
  assert "checkpoint" not in primitives("none") and "remat" not in primitives("none")
  # What the backward pass holds from the forward one (the vjp's residuals) falls. (XLA's
  # CPU backend drops remat's optimisation barriers, so its compiled memory would not show it.)
  held = lambda r: sum(x.nbytes for x in jax.tree.leaves(jax.vjp(_loss_fn(model, tokens, r),
                                                                   params)[1]))
  assert held(remat) < 0.6 * held("none")


# ------------------------------------------ attention's written-out backward pass ---

def _softmax_attention(q, k, v, mask):
  s = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32))
  s = s if mask is None else jnp.where(mask, s, -jnp.inf)
  return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, -1), v.astype(jnp.float32))


@pytest.mark.parametrize("kind", ["causal", "mask", "bidirectional"])
def test_attention_backward_equals_autodiff_of_softmax_attention(kind):
  from gen_jax.nets.transformer import attention
  kq, kk, kv, kg = jax.random.split(jax.random.key(3), 4)
  tq, tk = (5, 9) if kind == "mask" else (7, 7)
  q = jax.random.normal(kq, (2, tq, 3, 4))
  k, v = jax.random.normal(kk, (2, tk, 3, 4)), jax.random.normal(kv, (2, tk, 3, 4))
  g = jax.random.normal(kg, (2, tq, 3, 4))
  mask = {"causal": jnp.tril(jnp.ones((tq, tk), bool)),
          "mask": jnp.arange(tk)[None, :] <= jnp.arange(tq)[:, None] + 3,   # a cached chunk
          "bidirectional": None}[kind]
  got = jax.vjp(lambda q, k, v: attention(q, k, v, None if kind == "causal" else mask,
                                          kind == "causal"), q, k, v)
  want = jax.vjp(lambda q, k, v: _softmax_attention(q, k, v, mask), q, k, v)
  np.testing.assert_allclose(got[0], want[0], atol=1e-5, rtol=1e-5)
  for a, b in zip(got[1](g), want[1](g)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_attention_backward_in_bfloat16_stays_bfloat16_and_close():
  from gen_jax.nets.transformer import attention
  q, k, v, g = jax.random.normal(jax.random.key(4), (4, 2, 16, 2, 8))
  grads = jax.vjp(lambda *a: attention(*a, None, True), *(z.astype(jnp.bfloat16) for z in (q, k, v))
                  )[1](g.astype(jnp.bfloat16))
  want = jax.vjp(lambda *a: _softmax_attention(*a, jnp.tril(jnp.ones((16, 16), bool))), q, k, v)[1](g)
  for a, b in zip(grads, want):
    assert a.dtype == jnp.bfloat16
    np.testing.assert_allclose(a.astype(jnp.float32), b, atol=0.1, rtol=0.05)


def test_rotary_scores_depend_only_on_the_offset_and_keep_norms():
  from gen_jax.nets.transformer import rotary
  q, k = jax.random.normal(jax.random.key(8), (2, 1, 1, 1, 16))
  score = lambda m, n: float(jnp.sum(rotary(q, jnp.array([m])) * rotary(k, jnp.array([n]))))
  np.testing.assert_allclose(score(3, 1), score(13, 11), rtol=1e-5)
  np.testing.assert_allclose(score(0, 0), float(jnp.sum(q * k)), rtol=1e-6)
  assert abs(score(3, 1) - score(1, 3)) > 1e-3          # not symmetric: the sign of the offset counts
  np.testing.assert_allclose(jnp.linalg.norm(rotary(q, jnp.array([7]))), jnp.linalg.norm(q), rtol=1e-6)


def test_rope_cached_decoding_equals_the_full_forward():
  model, params, tokens = _setup(rope=True)
  np.testing.assert_allclose(_prefill_then_decode(model, params, tokens), model.apply(params, tokens),
                             atol=1e-5, rtol=1e-5)
