"""any2any: the sequence layout, the loss's masking, KV-cached decoding against the full
re-forward, modality-restricted sampling, the likelihood, refusals, and tiny models that learn
both directions (on a fixed batch, and through the loop on a tiny VQ-VAE's codes)."""
from __future__ import annotations

import json
import math
import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gen_jax.data import captions
from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.paradigms import any2any
from gen_jax.paradigms.gpt import make_model

TINY = dict(num_layers=1, num_heads=2, embed_dim=16, mlp_ratio=2)


def _pattern(c):
  """The 2x2 code image of digit c (K = 10 codes): distinct for every digit."""
  return np.array([c, c, (c + 1) % 10, (c + 3) % 10]).reshape(2, 2)


def _codes_info():
  """Codes [2, 2] of K = 10; the stage-1 'decoder' returns the codes themselves as floats (so a
  test reads the drawn codes back), the 'encoder' reads them from the image's first channel."""
  stage1 = types.SimpleNamespace(
      decode=lambda z: jnp.asarray(z, jnp.float32)[..., None],
      encode=lambda x: jnp.asarray(x, jnp.int32)[..., 0],
      decoder_log_likelihood=lambda z, x: -0.5 * jnp.sum(jnp.asarray(x, jnp.float32), axis=(1, 2, 3)))
  return DatasetInfo(name="encoded", kind="codes", shape=(2, 2), num_levels=10, num_classes=10,
                     num_codes=10, image_shape=(2, 2, 1), stage1=stage1)


def _batch(labels):
  codes = np.stack([_pattern(c) for c in labels])
  return {"codes": jnp.asarray(codes), "label": jnp.asarray(labels),
          "image": jnp.asarray(codes[..., None].astype(np.uint8))}


# --- the sequences -------------------------------------------------------------------------

def test_sequences_put_the_markers_and_parts_where_the_docstring_says():
  # K = 3 codes, V = 4 text tokens (<pad> = text 0 = id 3), N = 2 codes, L = 2, L_a = 1:
  # <text> = 7, <image> = 8, </image> = 9, T = 2 + 2 + 1 + 3 = 8.
  layout = any2any.Layout(num_codes=3, text_size=4, num_image_tokens=2, text_len=2, answer_len=1)
  assert (layout.text_marker, layout.image_marker, layout.end_image_marker) == (7, 8, 9)
  assert (layout.vocab_size, layout.length, layout.pad) == (10, 8, 3)
  kinds = jnp.array([0, 1, 2])                      # text -> image, caption, "what digit"
  codes = jnp.array([[0, 1], [2, 0], [1, 1]])
  caption_ids = jnp.array([[1, 2], [3, 0], [1, 1]])
  question_ids = jnp.array([[2, 2], [2, 2], [1, 3]])
  answer_ids = jnp.array([[1], [1], [2]])
  s, targets = layout.sequences(kinds, codes, caption_ids, question_ids, answer_ids)
  np.testing.assert_array_equal(s, [
      [7, 3 + 1, 3 + 2, 8, 0, 1, 3, 3],             # <text> y1 y2 <image> z1 z2 <pad> <pad>
      [8, 2, 0, 9, 7, 3 + 3, 3 + 0, 3],             # <image> z1 z2 </image> <text> y1 y2 <pad>
      [8, 1, 1, 9, 7, 3 + 1, 3 + 3, 3 + 2]])        # <image> z1 z2 </image> <text> q1 q2 a1
  np.testing.assert_array_equal(targets, [
      [0, 0, 0, 0, 1, 1, 0, 0],                     # the codes
      [0, 0, 0, 0, 0, 1, 1, 0],                     # the caption (its <pad> included)
      [0, 0, 0, 0, 0, 0, 0, 1]])                    # the answer only
  np.testing.assert_array_equal(layout.is_image_target(kinds),
                                [[0, 0, 0, 0, 1, 1, 0, 0], [0] * 8, [0] * 8])


def test_training_sequences_hold_the_true_answers_and_both_directions():
  """Through the loss: every example's target text is its label's answer or caption."""
  p = any2any.make(ml_collections.ConfigDict(TINY), _codes_info())
  vocab = any2any.text_vocab(TINY)
  labels = np.arange(200) % 10
  batch = _batch(labels)
  params = p.init(jax.random.key(0), batch)
  _, metrics = p.loss(params, batch, jax.random.key(1))
  assert 0.35 < float(metrics["text_to_image_share"]) < 0.65
  # The answer table a question sequence reads from is captions.answer of the true label.
  for c in range(10):
    for kind in captions.QA_KINDS:
      assert vocab.decode(vocab.encode(captions.answer(c, kind))) == captions.answer(c, kind)


