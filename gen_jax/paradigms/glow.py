r"""Glow (Kingma & Dhariwal 2018, arXiv:1807.03039) on dequantized images (uniform or variational).

A multi-scale flow: at each of `num_scales` scales, squeeze, `steps_per_scale` steps of
[ActNorm, LU-parameterised invertible 1x1 convolution, affine coupling], and factor out
half the channels (not after the last scale); a standard normal prior on every latent.
The loss, likelihood (the exact density of the dequantized data: a bound on the discrete
levels) and sampling are `gen_jax.paradigms.flow.image_flow_paradigm`'s, documented there.
model_config fields: num_scales, steps_per_scale, hidden (conditioner width), and the
dequantization / logit_alpha / sample_temperature fields of `gen_jax.paradigms.flow`.
"""
from __future__ import annotations

from gen_jax.paradigms import flow as flow_lib
from gen_jax.paradigms.base import Paradigm


def make(model_config, info) -> Paradigm:
  return flow_lib.multiscale_image_paradigm(model_config, info, "glow")
