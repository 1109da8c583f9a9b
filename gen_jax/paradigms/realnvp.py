r"""`config.paradigm = 'realnvp'`: the flow family's multi-scale image flow with RealNVP's couplings.

A config name, nothing more: `make` is `gen_jax.paradigms.flow.multiscale_image_paradigm`
with architecture='realnvp' (Dinh, Sohl-Dickstein & Bengio 2016, arXiv:1605.08803): at each
scale but the last, K checkerboard couplings, squeeze, K channel couplings, then half the
channels factored out; the last scale has K + 1 checkerboard couplings (no batch norm: the
zero-initialised conditioners start the flow at the identity). Its fields are `Fields`
(`flow.MultiScaleFields`); loss, likelihood and sampling are documented in
`gen_jax.paradigms.flow`. Kept as a module because configs and saved runs name it.
"""
import functools

from gen_jax.paradigms import flow

Fields = flow.MultiScaleFields
make = functools.partial(flow.multiscale_image_paradigm, architecture="realnvp")
