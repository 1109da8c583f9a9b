"""The one training loop: any paradigm, any mesh, resumable, with metrics and samples.

    state = train(config, workdir)

1. Shapes first: the paradigm's init is `jax.eval_shape`d, shardings are
   derived from the shapes, and the state is born sharded by a jitted init.
2. The step is one `jax.jit` with explicit in/out shardings over a
   `Mesh(data, fsdp)`; its key is `fold_in(train_key, step)`.
3. Orbax saves the state and the grain iterator together; relaunching the same
   command resumes exactly (bitwise) where the newest checkpoint left off.
4. SIGTERM saves and exits cleanly; a NaN/inf loss or gradient halts the run
   naming the step and never reaches a checkpoint (or, with
   `on_nonfinite="skip"`, the step is skipped).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import signal
import threading
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tqdm

from gen_jax import data as data_lib
from gen_jax.errors import NonFiniteError, UserError
from gen_jax.eval.likelihood import evaluate_likelihood, masked_sums
from gen_jax.paradigms import load_paradigm
from gen_jax.train import checkpoint as ckpt_lib
from gen_jax.train import optim
from gen_jax.train import sharding as shard_lib
from gen_jax.train.metrics import MetricWriter
from gen_jax.train.state import NONFINITE_NAMES, TrainState, freeze, init_state, make_train_step
from gen_jax.utils import images


def data_kwargs(config) -> dict:
  """The config's data fields as keyword arguments of the gen_jax.data functions
  (with `stage1`, the stage-1 run a two-stage config's "encoded" dataset comes from)."""
  kwargs = dict(data_dir=config.data_dir or None, manual_dir=config.manual_dir or None,
                preprocess=config.preprocess, seq_len=config.seq_len)
  if config.get("stage1") is not None:
    kwargs["stage1"] = config.stage1
  return kwargs


def run_keys(seed: int) -> dict:
  """Every key of a run, derived from the config seed (nothing else invents keys)."""
  base = jax.random.key(seed)
  return {name: jax.random.fold_in(base, i)
          for i, name in enumerate(("init", "train", "eval", "sample"))}


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

  def put_batch(self, batch):
    return shard_lib.put_batch(batch, self.mesh)

  def init_state(self, example_batch) -> TrainState:
    def init_fn(rng, batch):
      params = self.paradigm.init(rng, batch)
      return init_state(self.paradigm, self.optimizers, params, self.config.ema_decay)
    return jax.jit(init_fn, out_shardings=self.state_shardings)(self.keys["init"], example_batch)

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


def build(config, info=None, paradigm=None) -> Run:
  """Dataset info, paradigm, mesh, optimizers and the abstract sharded state."""
  if info is None:
    info = data_lib.get_info(config.dataset, **data_kwargs(config))
  if paradigm is None:
    try:
      paradigm = load_paradigm(config, info)
    except (ValueError, TypeError) as e:
      raise UserError(f"config.model does not fit dataset {config.dataset!r}: {e}") from None
  mesh = shard_lib.make_mesh(config.mesh)
  shard_lib.global_batch_size_check(config.batch_size, mesh)
  players = paradigm.players or (None,)
  optimizers, schedules = {}, {}
  for p in players:
    optimizers[p], schedules[p] = optim.make_optimizer(config.optimizer, config.num_train_steps, p)
    optimizers[p] = freeze(optimizers[p], paradigm.non_trainable)
  keys = run_keys(config.seed)

  def init_fn(rng, batch):
    return init_state(paradigm, optimizers, paradigm.init(rng, batch), config.ema_decay)

  abstract = jax.eval_shape(init_fn, keys["init"], example_batch(info))
  shardings = shard_lib.tree_shardings(abstract, mesh)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
  return Run(config, info, paradigm, mesh, optimizers, schedules, abstract, shardings, keys)


def jit_train_step(run: Run):
  step = make_train_step(run.paradigm, run.optimizers, run.schedules, run.config.ema_decay,
                         skip_nonfinite=run.config.on_nonfinite == "skip", gather=run.gather)
  replicated = shard_lib.replicated(run.mesh)
  return jax.jit(step, in_shardings=(run.state_shardings, shard_lib.batch_sharding(run.mesh),
                                     replicated),
                 out_shardings=(run.state_shardings, replicated), donate_argnums=0)


def evaluate(run: Run, state: TrainState, split: str = "test", max_examples=None) -> dict | None:
  """bits/dim (or nats/token) of the sampling params on a split; None without a likelihood."""
  if run.paradigm.log_likelihood is None:
    return None
  cfg = run.config
  batches = data_lib.eval_batches(
      cfg.dataset, split=split, batch_size=cfg.eval_batch_size, max_examples=max_examples,
      process_index=jax.process_index(), process_count=jax.process_count(), **data_kwargs(cfg))
  sums = jax.jit(masked_sums(run.with_gathered_params(run.paradigm.log_likelihood)),
                 out_shardings=shard_lib.replicated(run.mesh))
  return evaluate_likelihood(sums, run.sampling_params(state), batches, run.keys["eval"],
                             run.info, put=run.put_batch,
                             likelihood_is_exact=run.paradigm.likelihood_is_exact, split=split)


def draw_samples(run: Run, state: TrainState, step: int):
  """`config.num_samples` samples (jitted, replicated on every process) as numpy."""
  sample = jax.jit(functools.partial(run.with_gathered_params(run.paradigm.sample),
                                     num=run.config.num_samples),
                   out_shardings=shard_lib.replicated(run.mesh))
  samples = sample(run.sampling_params(state), jax.random.fold_in(run.keys["sample"], step))
  return np.asarray(jax.device_get(samples))


def write_samples(run: Run, samples, workdir: str, step: int) -> str:
  """samples/step_<N>.png (or .txt for text)."""
  path = os.path.join(workdir, "samples", f"step_{step}")
  if run.info.kind == "text":
    text = "\n\n---\n\n".join("".join(run.info.vocab[t] for t in row) for row in samples[:8])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".txt", "w") as f:
      f.write(text)
    return path + ".txt"
  images.save_png(images.to_picture(samples), path + ".png")
  return path + ".png"


