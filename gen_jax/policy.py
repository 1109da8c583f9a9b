r"""How the nets run inside a training step: compute dtype (mixed precision) and rematerialisation.

One `Policy` per run, from the config fields every config has (`from_config`):

    config.compute_dtype = "float32"   # float32 | bfloat16: activations and matmuls
    config.param_dtype = "float32"     # float32 | bfloat16: stored params, optimizer state, EMA
    config.remat = "none"              # none | blocks | full | a jax.checkpoint_policies name

The training step (`gen_jax.train.state`) calls the paradigm's loss as

    with policy.active():
      loss_fn(policy.cast_to_compute(params), batch, rng)

so no paradigm reads these fields itself. Mixed precision follows Micikevicius et al. 2018
("Mixed Precision Training", arXiv:1710.03740) and jmp's policy: the float32 master
parameters are cast to the compute dtype for the forward and backward pass (their gradients
come back in float32 through the cast), and while the policy is active every `nn.Dense`,
`nn.DenseGeneral`, `nn.Conv`, `nn.ConvTranspose`, `nn.Embed` and `nn.Einsum` casts its
floating inputs to the compute dtype, so the matmuls and the activations between them run in
it. What the loss reduces over stays float32:

* the outputs of every top-level network call (the module a paradigm `apply`s) are cast back
  to float32, so logits, predicted noise, log-variances and decoder means reach the loss,
  the log-softmax / log-sum-exp and the likelihood in float32;
* flax's LayerNorm and GroupNorm compute their mean and variance in float32
  (`force_float32_reductions`), whatever their input;
* `jax.nn.dot_product_attention` forms its softmax in float32;
* the flows add their log-determinant terms in float32 (`gen_jax.nets.flows`);
* noise schedules are float64 numpy arrays cast once (`gen_jax.losses.score_matching`).

Evaluation and sampling run outside the policy, in the parameters' own dtype (float32).
float16 is refused: without loss scaling its 5-bit exponent underflows small gradients
(bfloat16 keeps float32's 8-bit exponent and needs none).

Rematerialisation (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost",
arXiv:1604.06174): a net marks its repeated blocks with `remat_block(Block)` (the
transformer's blocks, the U-Net's residual and attention blocks, the flows' coupling
conditioners). Under a policy with
`remat="blocks"` each block keeps only its input for the backward pass and recomputes the
rest (`nn.remat`, jax.checkpoint's `nothing_saveable`); a `jax.checkpoint_policies` name
keeps what that policy saves (e.g. `dots_with_no_batch_dims_saveable`: the weight matmuls'
outputs); `"full"` is `"blocks"` and, in the step, the whole loss under `jax.checkpoint` too,
so nothing of the forward pass but its inputs is held between the passes. Results equal the
unrematerialised step's within float rounding (XLA may fuse the recomputation differently).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import UserError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# jax.checkpoint_policies that are policies themselves (not factories that take names).
NAMED_POLICIES = ("nothing_saveable", "everything_saveable", "dots_saveable",
                  "dots_with_no_batch_dims_saveable")
REMAT = ("none", "blocks", "full", *NAMED_POLICIES)
# The layers whose inputs are cast to the compute dtype (their matmuls run in it).
_CAST_INPUTS = (nn.Dense, nn.DenseGeneral, nn.Conv, nn.ConvTranspose, nn.Embed, nn.Einsum)


@dataclasses.dataclass(frozen=True)
class Policy:
  """The dtypes and the rematerialisation of a training step (see the module docstring)."""
  compute_dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @property
  def mixed(self) -> bool:
    return jnp.dtype(self.compute_dtype) != jnp.dtype(jnp.float32)

  def cast_to_compute(self, tree):
    """Floating leaves of `tree` in the compute dtype (ints, keys and bools as they are)."""
    return _cast_floating(tree, self.compute_dtype) if self.mixed else tree

  def cast_to_param(self, tree):
    """Floating leaves of `tree` in the parameters' dtype (at init)."""
    if jnp.dtype(self.param_dtype) == jnp.dtype(jnp.float32):
      return tree
    return _cast_floating(tree, self.param_dtype)

  @contextlib.contextmanager
  def active(self):
    """The policy the nets see while tracing a loss: casts at the layers, remat of blocks."""
    token = _CURRENT.set(self)
    try:
      if self.mixed:
        with nn.intercept_methods(self._intercept):
          yield self
      else:
        yield self
    finally:
      _CURRENT.reset(token)

  def _intercept(self, next_fun, args, kwargs, context):
    module = context.module
    if isinstance(module, _CAST_INPUTS):
      args = _cast_floating(args, self.compute_dtype)
    out = next_fun(*args, **kwargs)
    if not module.scope.path:   # a top-level network call (not a block under nn.remat): float32 out
      out = _cast_floating(out, jnp.float32)
    return out


_CURRENT = contextvars.ContextVar("gen_jax_policy", default=Policy())


def current() -> Policy:
  """The active policy (the default float32, no-remat one outside a training step)."""
  return _CURRENT.get()


def _cast_floating(tree, dtype):
  def cast(x):
    if isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
      return x.astype(dtype)
    return x
  return jax.tree.map(cast, tree)


def remat_block(block_cls, static_argnums=()):
  """`block_cls`, rematerialised as the active policy says (unchanged under remat="none").

  Call it where the block is built (in `setup` or a compact `__call__`), so that it reads the
  policy of the step being traced. `static_argnums` as `nn.remat`'s (1-based counting `self`
  as 0): arguments that are Python values, such as a `train` flag passed positionally.
  """
  remat = current().remat
  if remat == "none":
    return block_cls
  saveable = None if remat in ("blocks", "full") else getattr(jax.checkpoint_policies, remat)
  return nn.remat(block_cls, policy=saveable, static_argnums=static_argnums)


def from_config(config) -> Policy:
  """The run's Policy from config.compute_dtype / param_dtype / remat, each checked."""
  names = {"compute_dtype": config.get("compute_dtype", "float32"),
           "param_dtype": config.get("param_dtype", "float32")}
  for field, name in names.items():
    if name == "float16":
      raise UserError(f"config.{field}=float16 needs loss scaling, which gen_jax does not do; "
                      f"use --config.{field}=bfloat16 (float32's exponent range, no scaling).")
    if name not in DTYPES:
      raise UserError(f"config.{field}={name!r} is not a dtype gen_jax trains in; use one of "
                      f"{', '.join(DTYPES)}.")
  remat = config.get("remat", "none")
  if remat not in REMAT:
    raise UserError(f"config.remat={remat!r} is not a rematerialisation policy; use one of "
                    f"{', '.join(REMAT)}.")
  return Policy(DTYPES[names["compute_dtype"]], DTYPES[names["param_dtype"]], remat)