# --- the loss ------------------------------------------------------------------------------

def _ce(z, y):
  return math.log(sum(math.exp(v) for v in z)) - z[y]


def test_the_loss_is_the_per_example_mean_cross_entropy_of_the_targets_alone():
  k, v = 3, 4
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, k + v + 3)).astype(np.float32)
  targets = np.array([[9, 0, 2, 3, 5], [8, 3 + 2, 3 + 0, 7, 1]])
  is_target = np.array([[0, 1, 1, 0, 0], [0, 1, 1, 0, 0]], bool)
  is_image = np.array([[0, 1, 1, 0, 0], [0, 0, 0, 0, 1]], bool)
  # Example 0: two code targets (softmax over the 3 code columns); example 1: two text targets
  # (softmax over the 4 text columns, ids minus K).
  by_hand_0 = (_ce(logits[0, 1, :k], 0) + _ce(logits[0, 2, :k], 2)) / 2
  by_hand_1 = (_ce(logits[1, 1, k:k + v], 2) + _ce(logits[1, 2, k:k + v], 0)) / 2
  loss, m = any2any.modality_nll(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(is_target),
                                 jnp.asarray(is_image), k, v)
  np.testing.assert_allclose(loss, (by_hand_0 + by_hand_1) / 2, rtol=1e-6)
  np.testing.assert_allclose(m["image_nats_per_token"], by_hand_0, rtol=1e-6)
  np.testing.assert_allclose(m["text_nats_per_token"], by_hand_1, rtol=1e-6)
  # Any change of the logits at a non-target position, or in the other modality's (or the
  # markers') columns of a target position, leaves the loss as it was.
  other = logits.copy()
  other[~is_target] += 7 * rng.normal(size=other[~is_target].shape)
  other[0, 1:3, k:] += 5.0
  other[1, 1:3, :k] -= 3.0
  other[1, 1:3, k + v:] += 4.0
  np.testing.assert_allclose(
      any2any.modality_nll(jnp.asarray(other), jnp.asarray(targets), jnp.asarray(is_target),
                           jnp.asarray(is_image), k, v)[0], loss, rtol=1e-6)


# --- decoding ------------------------------------------------------------------------------

def _tiny(level="word", seed=0):
  fields = {**TINY, "caption_level": level}
  p = any2any.make(ml_collections.ConfigDict(fields), _codes_info())
  params = p.init(jax.random.key(seed), _batch(np.arange(10)))
  return p, params, fields


def test_the_kv_cached_answer_is_the_full_re_forwards():
  p, params, fields = _tiny("char")                   # answers of up to 6 characters
  vocab = any2any.text_vocab(fields)
  layout_len = 4 + vocab.max_len + any2any.answer_len(vocab) + 3
  model = make_model(any2any.Fields(**fields), 10 + vocab.size + 3, layout_len)
  codes = jnp.asarray(np.stack([_pattern(c) for c in range(4)]))
  question = "what is it plus two?"
  cached = p.sample(params, jax.random.key(3), 4, codes=codes, question=question, temperature=0.0)
  naive = p.sample(params, jax.random.key(3), 4, codes=codes, question=question, temperature=0.0,
                   naive=True)
  np.testing.assert_array_equal(cached, naive)
  # A second, written-out greedy decoder: the whole sequence re-read for every answer token,
  # the argmax taken over the text columns only.
  k, v = 10, vocab.size
  s = np.concatenate([np.full((4, 1), k + v + 1), codes.reshape(4, 4), np.full((4, 1), k + v + 2),
                      np.full((4, 1), k + v), k + np.broadcast_to(vocab.encode(question), (4, vocab.max_len))],
                     axis=1)
  for _ in range(any2any.answer_len(vocab)):
    logits = model.apply({"params": params}, jnp.asarray(s, jnp.int32))[:, -1, k:k + v]
    s = np.concatenate([s, k + np.asarray(jnp.argmax(logits, -1))[:, None]], axis=1)
  np.testing.assert_array_equal(cached, s[:, -any2any.answer_len(vocab):] - k)
  # Sampled at a temperature with top-k / top-p, the two decoders draw the same tokens.
  for opts in (dict(temperature=1.0), dict(temperature=0.8, top_k=3), dict(temperature=1.2, top_p=0.9)):
    a = p.sample(params, jax.random.key(5), 4, codes=codes, question=question, **opts)
    b = p.sample(params, jax.random.key(5), 4, codes=codes, question=question, naive=True, **opts)
    np.testing.assert_array_equal(a, b)
  images = p.sample(params, jax.random.key(6), 3, prompt="the digit 4")
  np.testing.assert_array_equal(images, p.sample(params, jax.random.key(6), 3, prompt="the digit 4",
                                                 naive=True))


