r"""Glow (Kingma & Dhariwal 2018, arXiv:1807.03039) on dequantized images (uniform or variational).

A multi-scale flow: at each of `num_scales` scales, squeeze, `steps_per_scale` steps of
[ActNorm, LU-parameterised invertible 1x1 convolution, affine coupling], and factor out
half the channels (not after the last scale); a standard normal prior on every latent.
-log p(x + u) = -log N(z; 0, I) - log|det dz/dy| - log|det dy/dw| + D log L for w = (x + u) / L,
y = w - 1/2 (or logit). `log_likelihood` is the exact density of the dequantized data (a lower
bound on the discrete log-probability; minus log q(u | x) with variational dequantization);
`sample(params, rng, num, temperature)` is one inverse pass.

model_config fields: num_scales, steps_per_scale, hidden (conditioner width); optional
dequantization ('uniform' | 'variational', Flow++ arXiv:1902.00275), dequantizer_steps,
dequantizer_hidden, logit_alpha (0 = y = w - 1/2), sample_temperature (see `_flow_common`).
"""
from __future__ import annotations

from gen_jax.nets.flows import MultiScaleFlow, multiscale_plan
from gen_jax.paradigms import _flow_common
from gen_jax.paradigms.base import Paradigm


def make(model_config, info) -> Paradigm:
  _flow_common.check_image_info(info, "glow")
  multiscale_plan(info.shape, model_config.num_scales, "glow")  # raises on a bad shape
  flow = MultiScaleFlow(image_shape=tuple(info.shape), num_scales=model_config.num_scales,
                        steps_per_scale=model_config.steps_per_scale, hidden=model_config.hidden,
                        architecture="glow")
  return _flow_common.image_flow_paradigm(flow, info, model_config)