class _SigtermFlag:
  """Sets a flag on SIGTERM (preemption) so the loop saves and exits cleanly."""

  def __init__(self):
    self.raised = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    logging.warning("SIGTERM received: saving a checkpoint and exiting.")
    self.raised = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _check_finite(state: TrainState, config) -> None:
  """Halts on a recorded NaN/inf step (unless config.on_nonfinite == "skip")."""
  bad = int(jax.device_get(state.nonfinite_step))
  if bad >= 0 and config.on_nonfinite == "halt":
    what = NONFINITE_NAMES.get(int(jax.device_get(state.nonfinite_what)), "loss")
    raise NonFiniteError(
        f"The {what} became NaN/inf at step {bad}; the run stopped and its newest checkpoint "
        "is the last good state. Lower optimizer.learning_rate, set "
        "optimizer.grad_clip_norm, or set --config.on_nonfinite=skip to skip such steps.")


def _check_same_stage1(workdir: str, info, write: bool) -> None:
  """A stage-2 run records its stage 1's fingerprint and refuses to resume on another one
  (a retrained stage 1 gives other codes, so the run would silently change data)."""
  if info.stage1 is None:
    return
  path = os.path.join(workdir, "stage1.json")
  record = {"workdir": info.stage1.workdir, "step": info.stage1.step,
            "fingerprint": info.stage1.fingerprint}
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if old["fingerprint"] != record["fingerprint"]:
      raise UserError(
          f"The workdir {workdir} was trained on the codes of stage 1 {old['workdir']} step "
          f"{old['step']} (sha256 {old['fingerprint'][:12]}), but that stage-1 run now holds other "
          f"params or config (step {record['step']}, sha256 {record['fingerprint'][:12]}). Use a "
          "new --workdir for a stage 2 on the new stage 1.")
  elif write:
    with open(path + ".tmp", "w") as f:
      json.dump(record, f, indent=2)
    os.replace(path + ".tmp", path)


def train(config, workdir: str, *, paradigm=None, progress: bool = True) -> TrainState:
  """Trains `config` in `workdir`, resuming from its newest checkpoint if any.

  `paradigm` overrides the one `config.paradigm` names (e.g. a Paradigm built
  in a notebook around a new loss); otherwise it is built from the config.
  """
  is_main = jax.process_index() == 0
  ckpt_lib.check_or_write_config(workdir, config, write=is_main)
  if config.on_nonfinite not in ("halt", "skip"):
    raise UserError(f"config.on_nonfinite={config.on_nonfinite!r}; use 'halt' or 'skip'.")
  run = build(config, paradigm=paradigm)
  _check_same_stage1(workdir, run.info, write=is_main)
  def new_train_iter():
    return data_lib.train_iterator(
        config.dataset, batch_size=config.batch_size, seed=config.seed,
        process_index=jax.process_index(), process_count=jax.process_count(),
        **data_kwargs(config))

  train_iter = new_train_iter()
  manager = ckpt_lib.make_manager(workdir, config.keep_checkpoints)
  state, start = ckpt_lib.restore_latest(manager, run.abstract_state, train_iter,
                                         quarantine=is_main)
  writer = MetricWriter(workdir, enabled=is_main)
  if state is None:
    start = 0
    train_iter = new_train_iter()      # a failed restore may have moved the old one
    # Data-dependent init (e.g. ActNorm) sees the first real batch, read from a
    # separate iterator so the saved one is not advanced.
    state = run.init_state(run.put_batch(next(new_train_iter())))
  else:
    logging.info("Resumed from step %d of %s.", start, workdir)
  writer.truncate_after(start)
  train_step = jit_train_step(run)
  train_key = run.keys["train"]
  total = config.num_train_steps
  bar = tqdm.tqdm(total=total, initial=start, disable=not (progress and is_main),
                  desc=f"{config.paradigm}/{config.dataset}", dynamic_ncols=True)
  pending = []          # metrics of steps not yet written (fetched lazily)
  step = start

  def flush():
    if pending:
      logged = jax.device_get(pending)
      for s, m in logged:
        writer.write(s, m)
      bar.set_postfix(loss=f"{float(logged[-1][1]['loss']):.4f}")
      pending.clear()

  def save(step):
    _check_finite(state, config)
    ckpt_lib.save(manager, step, state, train_iter)

  with _SigtermFlag() as sigterm:
    try:
      while step < total:
        batch = run.put_batch(next(train_iter))
        state, metrics = train_step(state, batch, train_key)
        step += 1
        bar.update(1)
        if step % config.log_every_steps == 0 or step == total:
          pending.append((step, metrics))
          flush()
          _check_finite(state, config)
        if step % config.checkpoint_every_steps == 0 or step == total or sigterm.raised:
          save(step)
        if sigterm.raised:
          break
        if step % config.eval_every_steps == 0 or step == total:
          t0 = time.perf_counter()
          result = evaluate(run, state, max_examples=config.get("eval_max_examples") or None)
          if result is not None:
            result["seconds"] = time.perf_counter() - t0
            writer.write(step, {f"eval/{k}": float(v) for k, v in result.items()
                                if isinstance(v, (int, float))})
        if step % config.sample_every_steps == 0 or step == total:
          samples = draw_samples(run, state, step)     # every process takes part
          if is_main:
            write_samples(run, samples, workdir, step)
    finally:
      bar.close()
      manager.wait_until_finished()
      manager.close()
      writer.close()
  return state


