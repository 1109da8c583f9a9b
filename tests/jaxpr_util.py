"""A helper the tests share: walking a jaxpr's equations."""
from __future__ import annotations


def eqns(jaxpr):
  """Every equation of a jaxpr, those of its sub-jaxprs (jit, custom_vjp, remat) included."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in (value if isinstance(value, (tuple, list)) else (value,)):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          yield from eqns(inner)
