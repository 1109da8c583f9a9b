r"""lmm: a LLaVA-style large multimodal model at digit scale, image -> text.

Liu et al. 2023, "Visual Instruction Tuning" (LLaVA), arXiv:2304.08485: a vision encoder,
a projector into the language model's embedding width, and a decoder-only language model
that reads the projected image tokens before the question and writes the answer.

    v = E(x)                      [B, N, d_v]   vision encoder (`vision_encoder`):
        "vit":        a small ViT over p x p patches (Dosovitskiy et al. 2020,
                      arXiv:2010.11929; gen_jax.nets.vit), trained jointly;
        "classifier": the project's trained digit classifier's conv trunk
                      (gen_jax.nets.classifier, its last stride-2 feature map, one token a
                      cell), read from `classifier_dir` (default: the one the benchmarks
                      train and score with, `default_classifier_dir`) and FROZEN as LLaVA freezes CLIP: its
                      weights sit under params["frozen_encoder"] (the paradigm's
                      `non_trainable`: no optimizer step) and v = stop_gradient(E(x)).
    c = P(v) = W_2 gelu(W_1 v)    [B, N, D]     projector (LLaVA-1.5's two-layer MLP)
    s = [q_1 .. q_L, <answer>, a_1 .. a_La]     question ids (padded to L), a separator,
                                                answer ids (padded to L_a with <pad>)

The Transformer (gen_jax.nets.transformer) reads c as its `cond` prefix, then s[:-1], and

    L = -1/(B L_a) sum_b sum_{i=1}^{L_a} log p(a_i | c, q, <answer>, a_<i)

is gen_jax.losses.nll.next_token_nll with a token mask that keeps only the L_a answer
positions (the question, the separator and the image prefix are read, never predicted; the
<pad> after a short answer is predicted, so the model learns where an answer ends). The
softmax is over the V text tokens (the separator is input only).

Each training example's question kind k is drawn uniformly from captions.QA_KINDS with a
key from the step's rng (as text2image draws caption templates), and its answer is
captions.answer(label, k) of the TRUE label: batch["image"] (levels [B, H, W, C]) and
batch["label"]. The training images are shifted by up to `max_shift` pixels (zero padded;
another draw of the step's rng), the augmentation the project's classifier trains with.

Sampling: `sample(params, rng, num, image=levels [num, H, W, C], question=q,
temperature=None, top_k=None, top_p=None)` -> int32 [num, L_a] answer ids (`text_of` turns
them into strings): the image tokens and [q, <answer>] are one prefill chunk of the KV-cached
decoder (gen_jax.samplers.autoregressive.sample_cached), then L_a tokens; temperature 0
(the default, `temperature` field) is greedy. A question with words outside the vocabulary
is refused (UserError naming them and listing the allowed words); without a question, the
first of captions.QUESTIONS ("what digit is this?"); without an image, none is drawn.

Likelihood: none (log_likelihood is None): the model gives p(answer | image, question).

Mixed precision (gen_jax.policy): the ViT and the GPT run in the compute dtype with their
softmaxes and LayerNorm statistics in float32 (gen_jax.nets.vit, .transformer); the frozen
classifier trunk always runs in float32 (gen_jax.nets.classifier), and the projector casts
its output to the compute dtype; the logits the loss reduces over are float32.

config.model fields: `Fields` below (`gpt.TransformerFields` for the decoder, the encoder's
and projector's, the vocabulary's and the sampling temperature).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import gen_jax.data.captions as captions
from gen_jax.errors import UserError
from gen_jax.losses import nll as nll_lib
from gen_jax.nets.classifier import default_classifier_dir
from gen_jax.nets.transformer import Transformer
from gen_jax.nets.vit import ViT
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.paradigms.gpt import TransformerFields, _check_sampling_options, make_model
from gen_jax.samplers import autoregressive as ar_sampler
from gen_jax.utils.images import random_shift

ENCODERS = ("vit", "classifier")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(TransformerFields):
  """lmm's config.model fields, with their defaults."""
  vision_encoder: str = "vit"        # vit (trained jointly) | classifier (frozen, pretrained)
  patch_size: int = 2                # ViT patches (p x p pixels); 4 suits 28x28
  vit_width: int = 64
  vit_depth: int = 2
  vit_heads: int = 4
  classifier_dir: str = ""           # "classifier": a trained classifier's folder (its params/);
                                     # "" = the project's classifier of the dataset
                                     # (gen_jax.nets.classifier.default_classifier_dir)
  max_shift: int = 0                 # training images shifted by up to this many pixels (0: none)
  caption_level: str = "word"        # word | char: the question/answer vocabulary
  temperature: float = 0.0           # default sampling temperature (0 = greedy)


def text_vocab(model_config) -> captions.CaptionVocab:
  """The question/answer vocabulary an lmm config fixes."""
  f = parse_model_config(Fields, model_config, strict=False)
  return captions.make_vocab(f.caption_level, questions=True)


