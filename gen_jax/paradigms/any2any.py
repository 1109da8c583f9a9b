r"""any2any: one GPT that reads and writes both images and text (early fusion).

Chameleon Team 2024, "Chameleon: Mixed-Modal Early-Fusion Foundation Models", arXiv:2405.09818,
at digit scale: images are the codes of a frozen stage-1 VQ-VAE (van den Oord et al. 2017,
arXiv:1711.00937; the "encoded" dataset: batch["codes"] int32 [B, h, w], N = h w codes of a
codebook of K, batch["image"], batch["label"]) and text is the caption/question vocabulary of
gen_jax.data.captions (`make_vocab(level, questions=True)`: V tokens, <pad> = text id 0), all
in ONE vocabulary read by one causal transformer (the two-stage machinery of text2image, which
is the text -> image half of this model; arXiv:2102.12092):

    ids 0 .. K-1        image codes z
    ids K .. K+V-1      text tokens (K + the CaptionVocab id)
    K+V, K+V+1, K+V+2   the markers <text>, <image>, </image>

Sequences (fixed slots, so one batch mixes directions: every text is right-padded with <pad> to
L = vocab.max_len tokens, every answer to L_a = its longest answer's length; T = N + L + L_a + 3
positions, the shorter layout right-padded with <pad>):

    text -> image:  s = [<text>, y_1..y_L, <image>, z_1..z_N, <pad> x (L_a + 1)]
    image -> text:  s = [<image>, z_1..z_N, </image>, <text>, t_1..t_L, a_1..a_La]

where y is a caption of the image's label (a template of captions.TEMPLATES drawn uniformly),
and in image -> text either t = a caption and a = <pad> x L_a (captioning), or t = one of
captions.QUESTIONS and a = `captions.answer(label, kind)`, from the TRUE label. Each training
example draws its direction and kind from the step's rng: text -> image with probability
`text_to_image_share`, else uniformly one of I2T_KINDS = (caption, digit, even,
bigger_than_five, plus_two); the caption template likewise.

Loss: next-token NLL on the target part only. With T_b the target positions of example b,

    text -> image:  T_b = the N positions of z_1..z_N,
    captioning:     T_b = the L positions of t_1..t_L (its <pad>s included: where it ends),
    question:       T_b = the L_a positions of a_1..a_La (<pad>s included),

(never a marker, the conditioning part, or the trailing <pad>s), and

    l_b = -(1 / |T_b|) \sum_{j \in T_b} log p_theta(s_{b,j} | s_{b,<j}),     L = (1/B) \sum_b l_b,

each example weighing the same whatever its direction. p_theta(. | s_<j) is a softmax over the
target's own modality (the K codes for z, the V text tokens for text; as text2image's per-part
softmax), so the image positions are a proper distribution over the codes and sampling draws
only tokens of the modality of the slot it fills.

Sampling (the KV-cached decoder, gen_jax.samplers.autoregressive: greedy at temperature 0,
temperature / top_k / top_p otherwise; logits outside the slot's modality set to -inf):
* `sample(params, rng, num, prompt=None, label=None, temperature=None, top_k, top_p)`: images
  float32 [num, H, W, C] in [0, 1]: the prefix [<text>, caption, <image>] then N codes, decoded
  by the stage-1 decoder; the caption is the prompt (a UserError names the words outside the
  vocabulary and lists the allowed ones), TEMPLATES[0] of `label`, or with neither that caption
  of digit i mod 10 for sample i (text2image.prompt_captions).
* `sample(params, rng, num, image=x | codes=k, question=q, ...)`: text token ids int32
  [num, L_a] (the CaptionVocab's ids; `text_of(model_config, ids)` gives the strings): the
  prefix [<image>, k, </image>, <text>, q] then L_a answer tokens, for `image` levels
  [num, H, W, C] (encoded by the stage-1 encoder) or `codes` [num, h, w]; without a question,
  [num, L] caption tokens after [<image>, k, </image>, <text>]. Text is greedy unless a
  temperature is given (`text_temperature`).

Likelihood: log_likelihood(params, batch) = log p(x | k(x)) + log p_theta(k(x) | y_0(c)) in nats
per image, y_0(c) = TEMPLATES[0] of the image's label c ("a handwritten seven"), the two-stage
bound of vq_gpt (deterministic encoder, q(k | x) = 1{k = k(x)}) given the caption:

    log p(x | y) >= log p(x | k(x)) + \sum_{i=1}^N log p_theta(k_i(x) | y, k_<i(x)),

a bound (likelihood_is_exact=False) on the *conditional* log-likelihood of the image given its
caption, not on log p(x): lower than vq_gpt's unconditional bound by about the caption's
information, at most log 10 nats an image.

Mixed precision: the transformer's (gen_jax.nets.transformer: bfloat16 matmuls, float32
attention softmax, LayerNorm statistics and logits); the per-modality log-softmax of the loss
and of the likelihood is taken in float32 (gen_jax.losses.nll.token_nll), and the sampler casts
the masked logits to float32 before tempering and filtering.

config.model fields: `Fields` below (the transformer's `gpt.TransformerFields` and the text,
direction and sampling fields).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

import gen_jax.data.captions as captions
from gen_jax.errors import UserError
from gen_jax.losses import nll as nll_lib
from gen_jax.nets.transformer import Transformer
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.paradigms.gpt import TransformerFields, _check_sampling_options, make_model
from gen_jax.paradigms.text2image import check_digit_codes_info, draw_captions, prompt_captions
from gen_jax.samplers import autoregressive as ar_sampler

# The directions/kinds of a training sequence: text -> image, then the image -> text kinds.
I2T_KINDS = ("caption", *captions.QA_KINDS)
KINDS = ("text_to_image", *I2T_KINDS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(TransformerFields):
  """any2any's config.model fields, with their defaults."""
  caption_level: str = "word"        # word | char: the text vocabulary (captions and questions)
  caption_len: int = 0               # L, text tokens (padded); 0 = the longest caption or question
  text_to_image_share: float = 0.5   # probability a training sequence is caption -> codes
  temperature: float = 1.0           # default temperature of the image codes
  text_temperature: float = 0.0      # default temperature of text (0 = greedy answers)


