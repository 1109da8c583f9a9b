r"""A normalizing flow on continuous vectors (the 2-D toy sets), Glow-style steps with MLP couplings.

K steps of [ActNorm, invertible linear map (LU), affine coupling with alternating masks]
(Kingma & Dhariwal 2018, arXiv:1807.03039; couplings of Dinh et al. 2016, arXiv:1605.08803).
log p(x) = log N(f(x); 0, I) + log|det df/dx| is exact (the data are continuous);
loss = mean -log p(x) in nats; `sample(params, rng, num, temperature=1.0)`.

config.model fields: `Fields` below.
"""
from __future__ import annotations

import dataclasses

from gen_jax.errors import UserError
from gen_jax.nets.flows import VectorFlow
from gen_jax.paradigms import flow as flow_lib
from gen_jax.paradigms.base import Paradigm, parse_model_config


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields:
  """flow2d's config.model fields, with their defaults."""
  num_steps: int = 12                # steps [ActNorm, invertible linear, affine coupling]
  hidden: int = 64                   # width of each coupling's MLP conditioner
  num_layers: int = 2                # hidden layers of each conditioner


def make(model_config, info) -> Paradigm:
  f = parse_model_config(Fields, model_config)
  if info.kind != "points" or len(info.shape) != 1 or info.shape[0] < 2:
    raise UserError(
        f"flow2d models vectors of 2 or more coordinates (toy2d points), but dataset "
        f"{info.name!r} is {info.kind!r} of shape {info.shape}. Use a toy2d dataset, or the "
        f"realnvp / glow paradigms for images.")
  flow = VectorFlow(num_steps=f.num_steps, hidden=f.hidden, num_layers=f.num_layers)
  return flow_lib.point_flow_paradigm(flow, info)
