"""Multi-layer perceptrons.

Mixed precision: under a bfloat16 policy (`gen_jax.policy`) the Dense layers and the
activations between them run in bfloat16; nothing here is kept in float32 -- the output of
the top-level net an MLP belongs to is cast back to float32 by the policy before the loss.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax


class MLP(nn.Module):
  """Dense layers with an activation between them; the last layer is linear."""
  features: Sequence[int]
  activation: Callable = nn.gelu
  zero_init_last: bool = False

  @nn.compact
  def __call__(self, x):
    for i, width in enumerate(self.features):
      last = i == len(self.features) - 1
      init = nn.initializers.zeros if (last and self.zero_init_last) else nn.linear.default_kernel_init
      x = nn.Dense(width, kernel_init=init)(x)
      if not last:
        x = self.activation(x)
    return x


def flatten(x: jax.Array) -> jax.Array:
  return x.reshape(x.shape[0], -1)
