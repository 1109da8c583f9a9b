"""A run built from a config: dataset info, paradigm, mesh, optimizers, sharded state shapes.

    run = build(config)                       # nothing is allocated yet
    state = run.init_state(run.put_batch(first_batch))

Shapes come first: the paradigm's init is `jax.eval_shape`d, the shardings are
derived from those shapes, and `Run.init_state` makes the state born sharded by
a jitted init. A two-stage config (`dataset="encoded"`) needs its stage-1 run
loaded by the caller (`gen_jax.workdir.build` does it) and passed as `stage1`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from gen_jax import data as data_lib
from gen_jax.data import synthetic as synthetic_lib
from gen_jax.errors import UserError
from gen_jax import policy as policy_lib
from gen_jax.paradigms import load_paradigm
from gen_jax.train import optim
from gen_jax.train import sharding as shard_lib
from gen_jax.train.state import TrainState, freeze, init_state


def data_kwargs(config, stage1=None) -> dict:
  """The config's data fields as keyword arguments of the gen_jax.data functions
  (with `stage1`, the loaded stage-1 run a two-stage config's "encoded" dataset comes from)."""
  kwargs = dict(data_dir=config.data_dir or None, manual_dir=config.manual_dir or None,
                preprocess=config.preprocess, seq_len=config.seq_len)
  if stage1 is not None:
    kwargs["stage1"] = stage1
  return kwargs


def run_keys(seed: int) -> dict:
  """Every key of a run, derived from the config seed (nothing else invents keys)."""
  base = jax.random.key(seed)
  return {name: jax.random.fold_in(base, i)       # "data": synthetic batches (gen_jax.data.synthetic)
          for i, name in enumerate(("init", "train", "eval", "sample", "data"))}


@dataclasses.dataclass
class Run:
  """Everything built from a config, before any training."""
  config: Any
  info: Any
  paradigm: Any
  mesh: Any
  optimizers: dict
  schedules: dict
  abstract_state: Any
  state_shardings: Any
  keys: dict
  data_kwargs: dict
  policy: policy_lib.Policy = policy_lib.Policy()

  def put_batch(self, batch):
    return shard_lib.put_batch(batch, self.mesh)

  @property
  def replicated(self):
    """The sharding of values every device holds whole (metrics, samples, sums)."""
    return shard_lib.replicated(self.mesh)

  def init_state(self, example_batch) -> TrainState:
    def init_fn(rng, batch):
      params = self.paradigm.init(rng, batch)
      return init_state(self.paradigm, self.optimizers, params, self.config.ema_decay,
                        self.policy)
    return jax.jit(init_fn, out_shardings=self.state_shardings)(self.keys["init"], example_batch)

  def init_state_from(self, params) -> TrainState:
    """The state of a new run whose params (and EMA) are `params` (arrays shaped and typed
    like `abstract_state.params`, e.g. read by `gen_jax.train.params_file`), laid out on the
    mesh, with the optimizer state fresh (initialised on them) and the step at 0."""
    def init_fn(params):
      return init_state(self.paradigm, self.optimizers, params, self.config.ema_decay,
                        self.policy)
    return jax.jit(init_fn, out_shardings=self.state_shardings)(params)

  def gather(self, params):
    """Inside jit: the whole parameters from their fsdp-split storage."""
    return shard_lib.gather_for_compute(params, self.mesh)

  def with_gathered_params(self, fn):
    """fn(params, ...) -> the same function on fsdp-stored params."""
    return lambda params, *args, **kwargs: fn(self.gather(params), *args, **kwargs)

  def sampling_params(self, state: TrainState):
    return state.ema_params if state.ema_params is not None else state.params


def example_batch(info, batch_size: int = 2) -> dict:
  """A zero batch with the dataset's shapes and dtypes (for shape-only init)."""
  if info.kind == "image":
    return {"image": np.zeros((batch_size, *info.shape), np.uint8),
            "label": np.zeros((batch_size,), np.int32)}
  if info.kind == "points":
    return {"x": np.zeros((batch_size, *info.shape), np.float32)}
  if info.kind in ("codes", "latents"):
    code = (np.zeros((batch_size, *info.shape), np.int32) if info.kind == "codes"
            else np.zeros((batch_size, *info.shape), np.float32))
    return {info.data_key: code, "image": np.zeros((batch_size, *info.image_shape), np.uint8),
            "label": np.zeros((batch_size,), np.int32)}
  return {"tokens": np.zeros((batch_size, *info.shape), np.int32)}


def build(config, *, stage1=None, info=None, paradigm=None) -> Run:
  """Dataset info, paradigm, mesh, optimizers and the abstract sharded state.

  Args:
    config: a gen_jax config (`experiments/configs/*.py`).
    stage1: the loaded stage-1 run of a two-stage config (`gen_jax.workdir.Stage1`): the
      tokenizer of an "encoded" dataset, or a teacher beside the run's own dataset (consistency
      distillation), which the paradigm reads from `info.stage1`.
    info: the dataset's `DatasetInfo` (default: read from the dataset).
    paradigm: a `Paradigm` to train instead of the one `config.paradigm` names.

  Errors that the paradigm's validation raises (`UserError`) reach the caller
  as they are; any other exception from a paradigm's `make` is a bug in that
  paradigm and keeps its traceback.
  """
  kwargs = data_kwargs(config, stage1)
  if info is None:
    if config.dataset == "encoded" and stage1 is None:
      raise UserError("Dataset 'encoded' is a stage-1 run's codes: build this config through "
                      "gen_jax.workdir (train, restore or build), which loads config.stage1.")
    if config.dataset == synthetic_lib.NAME:
      info = synthetic_lib.synthetic_info(config.get("synthetic_like", ""), **kwargs)
    else:
      info = data_lib.get_info(config.dataset, **kwargs)
  if stage1 is not None and info.stage1 is None:   # a teacher beside the run's own data
    info = dataclasses.replace(info, stage1=stage1)
  if paradigm is None:
    paradigm = load_paradigm(config, info)
  policy = policy_lib.from_config(config)
  mesh = shard_lib.make_mesh(config.mesh)
  shard_lib.global_batch_size_check(config.batch_size, mesh)
  grad_accum_check(config.get("grad_accum_steps", 1), config.batch_size, mesh)
  players = paradigm.players or (None,)
  optimizers, schedules = {}, {}
  for p in players:
    optimizers[p], schedules[p] = optim.make_optimizer(config.optimizer, config.num_train_steps, p)
    optimizers[p] = freeze(optimizers[p], paradigm.non_trainable)
  keys = run_keys(config.seed)

  def init_fn(rng, batch):
    return init_state(paradigm, optimizers, paradigm.init(rng, batch), config.ema_decay, policy)

  abstract = jax.eval_shape(init_fn, keys["init"], example_batch(info))
  shardings = shard_lib.tree_shardings(abstract, mesh)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
  return Run(config, info, paradigm, mesh, optimizers, schedules, abstract, shardings, keys,
             kwargs, policy)


def grad_accum_check(k, batch_size: int, mesh) -> None:
  """config.grad_accum_steps must be a positive int dividing each device's batch share."""
  per_device = batch_size // shard_lib.batch_shards(mesh)
  if not isinstance(k, int) or isinstance(k, bool) or k < 1 or per_device % k:
    raise UserError(
        f"config.grad_accum_steps={k!r} must be a whole number >= 1 that divides the batch "
        f"each device holds ({batch_size} over {shard_lib.batch_shards(mesh)} device(s) = "
        f"{per_device}); use a divisor of {per_device} or change config.batch_size.")
