"""text2image: caption wording and tokenization, the loss's masking, a tiny model that learns
which code image each prompt asks for."""
from __future__ import annotations

import math
import re
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gen_jax.data import captions
from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.paradigms import text2image


# --- captions ------------------------------------------------------------------------------

def test_every_digit_has_several_wordings_that_name_it_and_no_other_digit():
  for c in range(10):
    texts = {captions.caption(c, t) for t in range(len(captions.TEMPLATES))}
    assert len(texts) >= 8, texts
    assert captions.NUMBER_WORDS[c] in texts and str(c) in texts     # "seven" and "7" alone
    assert any(t.startswith("a handwritten") for t in texts) and "the digit %d" % c in texts
    for text in texts:
      words = set(text.split())
      named = {d for d in range(10) if captions.NUMBER_WORDS[d] in words or str(d) in words}
      assert named == {c}, text


@pytest.mark.parametrize("level", ["word", "char"])
def test_tokenization_round_trips(level):
  vocab = captions.make_vocab(level)
  for c in range(10):
    for t in range(len(captions.TEMPLATES)):
      text = captions.caption(c, t)
      ids = vocab.encode(text)
      assert ids.shape == (vocab.max_len,) and ids.dtype == np.int32
      assert vocab.decode(ids) == text
  assert vocab.decode(vocab.encode("  A   Handwritten\tTHREE ")) == "a handwritten three"
  table = captions.caption_table(vocab)
  assert table.shape == (10, len(captions.TEMPLATES), vocab.max_len)
  assert vocab.decode(table[7, 0]) == "a handwritten seven"


def test_word_vocabulary_is_the_template_words():
  vocab = captions.make_vocab("word")
  assert vocab.tokens[0] == captions.PAD
  assert max(len(captions.caption(c, t).split()) for c in range(10)
             for t in range(len(captions.TEMPLATES))) == vocab.max_len
  assert {"a", "handwritten", "digit", "seven", "7"} <= set(vocab.tokens)


def test_out_of_vocabulary_prompts_name_the_unknown_words_and_characters():
  words = captions.make_vocab("word")
  with pytest.raises(UserError) as e:
    words.encode("a sketch of a three, please")
  msg = str(e.value)
  assert "'sketch'" in msg and "'three,'" in msg and "'please'" in msg
  assert "'handwritten'" in msg                       # lists what is allowed
  assert "'a'" not in msg.split("vocabulary:")[1].split(". Allowed")[0]   # known words not blamed
  chars = captions.make_vocab("char")
  with pytest.raises(UserError) as e:
    chars.encode("a handwritten 3!?")
  unknown = msg_unknown = str(e.value).split("vocabulary:")[1].split(". Allowed")[0]
  assert set(re.findall(r"'(.)'", unknown)) == {"!", "?"}, msg_unknown
  with pytest.raises(UserError, match="at most"):
    words.encode("the digit " * 10)


# --- the loss ------------------------------------------------------------------------------

def _ce(z, y):
  return math.log(sum(math.exp(v) for v in z)) - z[y]


def test_loss_is_the_image_cross_entropy_and_adds_text_only_with_its_weight():
  k, v, lc, n = 3, 2, 2, 3                  # 3 codes, 2 caption tokens, caption 2, 3 codes
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, lc + n, k + v)).astype(np.float32)
  targets = np.array([[k + 1, k + 0, 2, 0, 1], [k + 0, k + 0, 1, 1, 0]])
  by_hand_image = np.mean([_ce(logits[b, j, :k], targets[b, j]) for b in range(2)
                           for j in range(lc, lc + n)])
  by_hand_text = np.mean([_ce(logits[b, j, k:], targets[b, j] - k) for b in range(2)
                          for j in range(lc)])
  loss0, m = text2image.caption_image_nll(jnp.asarray(logits), jnp.asarray(targets), lc, k, 0.0)
  np.testing.assert_allclose(loss0, by_hand_image, rtol=1e-6)
  np.testing.assert_allclose(m["text_nats_per_token"], by_hand_text, rtol=1e-6)
  # Changing the caption logits leaves the weight-0 loss unchanged.
  other = logits.copy()
  other[:, :lc] += 5 * rng.normal(size=other[:, :lc].shape)
  np.testing.assert_allclose(
      text2image.caption_image_nll(jnp.asarray(other), jnp.asarray(targets), lc, k, 0.0)[0],
      by_hand_image, rtol=1e-6)
  loss_w, _ = text2image.caption_image_nll(jnp.asarray(logits), jnp.asarray(targets), lc, k, 0.25)
  np.testing.assert_allclose(loss_w, by_hand_image + 0.25 * by_hand_text, rtol=1e-6)


# --- a tiny model --------------------------------------------------------------------------

def _pattern(c):
  """The 2x2 code image of digit c (K = 10 codes): distinct for every digit."""
  return np.array([c, c, (c + 1) % 10, (c + 3) % 10]).reshape(2, 2)


def _codes_info():
  stage1 = types.SimpleNamespace(decode=lambda z: (z[..., None] / 9.0).astype(jnp.float32))
  return DatasetInfo(name="encoded", kind="codes", shape=(2, 2), num_levels=10, num_classes=10,
                     num_codes=10, image_shape=(2, 2, 1), stage1=stage1)


def test_a_tiny_model_learns_which_code_image_each_prompt_asks_for(adam_fit):
  model = ml_collections.ConfigDict(dict(num_layers=2, num_heads=2, embed_dim=32, mlp_ratio=2,
                                         caption_level="word"))
  p = text2image.make(model, _codes_info())
  assert p.log_likelihood is None
  labels = np.tile(np.arange(10), 6)
  batch = {"codes": jnp.asarray(np.stack([_pattern(c) for c in labels])),
           "label": jnp.asarray(labels)}
  params = p.init(jax.random.key(0), batch)
  params, loss = adam_fit(p, params, batch, 250)
  assert float(loss) < 0.1, float(loss)      # the codes are a function of the caption's digit
  for prompt, c in [("a handwritten three", 3), ("the digit 7", 7), ("Zero", 0)]:
    images = p.sample(params, jax.random.key(c), 8, prompt=prompt, temperature=0.5)
    assert images.shape == (8, 2, 2, 1)
    codes = np.rint(np.asarray(images)[..., 0] * 9).astype(int)
    assert (codes == _pattern(c)).all(axis=(1, 2)).mean() >= 0.75, (prompt, codes)
  grid = np.asarray(p.sample(params, jax.random.key(0), 10, temperature=0.5))   # row i: digit i
  assert grid.shape == (10, 2, 2, 1)
  with pytest.raises(UserError, match="'sketch'"):
    p.sample(params, jax.random.key(0), 2, prompt="a sketch of a three")
