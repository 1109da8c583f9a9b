"""lmm (LLaVA-style image -> text): the answer-only loss by hand, the encoder/projector/GPT
shapes, the frozen classifier encoder, KV-cached answers vs a full re-forward, a tiny model
overfitting a few image-question pairs, the out-of-vocabulary refusal, and the sample CLI."""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from gen_jax.data import captions
from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.nets.vit import ViT
from gen_jax.paradigms import lmm
from gen_jax.paradigms.gpt import make_model

DIGITS = DatasetInfo("digits", "image", (8, 8, 1), num_levels=17, num_classes=10)
TINY = dict(num_layers=1, num_heads=2, embed_dim=32, vit_width=16, vit_depth=1, vit_heads=2,
            dropout=0.0)


def build(**fields):
  config = ml_collections.ConfigDict({**TINY, **fields})
  return config, lmm.make(config, DIGITS)


def batch_of(n, seed=0):
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 17, (n, 8, 8, 1)).astype(np.uint8),
          "label": (np.arange(n) % 10).astype(np.int32)}


def test_answer_loss_is_the_cross_entropy_of_the_answer_positions_only():
  # L = 2 question targets (q_2, <answer>), L_a = 2 answer targets; B = 1, V = 3.
  logits = jnp.asarray([[[5.0, 0.0, 0.0], [0.0, 9.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]])
  targets = jnp.asarray([[2, 0, 1, 0]])
  def ce(row, t):      # -log softmax(row)[t], by hand
    return -(row[t] - np.log(np.sum(np.exp(row))))
  expected = (ce(np.array([1.0, 2.0, 0.0]), 1) + ce(np.array([0.0, 0.0, 3.0]), 0)) / 2
  nats, _ = lmm.answer_nll(logits, targets, question_len=2)
  np.testing.assert_allclose(nats, expected, rtol=1e-6)
  # the question positions get no gradient: changing their logits changes nothing
  grad = jax.grad(lambda l: lmm.answer_nll(l, targets, 2)[0])(logits)
  np.testing.assert_array_equal(grad[:, :2], 0.0)
  assert np.all(np.abs(grad[:, 2:]).sum(-1) > 0)


def test_the_paradigms_loss_predicts_only_the_answer():
  """The loss is unchanged when every question token is replaced (targets masked) but the model
  reads it: only the answer targets count, L_a of them."""
  config, paradigm = build()
  batch = batch_of(4)
  params = paradigm.init(jax.random.key(0), batch)
  loss, metrics = paradigm.loss(params, batch, jax.random.key(1))
  assert np.isfinite(loss) and metrics["nats_per_token"] == loss
  vocab = lmm.text_vocab(config)
  assert captions.answer_len(vocab) == 1 and vocab.max_len == 6   # "is it bigger than five ?"


def test_encoder_and_projector_feed_the_gpt_with_the_right_shapes():
  config, paradigm = build(patch_size=2)
  params = paradigm.init(jax.random.key(0), batch_of(2))
  vocab = lmm.text_vocab(config)
  n, d = 16, 32                          # (8/2)^2 patches, the GPT's width
  assert params["projector"]["fc1"]["kernel"].shape == (16, d)   # ViT width -> D
  assert params["projector"]["fc2"]["kernel"].shape == (d, d)
  assert params["decoder"]["wpe"].shape == (n + vocab.max_len + 1, d)   # [image][q, <answer>][a]
  assert params["decoder"]["wte"]["embedding"].shape == (vocab.size + 1, d)
  tokens = ViT(2, 16, 1, 2).apply({"params": params["encoder"]}, jnp.zeros((2, 8, 8, 1)))
  assert tokens.shape == (2, n, 16)


def test_the_classifier_encoder_is_the_saved_classifiers_trunk_and_frozen(tmp_path, monkeypatch):
  from gen_jax.eval import features
  from gen_jax.nets.classifier import Classifier
  monkeypatch.setenv("GEN_JAX_CLASSIFIER_DIR", str(tmp_path / "none_here"))
  with pytest.raises(UserError, match="train_classifier --dataset=digits") as error:
    build(vision_encoder="classifier")                  # the default dir holds no classifier
  assert "\n" not in str(error.value) and str(tmp_path / "none_here" / "digits") in str(error.value)
  saved = Classifier().init(jax.random.key(7), jnp.zeros((1, 8, 8, 1)))
  features.save_classifier(str(tmp_path / "digits"), saved, {"dataset": "digits"})
  monkeypatch.setenv("GEN_JAX_CLASSIFIER_DIR", str(tmp_path))
  _, paradigm = build(vision_encoder="classifier")      # classifier_dir "" = the default dir
  batch = batch_of(4)
  params = paradigm.init(jax.random.key(0), batch)
  assert paradigm.non_trainable == ("frozen_encoder",) and "encoder" not in params
  assert sorted(params["frozen_encoder"]) == ["down_0", "down_1", "mix_0", "mix_1", "stem"]
  for name, layer in params["frozen_encoder"].items():       # the saved weights, as they were
    np.testing.assert_array_equal(layer["kernel"], saved["params"][name]["kernel"])
  # the trunk's tokens: its 2x2 map (8x8 after two stride-2 stages) of 64 channels
  assert params["projector"]["fc1"]["kernel"].shape == (64, 32)
  grads = jax.grad(lambda p: paradigm.loss(p, batch, jax.random.key(1))[0])(params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["frozen_encoder"]))
  assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(grads["projector"]))