def text_vocab(model_config) -> captions.CaptionVocab:
  """The text vocabulary an any2any config fixes: every caption, question and answer word."""
  f = parse_model_config(Fields, model_config, strict=False)
  return captions.make_vocab(f.caption_level, int(f.caption_len), questions=True)


def text_of(model_config, ids) -> list:
  """Text token ids [num, n] (what `sample` returns for an image) -> num strings."""
  vocab = text_vocab(model_config)
  return [vocab.decode(row) for row in np.asarray(ids)]


def answer_len(vocab: captions.CaptionVocab) -> int:
  """L_a: tokens of the longest answer at the vocabulary's level (1 word; "eleven": 6 characters)."""
  return max(len(captions.split(a, vocab.level)) for a in captions.ANSWER_WORDS + ("yes", "no"))


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where the markers and parts of a sequence sit (the module docstring's two layouts)."""
  num_codes: int        # K
  text_size: int        # V
  num_image_tokens: int  # N
  text_len: int         # L
  answer_len: int       # L_a

  @property
  def text_marker(self) -> int:      # <text>
    return self.num_codes + self.text_size

  @property
  def image_marker(self) -> int:     # <image>
    return self.text_marker + 1

  @property
  def end_image_marker(self) -> int:  # </image>
    return self.text_marker + 2

  @property
  def vocab_size(self) -> int:
    return self.num_codes + self.text_size + 3

  @property
  def length(self) -> int:           # T
    return self.num_image_tokens + self.text_len + self.answer_len + 3

  @property
  def pad(self) -> int:              # <pad> as a text token of the shared vocabulary
    return self.num_codes

  def text_to_image_prefix(self, caption_ids):
    """[B, L] caption ids -> [<text>, K + y, <image>]: [B, L + 2]."""
    b = caption_ids.shape[0]
    return jnp.concatenate([jnp.full((b, 1), self.text_marker, jnp.int32),
                            self.num_codes + caption_ids,
                            jnp.full((b, 1), self.image_marker, jnp.int32)], axis=1)

  def image_prefix(self, codes):
    """[B, N] codes -> [<image>, z, </image>, <text>]: [B, N + 3]."""
    b = codes.shape[0]
    return jnp.concatenate([jnp.full((b, 1), self.image_marker, jnp.int32), codes,
                            jnp.full((b, 1), self.end_image_marker, jnp.int32),
                            jnp.full((b, 1), self.text_marker, jnp.int32)], axis=1)

  def sequences(self, kinds, codes, caption_ids, question_ids, answer_ids):
    """The sequences s [B, T] and their target masks [B, T] (True where s_j is a target).

    Args:
      kinds: int [B], indices into KINDS.
      codes: int [B, N]; caption_ids: [B, L] the caption (text -> image, captioning);
      question_ids: [B, L]; answer_ids: [B, L_a] (question kinds), CaptionVocab ids.
    """
    b, n, l, la = codes.shape[0], self.num_image_tokens, self.text_len, self.answer_len
    pad = lambda k: jnp.full((b, k), self.pad, jnp.int32)
    t2i = jnp.concatenate([self.text_to_image_prefix(caption_ids), codes, pad(la + 1)], axis=1)
    is_caption = (kinds == KINDS.index("caption"))[:, None]
    text = jnp.where(is_caption, caption_ids, question_ids)
    answer = jnp.where(is_caption, 0, answer_ids)
    i2t = jnp.concatenate([self.image_prefix(codes), self.num_codes + text,
                           self.num_codes + answer], axis=1)
    is_t2i = (kinds == 0)[:, None]
    j = jnp.arange(self.length)[None, :]
    t2i_targets = (j >= l + 2) & (j < l + 2 + n)
    caption_targets = (j >= n + 3) & (j < n + 3 + l)
    answer_targets = j >= n + 3 + l
    targets = jnp.where(is_t2i, t2i_targets,
                        jnp.where(is_caption, caption_targets, answer_targets))
    return jnp.where(is_t2i, t2i, i2t), targets

  def is_image_target(self, kinds):
    """bool [B, T]: the target slots that hold codes (those of text -> image)."""
    j = jnp.arange(self.length)[None, :]
    return (kinds == 0)[:, None] & (j >= self.text_len + 2) & (j < self.text_len + 2 + self.num_image_tokens)


def modality_nll(logits, targets, is_target, is_image, num_codes: int, text_size: int):
  r"""The any2any loss L = (1/B) sum_b (1/|T_b|) sum_{j in T_b} -log p(s_j | s_<j) (docstring).

  Args:
    logits: [B, T, >= K + V] next-token logits (logits[:, j] predicts targets[:, j]).
    targets: int [B, T] ids of the shared vocabulary.
    is_target: bool [B, T], T_b; is_image: bool [B, T], targets that are codes (softmax over the
      K code columns) — the other targets are text (softmax over the V text columns).
  Returns:
    (L, metrics): image_nats_per_token and text_nats_per_token, means over the batch's image and
    text target tokens.
  """
  image_nll = nll_lib.token_nll(logits[..., :num_codes], jnp.where(is_image, targets, 0))
  text_ids = jnp.where(is_target & ~is_image, targets - num_codes, 0)
  text_nll = nll_lib.token_nll(logits[..., num_codes:num_codes + text_size], text_ids)
  nll = jnp.where(is_target, jnp.where(is_image, image_nll, text_nll), 0.0)
  count = jnp.sum(is_target, axis=1)
  per_example = jnp.sum(nll, axis=1) / jnp.maximum(count, 1)
  mean_over = lambda m: jnp.sum(jnp.where(m, nll, 0.0)) / jnp.maximum(jnp.sum(m), 1)
  return jnp.mean(per_example), {"image_nats_per_token": mean_over(is_target & is_image),
                                 "text_nats_per_token": mean_over(is_target & ~is_image)}


def allowed_logits(logits, lo: int, hi: int):
  """logits [..., V] with the ids outside [lo, hi) (another modality, a marker) at -inf."""
  ids = jnp.arange(logits.shape[-1])
  return jnp.where((ids >= lo) & (ids < hi), logits, jnp.asarray(-jnp.inf, logits.dtype))


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5, 6, 7, 8, 9))
def decode(model: Transformer, params, prompt, num_tokens: int, lo: int, hi: int,
           temperature: float, top_k: Optional[int], top_p: Optional[float], naive: bool, rng):
  """prompt int32 [B, P] -> int32 [B, P + num_tokens], every new token an id in [lo, hi):
  KV-cached (`ar_sampler.sample_cached`), or with `naive` the full re-forward per token."""
  opts = dict(max_len=model.max_len, temperature=temperature, top_k=top_k, top_p=top_p)
  variables = {"params": params}
  if naive:
    return ar_sampler.sample_naive(
        lambda t: allowed_logits(model.apply(variables, t), lo, hi), prompt, rng, num_tokens, **opts)

  def decode_fn(tokens, cache, index):
    logits, cache = model.apply(variables, tokens, cache, index, method=Transformer.decode)
    return allowed_logits(logits, lo, hi), cache

  return ar_sampler.sample_cached(decode_fn, model.init_cache(prompt.shape[0]), prompt, rng,
                                  num_tokens, **opts)


