r"""Two-stage models: a stage-1 tokenizer, then a stage-2 prior over its codes.

Stage 1 (a `vqvae`, or a `vae` for latents) is trained alone. A stage-2 config
names it in `config.stage1` (see `stage1_config`) and trains on
`config.dataset = "encoded"`: the stage-1 dataset encoded once by the stage-1
encoder and cached (`gen_jax.data.encoded`). The stage-2 paradigm reaches the
stage-1 decoder through `info.stage1`, the `Stage1` this module loads.

    config.dataset = "encoded"
    config.stage1 = stage1_config("/tmp/gen_jax/vqvae_digits", paradigm="vqvae",
                                  dataset="digits", model=dict(num_codes=64))

Every field of `config.stage1` but `workdir` and `step` is a value the stage-1
run's saved config must hold (same nesting: `stage1.model.num_codes` is the
stage-1 `model.num_codes`); a run that differs is refused with one UserError.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from typing import Any, Optional

import ml_collections
import numpy as np

from gen_jax.errors import UserError
from gen_jax.train.checkpoint import flat_dict

_OWN_FIELDS = ("workdir", "step")


def stage1_config(workdir: str, step: int = 0, **expect) -> ml_collections.ConfigDict:
  """`config.stage1` of a stage-2 config.

  Args:
    workdir: the stage-1 run's workdir.
    step: its checkpoint to use; 0 = the run's final step (`num_train_steps`),
      which must exist (an unfinished stage 1 is refused).
    **expect: values the stage-1 saved config must have, nested as in it, e.g.
      `paradigm="vqvae", dataset="digits", model=dict(num_codes=64)`.
  """
  return ml_collections.ConfigDict(dict(workdir=workdir, step=step, **expect))


@dataclasses.dataclass(frozen=True, eq=False)
class Stage1:
  """A finished stage-1 run: its saved config, image info, paradigm and params.

  `params` are the run's sampling params (EMA when it had EMA) as host numpy
  arrays, so the bound methods below are plain jittable functions of their
  arguments (params enter a jitted caller as constants). `fingerprint` is a
  sha256 of the config, the step and the params' bytes: it keys the encoded
  dataset's cache.
  """
  workdir: str
  config: Any
  info: Any
  paradigm: Any
  params: Any
  step: int
  fingerprint: str

  def encode(self, x_levels):
    """Images (levels, [B, H, W, C]) -> codes int32 [B, h, w] or latents float32 [B, ...]."""
    return self.paradigm.encode(self.params, x_levels)

  def decode(self, code):
    """Codes or latents -> images float32 [B, H, W, C] in [0, 1]."""
    return self.paradigm.decode(self.params, code)

  def decoder_log_likelihood(self, code, x_levels):
    """log p(x | code) in nats per image [B] on the images' levels."""
    return self.paradigm.decoder_log_likelihood(self.params, code, x_levels)


