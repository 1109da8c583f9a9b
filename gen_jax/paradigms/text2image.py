r"""text2image: a small DALL-E-style model, one GPT over caption tokens then image codes.

Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation" (DALL-E), arXiv:2102.12092,
at digit scale. Stage 2 of a two-stage model: the images are the codes of a
stage-1 VQ-VAE (the "encoded" dataset: batch["codes"] int32 [B, h, w], N = h w
codes of a codebook of K, and batch["label"]), decoded by its frozen decoder.

Sequence. Each training example's label c gets a caption drawn uniformly from
gen_jax.data.captions.TEMPLATES ("a handwritten seven", "the digit 7", ...) with
a key from the step's rng, so every epoch sees other wordings. The caption is
tokenized at the word or character level (config `caption_level`), right-padded to
L_c tokens, and the GPT reads one sequence

    s = [BOS, y_1 .. y_{L_c}, z_1 .. z_N]       (caption first, codes in raster order)

over one vocabulary: ids 0..K-1 are the codes, K + j is caption token j, and the
last id is BOS. The loss is the next-token NLL (gen_jax.losses.nll), the image
part and optionally the text part:

    L = -1/N sum_i log p(z_i | y, z_<i) + lambda * (-1/L_c) sum_j log p(y_j | y_<j),

where lambda = `text_loss_weight` (DALL-E weights text 1/8, image 7/8; 0 by default
here: only the image tokens are learned). Each part is a softmax over its own
tokens (codes for z, caption tokens for y), so the image tokens are a proper
conditional distribution over the K codes and sampling never draws text there.

Sampling: `sample(params, rng, num, prompt=None, label=None, temperature=None,
top_k=None, top_p=None)` tokenizes the prompt (a UserError names any word or
character outside the vocabulary and lists the allowed ones), draws the N codes
with the KV-cached sampler (gen_jax.samplers.autoregressive, the prompt is the
prefix), and decodes them with the stage-1 decoder: images float32 [num, H, W, C]
in [0, 1]. `label=c` uses the caption TEMPLATES[0] of c ("a handwritten c");
with neither, sample i uses that caption of digit i mod 10 (so the grids the loop
writes show every digit in turn).

Likelihood: none is reported (log_likelihood is None): the model gives
log p(codes | caption), a bound on log p(image | caption) for one caption, not a
likelihood of the images alone.

config.model fields: `Fields` below (the transformer's `gpt.TransformerFields` and the
caption and sampling fields).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import chex
import jax
import jax.numpy as jnp

from gen_jax.data.captions import NUM_DIGITS, CaptionVocab, caption_table, make_vocab
from gen_jax.errors import UserError
from gen_jax.losses import nll as nll_lib
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.paradigms.gpt import ArCore, TransformerFields, make_model
from gen_jax.paradigms.maskgit import check_codes_info


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(TransformerFields):
  """text2image's config.model fields, with their defaults."""
  caption_level: str = "word"        # word | char: the caption vocabulary
  caption_len: int = 0               # caption tokens (padded); 0 = the longest template caption
  text_loss_weight: float = 0.0      # lambda of the caption tokens' NLL (DALL-E: 1/7 of image's)
  temperature: float = 1.0           # default sampling temperature


def caption_vocab(model_config) -> CaptionVocab:
  """The caption vocabulary a text2image config fixes (for tools that tokenize prompts)."""
  f = parse_model_config(Fields, model_config, strict=False)
  return make_vocab(f.caption_level, int(f.caption_len))


def caption_image_nll(logits, targets, caption_len: int, num_codes: int, text_weight: float):
  r"""L = image NLL + lambda * text NLL, each a mean over its positions, in nats per token.

  Args:
    logits: [B, L_c + N, K + V] next-token logits of s = [BOS, caption, codes] (position j
      predicts s_{j+1}); the first K columns are the codes, the next V the caption tokens.
    targets: int [B, L_c + N] = s[:, 1:]: caption ids (K + token) for j < L_c, codes after.
    caption_len, num_codes: L_c and K.
    text_weight: lambda; 0 leaves the caption positions out of the loss.
  Returns:
    (L, metrics): image_nats_per_token = -1/N sum_i log p(z_i | y, z_<i) with the softmax over
    the K codes; text_nats_per_token likewise over the caption tokens.
  """
  is_image = jnp.broadcast_to(jnp.arange(targets.shape[1]) >= caption_len, targets.shape)
  image_nats, image_metrics = nll_lib.next_token_nll(
      logits[..., :num_codes], jnp.where(is_image, targets, 0), is_image)
  text_nats, _ = nll_lib.next_token_nll(
      logits[..., num_codes:], jnp.where(is_image, 0, targets - num_codes), ~is_image)
  return image_nats + text_weight * text_nats, {
      "image_nats_per_token": image_nats, "image_bits_per_token": image_metrics["bits_per_token"],
      "text_nats_per_token": text_nats}


