"""Paradigms: one module each, exposing `make(model_config, info) -> Paradigm` and `Fields`,
the frozen dataclass of its config.model fields and their defaults (`base.parse_model_config`).

The families' shared modules, where a new variant starts: `diffusion` (a DiffusionSpec and
a paradigm module) and `flow` (a bijective linen module and image_flow_paradigm /
point_flow_paradigm); their docstrings show how.
"""
from __future__ import annotations

import importlib

from gen_jax.errors import UserError
from gen_jax.paradigms.base import Paradigm, parse_model_config


def load_paradigm(config, info) -> Paradigm:
  """Builds the paradigm `config.paradigm` names, via its module's `make(config.model, info)`.

  A bare name ("vae") means `gen_jax.paradigms.vae`; a dotted path
  ("my_project.my_paradigm") names a module outside the library.
  """
  name = config.paradigm
  module_name = name if "." in name else f"gen_jax.paradigms.{name}"
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name != module_name:
      raise
    raise UserError(
        f"Unknown paradigm {name!r}: there is no module {module_name}. Set config.paradigm "
        "to the name of a module in gen_jax/paradigms/ (or a dotted module path).") from None
  if not callable(getattr(module, "make", None)):
    raise UserError(
        f"config.paradigm={name!r}: module {module_name} has no make(model_config, info), so it "
        "is not a paradigm (gen_jax.paradigms.diffusion and .flow are families that paradigms "
        "build on). Set config.paradigm to a paradigm module such as 'ddpm' or 'glow'.")
  return module.make(config.model, info)


__all__ = ["Paradigm", "load_paradigm", "parse_model_config"]
