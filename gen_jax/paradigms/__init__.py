"""Paradigms: one module each, exposing `make(model_config, info) -> Paradigm`."""
from __future__ import annotations

import importlib

from gen_jax.paradigms.base import Paradigm


def load_paradigm(config, info) -> Paradigm:
  """Imports `gen_jax.paradigms.<config.paradigm>` and builds its paradigm."""
  name = config.paradigm
  try:
    module = importlib.import_module(f"gen_jax.paradigms.{name}")
  except ModuleNotFoundError as e:
    if e.name != f"gen_jax.paradigms.{name}":
      raise
    raise ValueError(
        f"Unknown paradigm {name!r}: there is no module gen_jax/paradigms/{name}.py. "
        "Set config.paradigm to the name of a module in gen_jax/paradigms/.") from None
  return module.make(config.model, info)


__all__ = ["Paradigm", "load_paradigm"]