def test_sampling_never_draws_a_token_of_the_wrong_modality():
  p, params, fields = _tiny()
  vocab = any2any.text_vocab(fields)
  k, v = 10, vocab.size
  # Unrestricted, the same untrained model at temperature 5 draws tokens of every kind, so the
  # check below is not vacuous.
  layout = any2any.Layout(num_codes=k, text_size=v, num_image_tokens=4, text_len=vocab.max_len,
                          answer_len=1)
  model = make_model(any2any.Fields(**fields), layout.vocab_size, layout.length)
  prefix = layout.text_to_image_prefix(jnp.asarray(np.stack([vocab.encode("seven")] * 64)))
  free = np.asarray(any2any.decode(model, params, prefix, 4, 0, layout.vocab_size, 5.0, None, None,
                                   False, jax.random.key(0))[0][:, -4:])
  assert (free >= k).mean() > 0.3, free
  codes = np.asarray(p.sample(params, jax.random.key(0), 64, prompt="seven", temperature=5.0))[..., 0]
  assert codes.shape == (64, 2, 2) and codes.min() >= 0 and codes.max() < k
  assert len(np.unique(codes)) == k                  # every code drawn somewhere, nothing else
  image = np.stack([_pattern(c) for c in np.arange(64) % 10])[..., None].astype(np.uint8)
  for question in (None, "is it even?"):
    text = np.asarray(p.sample(params, jax.random.key(1), 64, image=image, question=question,
                               temperature=5.0, top_p=0.99))
    assert text.min() >= 0 and text.max() < v, text
  strings = any2any.text_of(fields, text)
  assert len(strings) == 64 and all(isinstance(s, str) for s in strings)


# --- likelihood and refusals ---------------------------------------------------------------

def test_log_likelihood_is_the_decoder_term_plus_the_code_log_probabilities_given_the_caption():
  p, params, fields = _tiny()
  vocab = any2any.text_vocab(fields)
  k, v = 10, vocab.size
  labels = np.array([3, 8])
  batch = _batch(labels)
  ll = np.asarray(p.log_likelihood(params, batch, None))
  model = make_model(any2any.Fields(**fields), k + v + 3, 4 + vocab.max_len + 1 + 3)
  for b, c in enumerate(labels):
    z = _pattern(c).reshape(-1)
    s = [k + v] + [k + int(t) for t in vocab.encode(captions.caption(c, 0))] + [k + v + 1] + list(z)
    logits = np.asarray(model.apply({"params": params}, jnp.asarray([s[:-1]])))[0]
    log_p = sum(-_ce(logits[len(s) - 5 + i, :k], z[i]) for i in range(4))
    decoder = -0.5 * z.sum()
    np.testing.assert_allclose(ll[b], decoder + log_p, rtol=1e-5)
  assert p.likelihood_is_exact is False


def test_refusals_name_the_cause_and_the_fix(tmp_path):
  p, params, _ = _tiny()
  codes = jnp.asarray(np.stack([_pattern(3)] * 2))
  with pytest.raises(UserError) as e:
    p.sample(params, jax.random.key(0), 2, codes=codes, question="is it odd?")
  msg = str(e.value)
  assert "'odd'" in msg and "'even'" in msg and "Allowed words" in msg   # names it, lists the rest
  with pytest.raises(UserError, match="'sketch'"):
    p.sample(params, jax.random.key(0), 2, prompt="a sketch of a three")
  with pytest.raises(UserError, match="give image="):
    p.sample(params, jax.random.key(0), 2, question="is it even?")
  with pytest.raises(UserError, match=r"levels \[num=2, 2, 2, 1\]"):
    p.sample(params, jax.random.key(0), 2, image=np.zeros((2, 8, 8, 1), np.uint8), question="is it even?")
  with pytest.raises(UserError, match="text_to_image_share"):
    any2any.make(ml_collections.ConfigDict({**TINY, "text_to_image_share": 1.5}), _codes_info())
  # Without a trained stage 1 the run is refused naming the command that trains it.
  from experiments.configs import any2any as any2any_config
  from gen_jax import workdir as workdir_lib
  config = any2any_config.get_config("digits")
  config.stage1.workdir = str(tmp_path / "no_stage1")
  config.data_dir = str(tmp_path / "tfds")
  with pytest.raises(UserError, match="no stage-1 run.*experiments/configs/vqvae.py:digits"):
    workdir_lib.train(config, str(tmp_path / "a2a"), progress=False)
  assert not os.path.exists(tmp_path / "a2a" / "config.json")