def load_config(workdir: str):
  """The config a workdir was trained with (read from JSON: nothing is executed)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise UserError(f"{workdir} has no config.json: it is not a gen_jax workdir. Train into it "
                    "first with `python -m experiments.train --config=... --workdir=...`.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def restore(workdir: str, step: int | None = None, paradigm=None, mesh: str | None = None,
            model_overrides: dict | None = None):
  """(run, state, step) of a trained workdir's newest (or given) intact checkpoint.

  `mesh` lays the state out on another mesh than the run's (e.g. a checkpoint
  saved on 8 devices restored on 1); by default the run's mesh, or all local
  devices on the data axis when the run's mesh needs more devices than exist.
  `model_overrides` replaces config.model fields that do not shape the parameters
  (e.g. ddpm's vlb_num_steps) in the restored run's paradigm.
  """
  config = load_config(workdir)
  if model_overrides:
    config.model.update(model_overrides)
  if mesh is None:
    try:
      shard_lib.parse_mesh(config.mesh, jax.device_count())
    except UserError:
      logging.warning("Mesh %r of %s does not fit %d device(s); restoring on data=-1.",
                      config.mesh, workdir, jax.device_count())
      mesh = "data=-1,fsdp=1"
  if mesh is not None:
    config.mesh = mesh
  run = build(config, paradigm=paradigm)
  _check_same_stage1(workdir, run.info, write=False)
  manager = ckpt_lib.make_manager(workdir, config.keep_checkpoints)
  try:
    if step is not None:
      state = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(run.abstract_state)))["state"]
    else:
      state, step = ckpt_lib.restore_latest(manager, run.abstract_state, None)
  finally:
    manager.close()
  if state is None:
    raise UserError(f"{workdir} has no intact checkpoint yet; train (or resume) it first.")
  return run, state, step


def evaluate_workdir(workdir: str, split: str = "test", iwae_k: int = 0,
                     max_examples: int = 0, paradigm=None, vlb_num_steps: int = -1) -> dict:
  """Evaluates a workdir's newest checkpoint; writes and returns the eval.json record.
  vlb_num_steps >= 0 (ddpm): the terms of the variational bound (0 = all T), else the
  config's."""
  overrides = {"vlb_num_steps": vlb_num_steps} if vlb_num_steps >= 0 else None
  if overrides and (saved := load_config(workdir).paradigm) != "ddpm":
    raise UserError(f"vlb_num_steps is a ddpm setting; {workdir} holds a {saved} run. "
                    "Drop --vlb_num_steps.")
  run, state, step = restore(workdir, paradigm=paradigm, model_overrides=overrides)
  if iwae_k:
    ll = functools.partial(run.paradigm.log_likelihood, num_samples=iwae_k)
    run.paradigm = run.paradigm._replace(log_likelihood=ll)
  result = evaluate(run, state, split=split, max_examples=max_examples or None)
  if result is None:
    result = {"bits_per_dim": None, "bound": None, "split": split,
              "note": f"{run.config.paradigm} has no likelihood: it is scored by its samples."}
  result = {"paradigm": run.config.paradigm, "dataset": run.config.dataset, "step": step,
            **result}
  if iwae_k:
    result["iwae_k"] = iwae_k
  if overrides:
    result["vlb_num_steps"] = vlb_num_steps
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(result, f, indent=2)
  return result
