"""The one training loop: a jitted step, then the periodic actions as hooks.

    step_fn = jit_train_step(run)
    state, step = train_loop(step_fn, state, batches, train_key, start=0, num_steps=2000,
                             hooks=[Hook("log", log_fn, every=50, on_stop="if_due"),
                                    Hook("checkpoint", save_fn, every=500, on_stop="always"), ...])

The step is one `jax.jit` with explicit in/out shardings over the run's
`Mesh(data, fsdp)`; its key is `fold_in(train_key, state.step)` inside the step
(`gen_jax.train.state`), so a resumed run draws what an uninterrupted one does.
After each step the hooks run in their order, each `hook.fn(step, state,
metrics)` when `step % hook.every == 0` or at the last step. A stop request
(SIGTERM or Ctrl-C, `StopRequest`) ends the loop after the step in flight: hooks with
`on_stop="always"` (the checkpoint) run, `"if_due"` ones (logging) run only if
due, and `"skip"` ones (eval, samples) are left to the relaunch.

What the hooks do to a workdir (metrics, Orbax checkpoints, sample grids) is
`gen_jax.workdir.train`'s business; this module knows no files.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from typing import Any, Callable, Iterator

import jax
import tqdm

from gen_jax.errors import NonFiniteError
from gen_jax.train import sharding as shard_lib
from gen_jax.train.state import NONFINITE_NAMES, TrainState, make_train_step

ON_STOP = ("always", "if_due", "skip")


def jit_train_step(run):
  """The run's `(state, batch, train_key) -> (state, metrics)`, jitted with explicit
  shardings (state as `run.state_shardings`, batch split on the data axis) and the
  input state donated."""
  step = make_train_step(run.paradigm, run.optimizers, run.schedules, run.config.ema_decay,
                         skip_nonfinite=run.config.on_nonfinite == "skip", gather=run.gather,
                         policy=run.policy,
                         grad_accum_steps=run.config.get("grad_accum_steps", 1))
  return jax.jit(step, in_shardings=(run.state_shardings, shard_lib.batch_sharding(run.mesh),
                                     run.replicated),
                 out_shardings=(run.state_shardings, run.replicated), donate_argnums=0)


@dataclasses.dataclass(frozen=True)
class Hook:
  """A periodic action: `fn(step, state, metrics)` every `every` steps and at the last.

  A dict that `fn` returns is shown beside the progress bar (e.g. the logged loss).

  `on_stop` says what happens at a step after which the loop stops early:
  "always" runs it (a checkpoint), "if_due" runs it only on its period (logs),
  "skip" leaves it to the relaunch (evaluations, sample grids).
  """
  name: str
  fn: Callable[[int, TrainState, Any], dict | None]
  every: int
  on_stop: str = "skip"

  def __post_init__(self):
    if self.on_stop not in ON_STOP:
      raise ValueError(f"Hook {self.name!r}: on_stop={self.on_stop!r}, use one of {ON_STOP}.")

  def due(self, step: int, last: int) -> bool:
    return step % self.every == 0 or step == last


class StopRequest:
  """A context that sets `.requested` on SIGTERM (preemption) or a first SIGINT (Ctrl-C):
  the loop then stops after the step in flight, once the hooks that must run on a stop
  (the checkpoint) have run. `.signal` names the signal. A second Ctrl-C aborts at once
  (KeyboardInterrupt); a save it interrupts never replaces the newest complete checkpoint
  (Orbax writes a step into a temporary folder and renames it when complete)."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self.signal = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def _handle(self, signum, frame):
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    name = signal.Signals(signum).name
    logging.warning("%s received: saving a checkpoint and exiting%s.", name,
                    " (Ctrl-C again aborts at once)" if signum == signal.SIGINT else "")
    self.requested, self.signal = True, name

  def __exit__(self, *exc):
    for s, previous in self._previous.items():
      signal.signal(s, previous)


def check_finite(state: TrainState, on_nonfinite: str, has_checkpoint: bool = True) -> None:
  """Raises NonFiniteError on a recorded NaN/inf step (unless on_nonfinite == "skip")."""
  bad = int(jax.device_get(state.nonfinite_step))
  if bad >= 0 and on_nonfinite == "halt":
    what = NONFINITE_NAMES.get(int(jax.device_get(state.nonfinite_what)), "loss")
    saved = ("its newest checkpoint is the last good state" if has_checkpoint else
             "no checkpoint was saved before it")
    raise NonFiniteError(
        f"The {what} became NaN/inf at step {bad}; the run stopped and {saved}. Lower "
        "optimizer.learning_rate (relaunch with --resume_changes=optimizer.learning_rate), "
        "set optimizer.grad_clip_norm, or relaunch with --config.on_nonfinite=skip to skip "
        "such steps.")


def train_loop(step_fn, state: TrainState, batches: Iterator, train_key, *, start: int,
               num_steps: int, hooks: list[Hook], put_batch=lambda b: b,
               stop: StopRequest | None = None, progress: bool = True, desc: str = ""):
  """Runs `step_fn` from step `start` to `num_steps`, calling the hooks; returns (state, step).

  Args:
    step_fn: `(state, batch, train_key) -> (state, metrics)` (`jit_train_step`).
    batches: an iterator of host batches; `put_batch` lays each out on the mesh.
    hooks: run in list order after each step they are due at (see `Hook`).
    stop: a `StopRequest`; when it is requested the loop ends after the current step.
    progress: show a tqdm bar with the ETA.
  """
  step = start
  with tqdm.tqdm(total=num_steps, initial=start, disable=not progress, desc=desc,
                 dynamic_ncols=True) as bar:
    while step < num_steps:
      state, metrics = step_fn(state, put_batch(next(batches)), train_key)
      step += 1
      bar.update(1)
      stopping = stop is not None and stop.requested
      for hook in hooks:
        due = hook.due(step, num_steps)
        if (due and not (stopping and hook.on_stop == "skip")) or (
            stopping and hook.on_stop == "always"):
          shown = hook.fn(step, state, metrics)
          if shown:
            bar.set_postfix(shown)
      if stopping:
        break
  return state, step
