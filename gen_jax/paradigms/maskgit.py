r"""MaskGIT: a bidirectional transformer over a VQ tokenizer's codes, decoded in parallel.

Chang, Zhang, Jiang, Liu, Freeman 2022, "MaskGIT: Masked Generative Image
Transformer", arXiv:2202.04200. Stage 2 of a two-stage model: trained on the
"encoded" dataset (batch["codes"] int32 [B, h, w], N = h w codes from a
codebook of K, see gen_jax.workdir), sampled codes are decoded to images by
the frozen stage-1 decoder `info.stage1.decode`.

Training (Sec. 3.1, eq. 1). Per example draw r ~ U[0, 1), mask a uniformly
random set M of |M| = ceil(gamma(r) N) positions, gamma(r) = cos(pi r / 2)
(the cosine schedule, gen_jax.samplers.maskgit), by replacing them with the
[MASK] token (id K), and minimise the cross-entropy on the masked positions only:

    L = - sum_b sum_{i in M_b} log p_theta(x_{b,i} | x_{b, not M_b}) / sum_b |M_b|

(gen_jax.losses.nll's masked token NLL). The network is the GPT's transformer
(gen_jax.nets.transformer) with causal=False: every position attends to all.

Sampling: iterative parallel decoding in T = num_steps steps (Sec. 3.2;
gen_jax.samplers.maskgit.decode), NFE = T, then the stage-1 decoder.

Likelihood: none. The masked-token objective is not a likelihood of the codes
(it scores each masked token given a random visible subset, and no ordering of
these conditionals gives a normalised p(x)), so MaskGIT is scored by its samples
(log_likelihood is None; experiments.evaluate prints bits_per_dim: null).

`sample(params, rng, num, num_steps=None, temperature=None, choice_temperature=None,
return_trajectory=False, return_info=False)` -> images float32 [num, H, W, C] in [0, 1];
with return_trajectory also [T, num, H, W, C]: the decoded canvas each step predicted
(before re-masking); with return_info also {'nfe': T}.
Config fields (config.model): `Fields` below -- the transformer's (`gpt.TransformerFields`),
num_steps (T), temperature (token draws), choice_temperature (Gumbel noise on the
confidence at step 1, annealed to 0; 4.5 as the reference implementation).
"""
from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.losses import nll as nll_lib
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.paradigms.gpt import TransformerFields, make_model
from gen_jax.samplers import maskgit as maskgit_sampler


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(TransformerFields):
  """maskgit's config.model fields, with their defaults."""
  num_steps: int = 8                 # T: decoding steps (network evaluations) per sample
  temperature: float = 1.0           # of the token draws
  choice_temperature: float = 4.5    # Gumbel noise on the confidence, annealed to 0 at step T


def random_mask(rng, shape):
  r"""bool [B, N]: per row r ~ U[0, 1) and ceil(gamma(r) N) positions masked, uniformly at random.

  gamma(r) > 0 for r < 1, so at least one position is masked (the count is clipped
  to [1, N] against float rounding near r = 1).
  """
  b, n = shape
  r_key, order_key = jax.random.split(rng)
  r = jax.random.uniform(r_key, (b,))
  count = jnp.ceil(maskgit_sampler.cosine_schedule(r) * n).astype(jnp.int32)
  count = jnp.clip(count, 1, n)
  order = maskgit_sampler.ranks(jax.random.uniform(order_key, (b, n)))  # a random permutation
  return order < count[:, None]


def masked_token_loss(logits_fn, codes, mask, mask_id: int):
  r"""-sum_{i in M} log p(x_i | x with M masked) / |M|, averaged over the masked tokens of the batch.

  logits_fn: canvas int32 [B, N] -> logits [B, N, K]; codes int32 [B, N]; mask bool [B, N].
  Returns (nats per masked token, metrics).
  """
  nats, _ = nll_lib.next_token_nll(logits_fn(jnp.where(mask, mask_id, codes)), codes, mask)
  return nats, {"masked_token_nll": nats, "mask_fraction": jnp.mean(mask)}