def check_digit_codes_info(info, paradigm: str) -> None:
  """UserError naming the fix unless `info` is a stage-1 VQ-VAE's codes of the ten digits
  (shared by the paradigms that caption digits: text2image, any2any)."""
  check_codes_info(info, paradigm)
  if info.num_classes != NUM_DIGITS:
    raise UserError(f"{paradigm} writes captions of the digits 0-9, so it needs 10 labels; "
                     f"{info.name!r} has num_classes={info.num_classes}. Use a stage 1 trained "
                     "on digits or mnist_idx.")


def draw_captions(rng, labels, table):
  """A uniformly drawn template caption for each label: table [10, templates, L_c] -> int32 [B, L_c]."""
  template = jax.random.randint(rng, labels.shape, 0, table.shape[1])
  return table[labels, template]


def prompt_captions(vocab: CaptionVocab, table, num: int, prompt: Optional[str] = None, label=None):
  """The caption ids [num, L_c] a sampler conditions on: the tokenized `prompt` (a UserError names
  words outside the vocabulary), or TEMPLATES[0] of `label`, or with neither that caption of
  digit i mod 10 for sample i."""
  if prompt is not None and label is not None:
    raise UserError("Give either prompt or label, not both.")
  if prompt is not None:
    return jnp.broadcast_to(jnp.asarray(vocab.encode(prompt)), (num, table.shape[2]))
  labels = (jnp.arange(num) % NUM_DIGITS if label is None
            else jnp.broadcast_to(jnp.asarray(label, jnp.int32), (num,)))
  return table[labels, 0]


def make(model_config, info) -> Paradigm:
  """text2image over the codes of `info` (kind 'codes', digit labels); see the module docstring."""
  check_digit_codes_info(info, "text2image")
  fields = parse_model_config(Fields, model_config)
  vocab = caption_vocab(fields)
  table = jnp.asarray(caption_table(vocab))          # [10, templates, L_c]
  caption_len = table.shape[2]
  h, w = info.shape
  num_tokens, num_codes = h * w, int(info.num_codes)
  bos = num_codes + vocab.size
  text_weight = float(fields.text_loss_weight)
  default_temperature = float(fields.temperature)
  core = ArCore(make_model(fields, bos + 1, caption_len + num_tokens))
  image_core = ArCore(core.model, num_outputs=num_codes)           # draws codes only
  decode_images = info.stage1.decode

  def prefix(caption_ids):
    """int [B, L_c] caption ids -> the prompt [B, 1 + L_c]: BOS, then the caption tokens."""
    b = caption_ids.shape[0]
    return jnp.concatenate([jnp.full((b, 1), bos, jnp.int32), num_codes + caption_ids], axis=1)

  def sequence(batch, rng):
    codes = jnp.asarray(batch["codes"], jnp.int32)
    chex.assert_shape(codes, (None, h, w))
    labels = jnp.asarray(batch["label"], jnp.int32)
    return jnp.concatenate([prefix(draw_captions(rng, labels, table)),
                            codes.reshape(codes.shape[0], num_tokens)], axis=1)

  def init(rng, batch):
    return core.init(rng, sequence(batch, rng)[:, :-1])

  def loss(params, batch, rng):
    caption_key, dropout_key = jax.random.split(rng)
    s = sequence(batch, caption_key)
    logits = core.logits(params, s[:, :-1], dropout_key, train=True)
    return caption_image_nll(logits[..., :bos], s[:, 1:], caption_len, num_codes, text_weight)

  def sample(params, rng, num, prompt: Optional[str] = None, label=None,
             temperature: Optional[float] = None, top_k: Optional[int] = None,
             top_p: Optional[float] = None):
    """Images [num, H, W, C] in [0, 1] for a prompt / label; see the module docstring."""
    caption_ids = prompt_captions(vocab, table, num, prompt, label)
    tau = default_temperature if temperature is None else temperature
    s, _ = image_core.generate(params, prefix(caption_ids), rng, num_tokens, tau, top_k, top_p)
    return decode_images(s[:, 1 + caption_len:].reshape(num, h, w))

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=None)
