r"""`config.paradigm = 'glow'`: the flow family's multi-scale image flow with Glow's steps.

A config name, nothing more: `make` is `gen_jax.paradigms.flow.multiscale_image_paradigm`
with architecture='glow' (Kingma & Dhariwal 2018, arXiv:1807.03039): at each scale, squeeze,
K steps of [ActNorm, LU-parameterised invertible 1x1 convolution, affine coupling], then half
the channels factored out (not after the last scale). Its fields are `Fields`
(`flow.MultiScaleFields`); loss, likelihood and sampling are documented in
`gen_jax.paradigms.flow`. Kept as a module because configs and saved runs name it.
"""
import functools

from gen_jax.paradigms import flow

Fields = flow.MultiScaleFields
make = functools.partial(flow.multiscale_image_paradigm, architecture="glow")
