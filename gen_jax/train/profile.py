"""A `jax.profiler` trace of chosen training steps: `config.profile_steps = "N,M"`.

    --config.profile_steps=10,20     # steps 10..20 (1-based, both included)

The trace starts once step N - 1 has finished and stops once step M has (each waits for
the device, so the trace holds steps N..M whole and nothing else of the run), each step
inside a `jax.profiler.StepTraceAnnotation("train", step_num=k)`; it is written into the
workdir's TensorBoard directory (`<workdir>/tensorboard/plugins/profile/<run>/
<host>.xplane.pb`), where TensorBoard's Profile tab (the `tensorboard-plugin-profile`
package) or XProf show it. Step 1 holds the compilation: trace from step 2 or later for a
representative step. A relaunch that resumes inside N..M traces the window's remaining
steps; one that resumes past M traces nothing.
"""
from __future__ import annotations

import logging
import re

import jax

from gen_jax.errors import UserError
from gen_jax.train.loop import Hook


def parse_steps(spec: str, num_train_steps: int) -> tuple[int, int] | None:
  """"N,M" -> (N, M) with 1 <= N <= M <= num_train_steps; "" -> None; else a UserError."""
  spec = (spec or "").strip()
  if not spec:
    return None
  match = re.fullmatch(r"\s*(-?\d+)\s*,\s*(-?\d+)\s*", spec)
  fix = (f"set --config.profile_steps=N,M, the first and last step to trace, with 1 <= N <= M "
         f"<= num_train_steps={num_train_steps} (e.g. 10,20), or '' to trace nothing")
  if match is None:
    raise UserError(f"config.profile_steps={spec!r} is not two whole numbers N,M; {fix}.")
  first, last = int(match[1]), int(match[2])
  if first < 1:
    raise UserError(f"config.profile_steps={spec!r} starts at step {first}, but steps count "
                    f"from 1; {fix}.")
  if first > last:
    raise UserError(f"config.profile_steps={spec!r} starts after it ends ({first} > {last}); "
                    f"{fix}.")
  if last > num_train_steps:
    raise UserError(f"config.profile_steps={spec!r} ends past the run (step {last} > "
                    f"num_train_steps={num_train_steps}); {fix}.")
  return first, last


class StepTrace:
  """Starts and stops the trace of steps `first..last` around the loop.

      trace = StepTrace(first, last, log_dir)
      trace.begin(start)                           # before the launch's first step
      step_fn = trace.annotate(step_fn, start)
      train_loop(step_fn, ..., hooks=trace.around(hooks))
      trace.end()                                  # in a finally: an early stop closes it
  """

  def __init__(self, first: int, last: int, log_dir: str):
    self.first, self.last, self.log_dir = first, last, log_dir
    self.active = False
    self.traced = False

  def _start(self, state=None):
    if state is not None:
      jax.block_until_ready(state)        # the steps before N stay out of the trace
    jax.profiler.start_trace(self.log_dir)
    self.active = True

  def _stop(self, state=None):
    if state is not None:
      jax.block_until_ready(state)        # step M is in the trace whole
    jax.profiler.stop_trace()
    self.active, self.traced = False, True
    logging.info("Profile of steps %d..%d written under %s/plugins/profile.", self.first,
                 self.last, self.log_dir)

  def begin(self, start: int) -> None:
    """Before the first step of a launch that resumes at `start` (0 for a new run)."""
    if self.first - 1 <= start < self.last:
      self._start()
    elif start >= self.last:
      logging.info("config.profile_steps: steps %d..%d were run before step %d; no trace.",
                   self.first, self.last, start)

  def _start_after(self, step, state, metrics):
    del metrics
    if step == self.first - 1 and not self.active:
      self._start(state)

  def _stop_after(self, step, state, metrics):
    del metrics
    if step == self.last and self.active:
      self._stop(state)

  def around(self, hooks: list[Hook]) -> list[Hook]:
    """`hooks` with the trace's own: it stops after step M before they run and starts after
    step N - 1 once they have, so their work (logs, checkpoints, evals) stays out of it."""
    return [Hook("profile_stop", self._stop_after, every=1, on_stop="if_due"), *hooks,
            Hook("profile_start", self._start_after, every=1, on_stop="skip")]

  def annotate(self, step_fn, start: int):
    """`step_fn` with each call inside a StepTraceAnnotation naming its step (1-based)."""
    step = start

    def annotated(state, batch, key):
      nonlocal step
      step += 1
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        return step_fn(state, batch, key)
    return annotated

  def end(self) -> None:
    """Stops a trace still open (the loop stopped inside the window)."""
    if self.active:
      self._stop()
