"""Orbax checkpoints of the train state together with the data iterator's state.

`checkpoints/` of a workdir holds Orbax steps, each with `state` (the
`TrainState`) and `data` (the grain iterator's position), so a restored run
reads exactly the batches an uninterrupted one would have read next. What else
a workdir holds, and the config check on relaunch, is `gen_jax.workdir`'s.
"""
from __future__ import annotations

import logging
import os

import grain
import orbax.checkpoint as ocp

from gen_jax.errors import UserError

def make_manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False))


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator) -> None:
  args = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  try:
    manager.save(step, args=ocp.args.Composite(**args), force=True)
  except OSError as e:
    raise UserError(f"Could not write checkpoint step {step} to {manager.directory} ({e}); "
                    "free disk space or make the workdir writable, then relaunch to resume "
                    "from the last saved step.") from None


def restore_latest(manager: ocp.CheckpointManager, abstract_state, data_iterator,
                   quarantine: bool = False):
  """Restores the newest intact step; returns (state, step) or (None, None).

  A step that fails to restore (truncated, corrupted) is reported by name and
  skipped, never deleted. With `quarantine` (a training relaunch, which will
  save that step number again) it is renamed `<step>.corrupt` beside the others.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    args = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # noqa: BLE001 -- any failure means this step is unusable
      path = os.path.join(str(manager.directory), str(step))
      moved = ""
      if quarantine and os.path.isdir(path):
        moved = f" and moved to {path}.corrupt"
        os.replace(path, f"{path}.corrupt")
        manager.reload()
      logging.warning("Checkpoint step %d in %s could not be restored (%s: %s); it is kept "
                      "on disk%s. Trying an older one.", step, manager.directory,
                      type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "", moved)
      continue
    return restored["state"], step
  return None, None
