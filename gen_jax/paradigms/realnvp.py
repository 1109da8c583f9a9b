r"""RealNVP (Dinh, Sohl-Dickstein & Bengio 2016, arXiv:1605.08803) on dequantized images (uniform or variational).

A multi-scale flow of masked affine couplings: at each scale but the last,
`steps_per_scale` checkerboard couplings, squeeze, `steps_per_scale` channel couplings,
then half the channels are factored out; the last scale has `steps_per_scale + 1`
checkerboard couplings. A standard normal prior on every latent (no batch norm: the
couplings' zero-initialised conditioners make the flow start as the identity).
The loss, likelihood (the exact density of the dequantized data: a bound on the discrete
levels) and sampling are `gen_jax.paradigms.flow.image_flow_paradigm`'s, documented there.
model_config fields: num_scales, steps_per_scale, hidden (conditioner width), and the
dequantization / logit_alpha / sample_temperature fields of `gen_jax.paradigms.flow`.
"""
from __future__ import annotations

from gen_jax.paradigms import flow as flow_lib
from gen_jax.paradigms.base import Paradigm


def make(model_config, info) -> Paradigm:
  return flow_lib.multiscale_image_paradigm(model_config, info, "realnvp")