# --- tiny models that learn ----------------------------------------------------------------

def test_a_tiny_model_learns_both_directions_on_a_small_set(adam_fit):
  model = ml_collections.ConfigDict(dict(num_layers=2, num_heads=2, embed_dim=32, mlp_ratio=2))
  p = any2any.make(model, _codes_info())
  labels = np.tile(np.arange(10), 8)
  batch = _batch(labels)
  params = p.init(jax.random.key(0), batch)
  first, _ = p.loss(params, batch, jax.random.key(0))
  params, loss = adam_fit(p, params, batch, 300)
  assert float(loss) < 0.25 * float(first), (float(first), float(loss))
  for prompt, c in [("a handwritten three", 3), ("the digit 7", 7), ("zero", 0)]:
    codes = np.asarray(p.sample(params, jax.random.key(c), 8, prompt=prompt, temperature=0.5))[..., 0]
    assert (codes == _pattern(c)).all(axis=(1, 2)).mean() >= 0.75, (prompt, codes)
  digits = np.arange(10)
  codes = jnp.asarray(np.stack([_pattern(c) for c in digits]))
  for kind, question in captions.QUESTIONS.items():
    said = any2any.text_of(model, p.sample(params, jax.random.key(1), 10, codes=codes, question=question))
    right = np.mean([a == captions.answer(c, kind) for a, c in zip(said, digits)])
    assert right >= 0.9, (kind, said)


def test_a_tiny_any2any_trains_through_the_loop_on_a_tiny_vqvae_and_its_loss_falls(tmp_path_factory, cli):
  from test_two_stage import train_tiny_vqvae
  from experiments.configs import any2any as any2any_config
  from gen_jax import workdir as workdir_lib
  stage1, data_dir = train_tiny_vqvae(str(tmp_path_factory.getbasetemp() / "tiny_stage1"))
  config = any2any_config.get_config("digits")
  config.stage1.workdir, config.stage1.model.num_codes, config.data_dir = stage1, 8, data_dir
  config.model.update(TINY)
  config.model.dropout = 0.0
  config.batch_size, config.eval_batch_size, config.num_samples = 32, 128, 10
  config.num_train_steps, config.eval_max_examples = 100, 64
  config.optimizer.warmup_steps, config.optimizer.learning_rate = 5, 1e-2
  config.log_every_steps, config.checkpoint_every_steps = 10, 100
  config.eval_every_steps = config.sample_every_steps = 100
  workdir = str(tmp_path_factory.mktemp("a2a"))
  workdir_lib.train(config, workdir, progress=False)
  assert os.path.exists(os.path.join(workdir, "samples", "step_100.png"))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    evaluated = [r for r in map(json.loads, f) if "eval/bits_per_dim" in r]
  assert evaluated and evaluated[-1]["eval/bound"], evaluated
  # The loss of one fixed batch (256 training images, one key for the directions and
  # captions) falls well below that of the initial parameters.
  from gen_jax import data
  run, state, step = workdir_lib.restore(workdir)
  kwargs = {k: run.data_kwargs.get(k) for k in ("data_dir", "manual_dir", "stage1")}
  train = data.split_arrays("encoded", "train", **kwargs)
  batch = {k: jnp.asarray(v[:256]) for k, v in train.items()}
  key = jax.random.key(7)
  before = run.paradigm.loss(run.paradigm.init(jax.random.key(0), batch), batch, key)[0]
  after = run.paradigm.loss(state.params, batch, key)[0]
  assert step == 100 and float(after) < 0.8 * float(before), (float(before), float(after))
  # experiments.sample asks about a test image of the stage-1 dataset and prints the answer.
  png = os.path.join(workdir, "asked.png")
  out = cli("experiments.sample", f"--workdir={workdir}", "--image_index=5",
            "--question=is it even?", f"--out={png}").stdout.strip().splitlines()
  assert out[-2].startswith(f"wrote {png} (test image 5, label ") and out[-1] in ("yes", "no"), out
