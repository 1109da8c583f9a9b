r"""A small Vision Transformer encoder (Dosovitskiy et al. 2020, "An Image is Worth 16x16
Words", arXiv:2010.11929), the vision tower of the `lmm` paradigm.

    x in [0, 1] [B, H, W, C] -> 2x - 1 -> patches [B, N, p p C], N = (H/p)(W/p)
    h_0 = patches W_e + E_pos             (E_pos: the fixed 2-D sine-cosine embedding)
    h_l = Block_l(h_{l-1}), l = 1..depth  (pre-LN, bidirectional: gen_jax.nets.transformer.Block)
    tokens = LN(h_depth)                  [B, N, width]: one token a patch, no [CLS]

(LLaVA keeps the patch tokens, not a pooled vector, and so does this encoder.)

Mixed precision (gen_jax.policy): under a bfloat16 compute dtype the patch embedding and
the blocks run in bfloat16 with the attention softmax and the LayerNorm statistics in
float32, as in gen_jax.nets.transformer; the tokens feed the paradigm's projector, not a
loss, so they stay in the compute dtype.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from gen_jax import policy as policy_lib
from gen_jax.errors import UserError
from gen_jax.nets.dit import patchify, sincos_2d
from gen_jax.nets.transformer import Block


class ViT(nn.Module):
  """Patch transformer: images [B, H, W, C] in [0, 1] -> tokens [B, (H/p)(W/p), width]."""
  patch_size: int = 2
  width: int = 64
  depth: int = 2
  num_heads: int = 4
  mlp_ratio: int = 4

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    b, h, w, c = images.shape
    p = self.patch_size
    if h % p or w % p:
      raise UserError(f"ViT patch_size={p} does not divide the {h}x{w} images; set "
                      f"model.patch_size to a divisor of {h} and {w}.")
    x = patchify(2.0 * images - 1.0, p)
    x = nn.Dense(self.width, name="patch_embed")(x) + sincos_2d(h // p, w // p, self.width)
    block = policy_lib.remat_block(Block, static_argnums=(3,))
    for i in range(self.depth):
      x, _ = block(self.num_heads, self.mlp_ratio, True, 0.0, self.depth, False,
                   name=f"block_{i}")(x, None, train)
    return nn.LayerNorm(epsilon=1e-5, name="ln")(x)