def text_of(model_config, ids) -> list:
  """Answer ids [num, L_a] (what `sample` returns) -> num strings."""
  vocab = text_vocab(model_config)
  return [vocab.decode(row) for row in np.asarray(ids)]


class ClassifierTrunk(nn.Module):
  """The conv trunk of gen_jax.nets.classifier.Classifier (same parameter names, so a trained
  classifier's params load into it): images [B, H, W, C] in [0, 1] -> its last feature map as
  tokens [B, h w, channels[-1]] (float32; the dense feature layer and the head are not used)."""
  channels: tuple = (32, 64)

  @nn.compact
  def __call__(self, images):
    x = 2.0 * jnp.asarray(images, jnp.float32) - 1.0
    x = nn.relu(nn.Conv(self.channels[0], (3, 3), name="stem")(x))
    for i, c in enumerate(self.channels):
      x = nn.relu(nn.Conv(c, (3, 3), strides=(2, 2), name=f"down_{i}")(x))
      x = nn.relu(nn.Conv(c, (3, 3), name=f"mix_{i}")(x))
    return x.reshape(x.shape[0], -1, x.shape[-1])


class Projector(nn.Module):
  """c = W_2 gelu(W_1 v): vision tokens [B, N, d_v] -> the decoder's width [B, N, D]."""
  embed_dim: int

  @nn.compact
  def __call__(self, v):
    h = nn.gelu(nn.Dense(self.embed_dim, name="fc1")(v))
    return nn.Dense(self.embed_dim, name="fc2")(h)


def answer_nll(logits, targets, question_len: int):
  r"""-1/(B L_a) sum log p(a_i | ...): next-token NLL on the answer positions only.

  logits [B, L + L_a, V] predict targets = s[:, 1:] = [q_2..q_L, <answer>, a_1..a_La]; target j
  is an answer token iff j >= L (the first L targets are question tokens and the separator).
  """
  is_answer = jnp.broadcast_to(jnp.arange(targets.shape[1]) >= question_len, targets.shape)
  return nll_lib.next_token_nll(logits, jnp.where(is_answer, targets, 0), is_answer)


def load_trunk(classifier_dir: str, dataset: str = "digits"):
  """The conv trunk's params (stem, down_i, mix_i) of the classifier saved in `classifier_dir`
  (gen_jax.eval.features.save_classifier: Orbax `params/` and classifier.json)."""
  import orbax.checkpoint as ocp
  path = os.path.join(os.path.abspath(classifier_dir), "params")
  if not os.path.isdir(path):
    raise UserError(f"vision_encoder='classifier' reads a trained {dataset} classifier, and "
                    f"{classifier_dir} holds none (no params/): train it with `python -m "
                    f"experiments.train_classifier --dataset={dataset} --workdir={classifier_dir}` "
                    "or set --config.model.classifier_dir to a trained classifier's folder.")
  checkpointer = ocp.StandardCheckpointer()
  params = checkpointer.restore(path)["params"]
  checkpointer.close()
  return {k: v for k, v in params.items() if k == "stem" or k.startswith(("down_", "mix_"))}


