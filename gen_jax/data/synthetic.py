"""Synthetic data for throughput: random batches of a dataset's shapes, made on device.

    --config.dataset=synthetic [--config.synthetic_like=cifar10]

measures a step's speed at paper scale on any machine: no input pipeline and no files,
only random arrays with the shapes, dtypes and value ranges of the dataset the config was
written for (`config.synthetic_like`, which every config sets to its own dataset):

* images: {"image": uint8 [B, H, W, C] uniform on the levels 0..L-1, "label": int32 [B]
  uniform on 0..K-1 where the dataset has K classes};
* points: {"x": float32 [B, D] standard normal};
* text: {"tokens": int32 [B, seq_len + 1] uniform on the vocabulary}.

The shapes come from `gen_jax.data.info.PLANNING_INFO` where it holds the name (the
catalog datasets this machine cannot prepare: cifar10, openwebtext), else from the dataset
itself (`get_info`: digits, toy2d, ...; mnist_idx and text_file read their raw files for the
vocabulary and shapes). A two-stage config (`synthetic_like="encoded"`) is refused: its codes'
shapes and codebook come from a trained stage-1 run, so its speed is measured on its
encoded data.

Global batch k is `make_batch(fold_in(key, k), info, B)`, made by one jitted function whose
output is laid out with the run's batch sharding (each device draws its own rows; with
`jax_threefry_partitionable`, JAX's default, the draws do not depend on the layout), so
the loop's `put_batch` passes it through untouched. The iterator's state is k (`get_state`
/ `set_state`, the same protocol as grain's iterators, so it is checkpointed beside the
train state), and a relaunch draws the batches an uninterrupted run would have. There is
no test split: `gen_jax.workdir` skips the periodic evaluation of such a run and refuses to
evaluate it.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.data.info import DatasetInfo, planning_info
from gen_jax.errors import UserError

NAME = "synthetic"


def synthetic_info(like: str, *, data_dir: Optional[str] = None,
                   manual_dir: Optional[str] = None, preprocess: str = "none",
                   seq_len: int = 64) -> DatasetInfo:
  """The DatasetInfo of synthetic data shaped like dataset `like` (named "synthetic/<like>").

  Args:
    like: the dataset whose shapes the batches take (`config.synthetic_like`).
    data_dir, manual_dir, preprocess, seq_len: as for `gen_jax.data.get_info`; read only
      when `like` is not in PLANNING_INFO.
  """
  if not like or like == NAME:
    raise UserError(f"config.dataset='synthetic' needs the dataset whose shapes to copy, but "
                    f"config.synthetic_like={like!r}; set --config.synthetic_like=NAME (e.g. "
                    "cifar10, openwebtext, digits).")
  if like == "encoded":
    raise UserError("config.dataset='synthetic' on a two-stage config (synthetic_like="
                    "'encoded'): its codes' shapes and codebook come from its trained stage-1 "
                    "run, so measure its speed on its encoded data (drop --config.dataset="
                    "synthetic), or give a one-stage config.")
  info = planning_info(like, seq_len, preprocess)
  if info is None:
    from gen_jax.data import pipeline      # reads the dataset's own description
    info = pipeline.get_info(like, data_dir=data_dir, manual_dir=manual_dir,
                             preprocess=preprocess, seq_len=seq_len)
  if info.kind not in ("image", "points", "text"):
    raise UserError(f"config.synthetic_like={like!r} holds {info.kind}; synthetic data copies "
                    "image, point or text datasets.")
  return dataclasses.replace(info, name=f"{NAME}/{info.name}")


def make_batch(key, info: DatasetInfo, batch_size: int) -> dict:
  """One random global batch with `info`'s keys, shapes, dtypes and ranges (pure, jittable)."""
  shape = (batch_size, *info.shape)
  if info.kind == "image":
    key_image, key_label = jax.random.split(key)
    levels = jax.random.randint(key_image, shape, 0, info.num_levels, jnp.int32)
    batch = {"image": levels.astype(jnp.uint8)}
    if info.num_classes:
      batch["label"] = jax.random.randint(key_label, (batch_size,), 0, info.num_classes,
                                          jnp.int32)
    return batch
  if info.kind == "points":
    return {"x": jax.random.normal(key, shape, jnp.float32)}
  if info.kind == "text":
    return {"tokens": jax.random.randint(key, shape, 0, info.vocab_size, jnp.int32)}
  raise UserError(f"Synthetic data copies image, point or text datasets; {info.name!r} is "
                  f"{info.kind}.")


@functools.lru_cache(maxsize=16)
def _generator(kind, shape, num_levels, num_classes, vocab_size, batch_size, sharding):
  """(key, k) -> batch k, jitted once per shape and layout (so the iterators a run makes,
  e.g. again after a restore, share one compiled generator)."""
  info = DatasetInfo(name=NAME, kind=kind, shape=shape, num_levels=num_levels,
                     num_classes=num_classes,
                     vocab=range(vocab_size) if vocab_size is not None else None)
  return jax.jit(lambda key, k: make_batch(jax.random.fold_in(key, k), info, batch_size),
                 out_shardings=sharding)


class SyntheticBatches:
  """Infinite iterator of global synthetic batches already on device.

  Batch k is `make_batch(fold_in(key, k), info, batch_size)`, computed by one jitted
  function with `out_shardings=sharding` (the run's batch sharding; None: the default
  device). `get_state()` / `set_state()` (bytes, as a grain DataLoader iterator's) hold k,
  so `grain.checkpoint.CheckpointSave/Restore` checkpoint it like the real pipeline.
  """

  def __init__(self, info: DatasetInfo, batch_size: int, key, sharding=None, start: int = 0):
    self.info, self.batch_size = info, batch_size
    self._key, self._next = key, int(start)
    self._generate = _generator(info.kind, tuple(info.shape), info.num_levels, info.num_classes,
                                info.vocab_size, batch_size, sharding)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    batch = self._generate(self._key, np.int32(self._next))
    self._next += 1
    return batch

  def get_state(self) -> bytes:
    return json.dumps({"next_index": self._next}).encode()

  def set_state(self, state) -> None:
    state = json.loads(state.decode() if isinstance(state, bytes) else state)
    self._next = int(state["next_index"])

  def start_prefetch(self) -> None:
    """Nothing to prefetch: batches are made when asked for (grain's restore calls this)."""
