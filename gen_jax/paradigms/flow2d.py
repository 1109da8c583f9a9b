r"""A normalizing flow on continuous vectors (the 2-D toy sets), Glow-style steps with MLP couplings.

K steps of [ActNorm, invertible linear map (LU), affine coupling with alternating masks]
(Kingma & Dhariwal 2018, arXiv:1807.03039; couplings of Dinh et al. 2016, arXiv:1605.08803).
log p(x) = log N(f(x); 0, I) + log|det df/dx| is exact (the data are continuous);
loss = mean -log p(x) in nats; `sample(params, rng, num, temperature=1.0)`.

model_config fields: num_steps, hidden, num_layers (hidden layers of each conditioner MLP).
"""
from __future__ import annotations

from gen_jax.errors import UserError
from gen_jax.nets.flows import VectorFlow
from gen_jax.paradigms import flow as flow_lib
from gen_jax.paradigms.base import Paradigm


def make(model_config, info) -> Paradigm:
  if info.kind != "points" or len(info.shape) != 1 or info.shape[0] < 2:
    raise UserError(
        f"flow2d models vectors of 2 or more coordinates (toy2d points), but dataset "
        f"{info.name!r} is {info.kind!r} of shape {info.shape}. Use a toy2d dataset, or the "
        f"realnvp / glow paradigms for images.")
  flow = VectorFlow(num_steps=model_config.num_steps, hidden=model_config.hidden,
                    num_layers=model_config.num_layers)
  return flow_lib.point_flow_paradigm(flow, info)