def make(model_config, info) -> Paradigm:
  """lmm over the labelled images of `info` (digits, mnist_idx); see the module docstring."""
  if info.kind != "image" or info.num_classes != captions.NUM_DIGITS:
    raise UserError(f"lmm answers questions about digits: it needs a labelled image dataset of the "
                    f"ten digits (digits, mnist_idx); {info.name!r} is kind {info.kind!r} with "
                    f"num_classes={info.num_classes}.")
  f = parse_model_config(Fields, model_config)
  if f.vision_encoder not in ENCODERS:
    raise UserError(f"model.vision_encoder={f.vision_encoder!r} is not one of {ENCODERS}.")
  vocab = text_vocab(f)
  v, q_len, a_len = vocab.size, vocab.max_len, captions.answer_len(vocab)
  sep = v                                           # <answer>: input only
  question_table, answer_table = map(jnp.asarray, captions.qa_tables(vocab, a_len))
  num_levels = info.num_levels
  image_shape = tuple(info.shape)
  h, w = image_shape[:2]
  frozen = f.vision_encoder == "classifier"
  if frozen:
    encoder = ClassifierTrunk()
    trunk = load_trunk(f.classifier_dir or default_classifier_dir(info.name), info.name)  # outside jit
    num_image_tokens = (-(-h // 4)) * (-(-w // 4))    # two stride-2 'SAME' stages
  else:
    encoder = ViT(f.patch_size, f.vit_width, f.vit_depth, f.vit_heads)
    num_image_tokens = (h // f.patch_size) * (w // f.patch_size)
  projector = Projector(f.embed_dim)
  decoder = make_model(f, v + 1, num_image_tokens + q_len + a_len)
  tau_default = float(f.temperature)

  def to_unit(levels):
    chex.assert_shape(levels, (None, *image_shape))
    return jnp.asarray(levels, jnp.float32) / (num_levels - 1)

  def image_tokens(params, levels, train=False):
    """c = P(E(x)) [B, N, D]; E frozen (stop_gradient) for the classifier encoder."""
    x = to_unit(levels)
    if frozen:
      vis = jax.lax.stop_gradient(encoder.apply({"params": params["frozen_encoder"]}, x))
    else:
      vis = encoder.apply({"params": params["encoder"]}, x, train=train)
    c = projector.apply({"params": params["projector"]}, vis)
    chex.assert_shape(c, (x.shape[0], num_image_tokens, f.embed_dim))
    return c

  def sequence(labels, rng):
    """s = [q, <answer>, a] int32 [B, L + 1 + L_a] for question kinds drawn with `rng`."""
    kinds = jax.random.randint(rng, labels.shape, 0, len(captions.QA_KINDS))
    b = labels.shape[0]
    return jnp.concatenate([question_table[kinds], jnp.full((b, 1), sep, jnp.int32),
                            answer_table[labels, kinds]], axis=1)

  def init(rng, batch):
    enc_key, proj_key, dec_key = jax.random.split(rng, 3)
    x = to_unit(batch["image"])
    vis_params = jax.tree.map(jnp.asarray, trunk) if frozen else encoder.init(enc_key, x)["params"]
    params = {("frozen_encoder" if frozen else "encoder"): vis_params}
    params["projector"] = projector.init(proj_key, encoder.apply({"params": vis_params}, x))["params"]
    s = sequence(jnp.asarray(batch["label"], jnp.int32), rng)
    params["decoder"] = decoder.init(dec_key, s[:, :-1], cond=image_tokens(params, batch["image"]))["params"]
    return params

  def logits(params, levels, inputs, rng=None, train=False):
    rngs = {"dropout": rng} if (train and f.dropout > 0) else None
    out = decoder.apply({"params": params["decoder"]}, inputs, train=train,
                        cond=image_tokens(params, levels, train), rngs=rngs)
    return out[..., :v]

  def loss(params, batch, rng):
    kind_key, shift_key, dropout_key = jax.random.split(rng, 3)
    s = sequence(jnp.asarray(batch["label"], jnp.int32), kind_key)
    levels = batch["image"]
    if f.max_shift:
      levels = random_shift(jnp.asarray(levels, jnp.float32), shift_key, f.max_shift)
    return answer_nll(logits(params, levels, s[:, :-1], dropout_key, train=True), s[:, 1:], q_len)

  def prompt_ids(num, question):
    ids = vocab.encode(captions.QUESTIONS[captions.QA_KINDS[0]] if question is None else question)
    return jnp.concatenate([jnp.broadcast_to(jnp.asarray(ids), (num, q_len)),
                            jnp.full((num, 1), sep, jnp.int32)], axis=1)

  @jax.jit
  def _prefix(params, levels):
    return image_tokens(params, levels)

  def decode(params, cond, prompt, rng, temperature, top_k, top_p):
    """KV-cached: [cond, prompt] one prefill chunk at position 0, then token t at N + P + t - 1."""
    n = cond.shape[1]

    def decode_fn(tokens, cache, index):
      variables = {"params": params["decoder"]}
      if isinstance(index, int) and index == 0:       # the prefill chunk: image tokens first
        out, cache = decoder.apply(variables, tokens, cache, 0, cond=cond, method=Transformer.decode)
      else:
        out, cache = decoder.apply(variables, tokens, cache, n + index, method=Transformer.decode)
      return out[..., :v], cache

    return ar_sampler.sample_cached(decode_fn, decoder.init_cache(prompt.shape[0]), prompt, rng,
                                    a_len, max_len=decoder.max_len - n, temperature=temperature,
                                    top_k=top_k, top_p=top_p)[0]

  _decode = jax.jit(decode, static_argnums=(4, 5, 6))

  def sample(params, rng, num, image=None, question: Optional[str] = None,
             temperature: Optional[float] = None, top_k: Optional[int] = None,
             top_p: Optional[float] = None):
    """Answer ids int32 [num, L_a] to `question` about `image` (levels); see the module docstring."""
    tau = tau_default if temperature is None else float(temperature)
    _check_sampling_options(tau, top_k, top_p)
    prompt = prompt_ids(num, question)
    if image is None:
      raise UserError("lmm answers a question about an image: give image= (levels "
                      f"[num, {', '.join(map(str, image_shape))}]).")
    levels = np.asarray(image)
    if levels.shape != (num, *image_shape):
      raise UserError(f"image= must be levels [num={num}, {', '.join(map(str, image_shape))}], "
                      f"got shape {levels.shape}.")
    s = _decode(params, _prefix(params, levels), prompt, rng, tau, top_k, top_p)
    return s[:, prompt.shape[1]:]

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=None,
                  non_trainable=("frozen_encoder",) if frozen else ())