def full_forward_answer(config, params, levels, question):
  """Greedy answer by re-running the whole [image][q, <answer>, a_<i] forward per token
  (no cache): the encoder, projector and decoder applied here, independently of `sample`."""
  vocab = lmm.text_vocab(config)
  la = captions.answer_len(vocab)
  f = lmm.Fields(**config)
  v = ViT(f.patch_size, f.vit_width, f.vit_depth, f.vit_heads).apply(
      {"params": params["encoder"]}, jnp.asarray(levels, jnp.float32) / 16)
  c = lmm.Projector(f.embed_dim).apply({"params": params["projector"]}, v)
  decoder = make_model(f, vocab.size + 1, c.shape[1] + vocab.max_len + la)
  s = jnp.concatenate([jnp.broadcast_to(jnp.asarray(vocab.encode(question)), (len(levels), vocab.max_len)),
                       jnp.full((len(levels), 1), vocab.size, jnp.int32)], axis=1)
  for _ in range(la):
    logits = decoder.apply({"params": params["decoder"]}, s, cond=c)[:, -1, :vocab.size]
    s = jnp.concatenate([s, jnp.argmax(logits, -1)[:, None].astype(jnp.int32)], axis=1)
  return s[:, vocab.max_len + 1:]


def test_kv_cached_answer_equals_the_full_reforward_argmax():
  config, paradigm = build(caption_level="char")   # answers up to 6 characters: 5 cached steps
  batch = batch_of(6, seed=3)
  params = paradigm.init(jax.random.key(2), batch)
  params = jax.tree.map(lambda p: p * 8.0, params)   # away from init's near-uniform logits
  for question in ("what is it plus two?", "is it even?"):
    cached = paradigm.sample(params, jax.random.key(0), 6, image=batch["image"], question=question)
    assert cached.shape == (6, 6)
    np.testing.assert_array_equal(cached, full_forward_answer(config, params, batch["image"], question))


def test_a_tiny_lmm_overfits_a_few_image_question_pairs(adam_fit):
  """Four images (random levels) labelled 0, 3, 6, 9: after 300 Adam steps it answers every
  question about each of them as captions.answer of its label."""
  config, paradigm = build(max_shift=0)
  labels = np.array([0, 3, 6, 9], np.int32)
  images = np.random.default_rng(0).integers(0, 17, (4, 8, 8, 1)).astype(np.uint8)
  batch = {"image": np.repeat(images, 8, 0), "label": np.repeat(labels, 8)}
  params = paradigm.init(jax.random.key(0), batch)
  first = float(paradigm.loss(params, batch, jax.random.key(0))[0])
  params, last = adam_fit(paradigm, params, batch, 300, lr=3e-3)
  assert last < 0.05 * first
  for kind, question in captions.QUESTIONS.items():
    said = lmm.text_of(config, paradigm.sample(params, jax.random.key(0), 4, image=images,
                                               question=question))
    assert said == [captions.answer(c, kind) for c in labels], (kind, said)


def test_a_question_outside_the_vocabulary_is_refused_naming_the_words():
  _, paradigm = build()
  batch = batch_of(2)
  params = paradigm.init(jax.random.key(0), batch)
  with pytest.raises(UserError, match=r"'odd'.*Allowed words: .*'even'") as error:
    paradigm.sample(params, jax.random.key(0), 2, image=batch["image"], question="is it odd?")
  assert "\n" not in str(error.value)
  with pytest.raises(UserError, match="image="):
    paradigm.sample(params, jax.random.key(0), 2, question="is it even?")


def test_sample_cli_answers_a_question_about_a_test_image(tmp_path, cli):
  workdir = str(tmp_path / "lmm")
  cli("experiments.train", "--config=experiments/configs/lmm.py:digits", f"--workdir={workdir}",
      "--config.model.num_layers=1", "--config.model.embed_dim=32", "--config.model.vit_width=16",
      "--config.model.vit_depth=1", "--config.batch_size=32", "--config.num_train_steps=60",
      "--config.log_every_steps=10", "--config.optimizer.warmup_steps=0",
      "--config.optimizer.learning_rate=3e-3")
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    losses = [json.loads(line)["loss"] for line in f if "loss" in line]
  assert len(losses) == 6 and losses[-1] < 0.8 * losses[0]        # the loop trains it
  out = cli("experiments.sample", f"--workdir={workdir}", "--image_index=5",
            "--question=is it even?").stdout.strip().splitlines()
  assert out[-1] in ("yes", "no"), out
  png = os.path.join(workdir, "samples", "test_image_5.png")
  assert "label" in out[-2] and Image.open(png).size[0] >= 8
  proc = cli("experiments.sample", f"--workdir={workdir}", "--image_index=100000",
             "--question=is it even?", check=False)
  last = proc.stderr.strip().splitlines()[-1]
  assert proc.returncode == 2 and last.startswith("error: ") and "out of range" in last, last
