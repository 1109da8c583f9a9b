r"""DiT: a transformer denoiser over image patches (Peebles & Xie 2023, arXiv:2212.09748).

The image x [B, H, W, C] is cut into N = (H/p)(W/p) patches of p x p x C values
(`patchify`), each linearly embedded to width D, plus a fixed 2-D sine-cosine position
embedding. The conditioning vector c = MLP(sinusoid(t)) (+ a label embedding whose
last row is the null label, for classifier-free guidance) modulates every block through
adaLN-Zero (Sec. 3.2):

    (beta_1, gamma_1, alpha_1, beta_2, gamma_2, alpha_2) = W_c SiLU(c) + b_c    (W_c, b_c = 0 at init)
    h <- h + alpha_1 * Attn(LN(h) (1 + gamma_1) + beta_1)
    h <- h + alpha_2 * MLP(LN(h) (1 + gamma_2) + beta_2)

with LayerNorms without their own scale and shift. The final layer is adaLN (shift and
scale from c, zero-initialised) and a zero-initialised linear map to p p C_out values a
patch, folded back into the image (`unpatchify`). Both zero initialisations make a
freshly initialised DiT output exactly 0 (each block is the identity), so every
objective starts at the prediction its preconditioning gives a zero network: eps_hat = 0
(DDPM), D = c_skip x (EDM), v = 0 (flow matching).

The call matches `gen_jax.nets.unet.UNet`: `DiT(...)(x, t, label=None, train=False)`,
t the paradigm's float time scaled to about [0, 1000]. The blocks reuse the GPT's
bidirectional self-attention and MLP (`gen_jax.nets.transformer`).

Mixed precision (gen_jax.policy): under bfloat16 the matmuls run in bfloat16 and the
attention softmax and the LayerNorm statistics stay float32 (as in the transformer); the
output is cast to float32 by the policy before the loss.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import UserError
from gen_jax.nets.transformer import Mlp, SelfAttention
from gen_jax.nets.unet import timestep_embedding
from gen_jax.policy import remat_block


def patchify(x, p: int):
  """[B, H, W, C] -> [B, (H/p)(W/p), p p C], patches in raster order, each row-major (i, j, c)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens, p: int, h: int, w: int):
  """The inverse of `patchify`: [B, (H/p)(W/p), p p C] -> [B, H, W, C]."""
  b, _, d = tokens.shape
  c = d // (p * p)
  x = tokens.reshape(b, h // p, w // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h, w, c)


def sincos_2d(grid_h: int, grid_w: int, dim: int):
  """The fixed 2-D sine-cosine position embedding [grid_h grid_w, dim] (MAE / DiT): half the
  width encodes the row, half the column, each as (sin, cos) of position / 10000^(2i / (dim/2))."""
  if dim % 4:
    raise UserError(f"DiT width {dim} must be a multiple of 4 (the 2-D position embedding).")
  omega = 1.0 / 10_000 ** (np.arange(dim // 4) / (dim // 4))

  def one_axis(pos):
    angle = pos.reshape(-1)[:, None] * omega[None]
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=1)
  rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64),
                           indexing="ij")
  return jnp.asarray(np.concatenate([one_axis(rows), one_axis(cols)], axis=1), jnp.float32)


def _modulate(h, shift, scale):
  return h * (1.0 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
  """One adaLN-Zero transformer block (Peebles & Xie 2023, Fig. 3); `train` is argument 3."""
  num_heads: int
  mlp_ratio: int = 4
  dropout: float = 0.0

  @nn.compact
  def __call__(self, h, c, train: bool):
    d = h.shape[-1]
    mod = nn.Dense(6 * d, kernel_init=nn.initializers.zeros, name="adaLN_modulation")(nn.silu(c))
    shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)
    norm = lambda name: nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False, name=name)
    y, _ = SelfAttention(self.num_heads, use_bias=True, causal=False, name="attn")(
        _modulate(norm("ln1")(h), shift1, scale1), None, train)
    if self.dropout > 0:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    h = h + gate1[:, None] * y
    y = Mlp(self.mlp_ratio * d, use_bias=True, name="mlp")(_modulate(norm("ln2")(h), shift2, scale2))
    if self.dropout > 0:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    return h + gate2[:, None] * y


class DiT(nn.Module):
  """Diffusion transformer for [B, H, W, C] images (the call of `UNet`).

  Attributes:
    patch_size: p; H and W must be divisible by it.
    width: D, the token width (a multiple of 4 and of num_heads).
    depth: number of DiT blocks.
    num_heads: attention heads.
    mlp_ratio: the MLP's hidden width over D.
    dropout: inside the blocks (train=True, rng 'dropout').
    num_classes: 0 unconditional; K > 0 adds a label embedding of K + 1 rows (row K: null).
    out_channels: output channels (default: the input's).
  """
  patch_size: int = 2
  width: int = 128
  depth: int = 4
  num_heads: int = 4
  mlp_ratio: int = 4
  dropout: float = 0.0
  num_classes: int = 0
  out_channels: int | None = None

  @nn.compact
  def __call__(self, x, t, label=None, *, train: bool = False):
    b, height, width_px, c_in = x.shape
    p, d = self.patch_size, self.width
    if height % p or width_px % p:
      raise UserError(f"DiT patch_size={p} must divide the image's H and W, but it is "
                      f"{height}x{width_px}; set --config.model.patch_size to a divisor.")
    if d % self.num_heads:
      raise UserError(f"DiT width={d} is not divisible by num_heads={self.num_heads}.")
    h = nn.Dense(d, name="patch_embed")(patchify(x, p))
    h = h + sincos_2d(height // p, width_px // p, d)[None].astype(h.dtype)
    c = timestep_embedding(t, 256)
    c = nn.Dense(d, name="t_embed_2")(nn.silu(nn.Dense(d, name="t_embed_1")(c)))
    if self.num_classes:
      if label is None:
        label = jnp.full((b,), self.num_classes, jnp.int32)
      c = c + nn.Embed(self.num_classes + 1, d, name="label_embed")(label)
    block = remat_block(DiTBlock, static_argnums=(3,))
    for i in range(self.depth):
      h = block(self.num_heads, self.mlp_ratio, self.dropout, name=f"block_{i}")(h, c, train)
    shift, scale = jnp.split(nn.Dense(2 * d, kernel_init=nn.initializers.zeros,
                                      name="final_modulation")(nn.silu(c)), 2, axis=-1)
    h = _modulate(nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False, name="ln_f")(h),
                  shift, scale)
    c_out = self.out_channels or c_in
    h = nn.Dense(p * p * c_out, kernel_init=nn.initializers.zeros, name="final")(h)
    return unpatchify(h, p, height, width_px)