def make(model_config, info) -> Paradigm:
  """any2any over the codes of `info` (kind 'codes', digit labels); see the module docstring."""
  check_digit_codes_info(info, "any2any")
  fields = parse_model_config(Fields, model_config)
  if not 0.0 <= fields.text_to_image_share <= 1.0:
    raise UserError(f"model.text_to_image_share={fields.text_to_image_share} is a probability; "
                    "set it in [0, 1].")
  vocab = text_vocab(fields)
  h, w = info.shape
  layout = Layout(num_codes=int(info.num_codes), text_size=vocab.size, num_image_tokens=h * w,
                  text_len=vocab.max_len, answer_len=answer_len(vocab))
  k, n, l, la = layout.num_codes, layout.num_image_tokens, layout.text_len, layout.answer_len
  caption_table = jnp.asarray(captions.caption_table(vocab))               # [10, templates, L]
  question_table = jnp.asarray(np.stack([vocab.encode(captions.QUESTIONS[q])
                                         for q in captions.QA_KINDS]))      # [4, L]
  answer_table = jnp.asarray(np.stack([np.stack([vocab.encode(captions.answer(c, q))[:la]
                                                 for q in captions.QA_KINDS])
                                       for c in range(captions.NUM_DIGITS)]))  # [10, 4, L_a]
  model = make_model(fields, layout.vocab_size, layout.length)
  stage1 = info.stage1
  share = float(fields.text_to_image_share)

  def flat_codes(codes):
    codes = jnp.asarray(codes, jnp.int32)
    chex.assert_shape(codes, (None, h, w))
    return codes.reshape(codes.shape[0], n)

  def training_sequences(batch, rng):
    codes = flat_codes(batch["codes"])
    labels = jnp.asarray(batch["label"], jnp.int32)
    direction_key, kind_key, caption_key = jax.random.split(rng, 3)
    to_image = jax.random.bernoulli(direction_key, share, labels.shape)
    kinds = jnp.where(to_image, 0, 1 + jax.random.randint(kind_key, labels.shape, 0, len(I2T_KINDS)))
    question = jnp.clip(kinds - 2, 0, len(captions.QA_KINDS) - 1)        # QA_KINDS index
    s, is_target = layout.sequences(kinds, codes, draw_captions(caption_key, labels, caption_table),
                                    question_table[question], answer_table[labels, question])
    return s, is_target, kinds

  def logits_of(params, inputs, rng=None, train=False):
    rngs = {"dropout": rng} if (train and model.dropout > 0) else None
    return model.apply({"params": params}, inputs, train=train, rngs=rngs)

  def init(rng, batch):
    return model.init(rng, training_sequences(batch, rng)[0][:, :-1])["params"]

  def loss(params, batch, rng):
    sequence_key, dropout_key = jax.random.split(rng)
    s, is_target, kinds = training_sequences(batch, sequence_key)
    logits = logits_of(params, s[:, :-1], dropout_key, train=True)
    total, metrics = modality_nll(logits, s[:, 1:], is_target[:, 1:],
                                  layout.is_image_target(kinds)[:, 1:], k, layout.text_size)
    return total, {**metrics, "text_to_image_share": jnp.mean(kinds == 0)}

  def log_likelihood(params, batch, rng=None):
    """log p(x | k(x)) + log p(k(x) | y_0(label)) in nats per image [B]: a bound on log p(x | y)."""
    codes = flat_codes(batch["codes"])
    labels = jnp.asarray(batch["label"], jnp.int32)
    s = jnp.concatenate([layout.text_to_image_prefix(caption_table[labels, 0]), codes], axis=1)
    logits = logits_of(params, s[:, :-1])[:, l + 1:, :k]           # the N positions predicting z
    prior = nll_lib.sequence_log_likelihood(logits, codes)
    return stage1.decoder_log_likelihood(batch["codes"], batch["image"]) + prior

  def sample(params, rng, num, prompt: Optional[str] = None, label=None, image=None, codes=None,
             question: Optional[str] = None, temperature: Optional[float] = None,
             top_k: Optional[int] = None, top_p: Optional[float] = None, naive: bool = False):
    """Images from a prompt, or text about an image; see the module docstring."""
    if image is None and codes is None:
      if question is not None:
        raise UserError("question= asks about an image: give image= (levels [num, H, W, C]) or "
                        "codes= (stage-1 codes [num, h, w]) too.")
      tau = float(fields.temperature if temperature is None else temperature)
      _check_sampling_options(tau, top_k, top_p)
      prefix = layout.text_to_image_prefix(prompt_captions(vocab, caption_table, num, prompt, label))
      s = decode(model, params, prefix, n, 0, k, tau, top_k, top_p, naive, rng)[0]
      return stage1.decode(s[:, l + 2:].reshape(num, h, w))
    if prompt is not None or label is not None:
      raise UserError("prompt=/label= ask for an image; with image= or codes= ask a question= "
                      "(or none, for a caption).")
    if (image is None) == (codes is None):
      raise UserError("Give the image as image= (levels) or codes= (stage-1 codes), not both.")
    if image is not None:
      image = jnp.asarray(image)
      if image.shape[1:] != tuple(info.image_shape) or image.shape[0] != num:
        raise UserError(f"image= must be levels [num={num}, {', '.join(map(str, info.image_shape))}] "
                        f"(the stage-1 images), got shape {tuple(image.shape)}.")
      codes = stage1.encode(image)
    codes = flat_codes(codes)
    if codes.shape[0] != num:
      raise UserError(f"codes= holds {codes.shape[0]} images but num={num}; give num codes.")
    tau = float(fields.text_temperature if temperature is None else temperature)
    _check_sampling_options(tau, top_k, top_p)
    prefix = layout.image_prefix(codes)
    num_tokens = l
    if question is not None:
      prefix = jnp.concatenate([prefix, k + jnp.broadcast_to(jnp.asarray(vocab.encode(question)),
                                                            (num, l))], axis=1)
      num_tokens = la
    s = decode(model, params, prefix, num_tokens, k, k + layout.text_size, tau, top_k, top_p,
               naive, rng)[0]
    return s[:, prefix.shape[1]:] - k

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=False)