def check_codes_info(info, paradigm: str):
  """ValueError naming the fix unless `info` is an encoded-codes dataset with a stage-1 decoder."""
  if info.kind != "codes" or not info.num_codes or info.stage1 is None:
    raise UserError(
        f"{paradigm} models the VQ codes of a stage-1 tokenizer: set config.dataset='encoded' "
        f"and config.stage1 to a trained vqvae run (see experiments/configs/{paradigm}.py); "
        f"dataset {info.name!r} is kind {info.kind!r}.")


def make(model_config, info) -> Paradigm:
  """MaskGIT over the codes of `info` (kind 'codes'); see the module docstring."""
  fields = parse_model_config(Fields, model_config)
  check_codes_info(info, "maskgit")
  h, w = info.shape
  num_tokens, num_codes = h * w, int(info.num_codes)
  mask_id = num_codes                       # [MASK] is the extra token K
  net = make_model(fields, num_codes + 1, num_tokens).clone(causal=False)
  defaults = dict(num_steps=int(fields.num_steps), temperature=float(fields.temperature),
                  choice_temperature=float(fields.choice_temperature))
  decode_images = info.stage1.decode

  def logits(params, canvas, dropout_rng=None, train=False):
    """canvas int32 [B, N] -> logits [B, N, K] over the real codes ([MASK] never predicted)."""
    rngs = {"dropout": dropout_rng} if (train and net.dropout > 0) else None
    return net.apply({"params": params}, canvas, train=train, rngs=rngs)[..., :num_codes]

  def flat_codes(batch):
    codes = jnp.asarray(batch["codes"], jnp.int32)
    chex.assert_shape(codes, (None, h, w))
    return codes.reshape(codes.shape[0], num_tokens)

  def init(rng, batch):
    return net.init(rng, flat_codes(batch)[:1])["params"]

  def loss(params, batch, rng):
    codes = flat_codes(batch)
    mask_key, dropout_key = jax.random.split(rng)
    logits_fn = functools.partial(logits, params, dropout_rng=dropout_key, train=True)
    return masked_token_loss(logits_fn, codes, random_mask(mask_key, codes.shape), mask_id)

  @functools.partial(jax.jit, static_argnames=("num", "num_steps", "temperature",
                                               "choice_temperature", "return_trajectory"))
  def _sample(params, rng, *, num, num_steps, temperature, choice_temperature, return_trajectory):
    canvas = jnp.full((num, num_tokens), mask_id, jnp.int32)
    codes, out = maskgit_sampler.decode(
        functools.partial(logits, params), canvas, rng, num_steps, mask_id=mask_id,
        temperature=temperature, choice_temperature=choice_temperature,
        return_trajectory=return_trajectory)
    images = decode_images(codes.reshape(num, h, w))
    if return_trajectory:
      frames = decode_images(out["predictions"].reshape(num_steps * num, h, w))
      return images, frames.reshape(num_steps, num, *frames.shape[1:])
    return images, None

  def sample(params, rng, num, num_steps=None, temperature=None, choice_temperature=None,
             return_trajectory=False, return_info=False):
    """Images [num, H, W, C] in [0, 1]; see the module docstring for the options."""
    opts = dict(num_steps=int(num_steps or defaults["num_steps"]),
                temperature=float(defaults["temperature"] if temperature is None else temperature),
                choice_temperature=float(defaults["choice_temperature"]
                                         if choice_temperature is None else choice_temperature))
    images, frames = _sample(params, rng, num=int(num), return_trajectory=bool(return_trajectory),
                             **opts)
    result = (images, frames) if return_trajectory else images
    if return_info:
      info_ = {"nfe": opts["num_steps"]}
      return (*result, info_) if return_trajectory else (result, info_)
    return result

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=None)