def _normalized(value):
  """A config (ConfigDict or dict) as JSON gives it back (tuples -> lists), for comparisons."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  return json.loads(json.dumps(value, default=str))


def check_expected(saved_config, expect, workdir: str) -> None:
  """Raises a UserError naming the first field where the stage-1 config differs from `expect`."""
  saved = flat_dict(_normalized(saved_config))
  wanted = {k: v for k, v in flat_dict(_normalized(expect)).items() if k not in _OWN_FIELDS}
  for field, value in sorted(wanted.items()):
    if field not in saved:
      raise UserError(
          f"config.stage1.{field}={value!r} but the stage-1 run {workdir} has no field {field}: it "
          f"is not the kind of run this stage-2 config expects. Point --config.stage1.workdir at a "
          f"run trained with {field}={value!r}.")
    if saved[field] != value:
      raise UserError(
          f"The stage-1 run {workdir} was trained with {field}={saved[field]!r}, but this stage-2 "
          f"config expects config.stage1.{field}={value!r}. Point --config.stage1.workdir at a "
          f"stage-1 run with {field}={value!r}, or set --config.stage1.{field}={saved[field]!r} "
          "(and the stage-2 fields that depend on it).")


def _train_command(workdir: str, expect) -> str:
  paradigm, dataset = expect.get("paradigm", "<paradigm>"), expect.get("dataset", "<dataset>")
  return (f"python -m experiments.train --config=experiments/configs/{paradigm}.py:{dataset} "
          f"--workdir={workdir}")


def _params_digest(params) -> str:
  import jax
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    leaf = np.ascontiguousarray(leaf)
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(str((leaf.dtype, leaf.shape)).encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()


def _checkpoint_steps(workdir: str) -> list[int]:
  path = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(path):
    return []
  return sorted(int(d) for d in os.listdir(path) if d.isdigit())


@functools.lru_cache(maxsize=4)
def _load(workdir: str, step: int, mtime: float) -> Stage1:
  del mtime                     # part of the cache key: a rewritten checkpoint is reloaded
  import jax
  from gen_jax.train import checkpoint as ckpt_lib
  from gen_jax.train import loop
  run, state, step = loop.restore(workdir, step=step, mesh="data=-1,fsdp=1")
  params = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), run.sampling_params(state))
  config = run.config
  for name in ("encode", "decode", "decoder_log_likelihood"):
    if getattr(run.paradigm, name) is None:
      raise UserError(f"The stage-1 run {workdir} trained paradigm {config.paradigm!r}, which has no "
                      f"`{name}`: it cannot serve as a tokenizer. Use a vqvae (codes) or vae "
                      "(latents) run as stage 1.")
  kept = {k: v for k, v in flat_dict(_normalized(config)).items()
          if k.split(".")[0] not in ckpt_lib.RELAUNCH_FIELDS}
  digest = hashlib.sha256(json.dumps([kept, step], sort_keys=True).encode())
  digest.update(_params_digest(params).encode())
  return Stage1(workdir=workdir, config=config, info=run.info, paradigm=run.paradigm,
                params=params, step=int(step), fingerprint=digest.hexdigest())


def load_stage1(workdir: str, step: Optional[int] = None, expect=None) -> Stage1:
  """The finished stage-1 run in `workdir` (cached per process).

  Args:
    workdir: a workdir trained by `experiments.train` (a vqvae or vae run).
    step: the checkpoint; None or 0 = the final step `num_train_steps`, which
      must exist (a missing or unfinished run is refused, naming the command
      that finishes it).
    expect: `config.stage1` of a stage-2 config: its fields (but workdir and
      step) must equal the stage-1 saved config's (`check_expected`).
  """
  from gen_jax.train import loop
  expect = _normalized(expect or {})
  workdir = os.path.abspath(os.path.expanduser(workdir or ""))
  if not os.path.exists(os.path.join(workdir, "config.json")):
    raise UserError(
        f"config.stage1.workdir={workdir} holds no stage-1 run (no config.json). Train stage 1 "
        f"first: `{_train_command(workdir, expect)}`, or point --config.stage1.workdir at one.")
  saved = loop.load_config(workdir)
  check_expected(saved, expect, workdir)
  steps = _checkpoint_steps(workdir)
  want = int(step or 0) or int(saved.num_train_steps)
  if want not in steps:
    newest = f"its newest checkpoint is step {steps[-1]}" if steps else "it has no checkpoint yet"
    if int(step or 0):
      raise UserError(f"config.stage1.step={want} but the stage-1 run {workdir} has no checkpoint "
                      f"at that step ({newest}; kept: {steps}). Use one of those steps, or 0 for "
                      "the final one.")
    raise UserError(
        f"The stage-1 run {workdir} is unfinished: {newest} of num_train_steps="
        f"{saved.num_train_steps}. Finish it by relaunching `{_train_command(workdir, saved)}` "
        f"(it resumes){f', or set --config.stage1.step={steps[-1]} to use that checkpoint' if steps else ''}.")
  mtime = os.path.getmtime(os.path.join(workdir, "checkpoints", str(want)))
  return _load(workdir, want, mtime)
