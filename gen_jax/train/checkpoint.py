"""Orbax checkpoints of the train state together with the data iterator's state.

A workdir holds `config.json` (the config that created it) and `checkpoints/`
(Orbax steps, each with `state` and `data`). Relaunching with the same config
resumes from the newest intact step; a different config is refused.
"""
from __future__ import annotations

import json
import logging
import os

import grain
import orbax.checkpoint as ocp

from gen_jax.errors import UserError

# Fields that may differ between launches of one run: they change how often
# things are logged or saved, or where the run is laid out, never the
# trajectory of the parameters.
RELAUNCH_FIELDS = ("mesh", "log_every_steps", "eval_every_steps", "checkpoint_every_steps",
                   "sample_every_steps", "num_samples", "keep_checkpoints",
                   "eval_batch_size", "eval_max_examples", "data_dir", "manual_dir")

# Fields added to the configs after workdirs were made without them, each with the value that
# does what the code did before the field existed: a saved config that lacks the field is the
# same experiment as a new one that holds this value. Add a field here when you add it to a config.
ADDED_FIELDS = {"model.ddim_spacing": "uniform", "model.split_prior": "standard",
                "model.res_blocks": 0}


def flat_dict(d, prefix=""):
  """{"a": {"b": 1}} -> {"a.b": 1}: nested dicts as one level of dotted keys."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flat_dict(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_to_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def check_or_write_config(workdir: str, config, write: bool = True) -> None:
  """Refuses a workdir created by a different config; records the config otherwise."""
  path = os.path.join(workdir, "config.json")
  new = json.loads(config_to_json(config))
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
      raise UserError(f"{path} is unreadable ({e}); this workdir's config is unknown: "
                      "use a new --workdir.") from None
    a, b = flat_dict(old), flat_dict(new)
    for k, value in ADDED_FIELDS.items():     # a field the saved config predates
      if k in b and k not in a and b[k] == value:
        a[k] = value
    diff = sorted(k for k in set(a) | set(b)
                  if a.get(k) != b.get(k) and k.split(".")[0] not in RELAUNCH_FIELDS)
    if diff:
      shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:6])
      raise UserError(
          f"The workdir {workdir} was created by a different config ({shown}"
          f"{', ...' if len(diff) > 6 else ''}). Use a new --workdir for a new "
          "experiment, or relaunch with the original config to resume.")
    return
  if write:
    os.makedirs(workdir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
      f.write(config_to_json(config))
    os.replace(path + ".tmp", path)


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
