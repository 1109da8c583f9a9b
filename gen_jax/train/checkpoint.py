"""Orbax checkpoints of the train state together with the data iterator's state.

`checkpoints/` of a workdir holds Orbax steps, each with `state` (the
`TrainState`) and `data` (the grain iterator's position), so a restored run
reads exactly the batches an uninterrupted one would have read next. What else
a workdir holds, and the config check on relaunch, is `gen_jax.workdir`'s.

Each saved step also holds `manifest.json`: the sha256 and size of every file
of the step, written last and atomically, so it marks the step as complete and
lets a restore tell a flipped bit or a torn file from a good checkpoint. A step
whose files do not match its manifest is corrupt: it is set aside
(`<step>.corrupt`), named with the file that differs, and the previous step is
tried. Steps saved before manifests existed restore with a one-line note.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os

import grain
import jax
import orbax.checkpoint as ocp

from gen_jax.errors import UserError

MANIFEST = "manifest.json"
# Errors of the file system that no relaunch on the same disk can get past without a change.
WRITE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "read-only file system",
                errno.EDQUOT: "disk quota exceeded", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted"}


class CheckpointError(RuntimeError):
  """A checkpoint step that cannot be used; the message names the step and the cause."""


def make_manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False))


def step_dir(manager: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(str(manager.directory), str(step))


def _file_digests(root: str) -> dict:
  """{relative path: [sha256 hex, size]} of every file under `root` but the manifest."""
  out = {}
  for folder, _, files in os.walk(root):
    for name in sorted(files):
      path = os.path.join(folder, name)
      rel = os.path.relpath(path, root)
      if rel.startswith(MANIFEST):          # the manifest and its temporary file
        continue
      digest = hashlib.sha256()
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          digest.update(block)
      out[rel] = [digest.hexdigest(), os.path.getsize(path)]
  return out


def write_manifest(root: str) -> None:
  """Hashes every file of a saved step into `root/manifest.json` (atomically, last)."""
  path = os.path.join(root, MANIFEST)
  files = _file_digests(root)
  with open(path + ".tmp", "w") as f:
    json.dump({"format": 1, "files": files}, f, indent=1, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(path + ".tmp", path)


def verify_manifest(root: str, required: bool = False) -> bool:
  """True if the step's files match its manifest; False if it has none and none is
  `required` (a step saved before manifests existed); raises CheckpointError naming the
  first file that differs, or the missing manifest when one is required (the manifest is
  the commit marker: a step without one, among steps with one, is a save that did not end)."""
  path = os.path.join(root, MANIFEST)
  if not os.path.exists(path):
    if required:
      raise CheckpointError("it has no manifest.json, so its save did not complete")
    return False
  try:
    with open(path) as f:
      expected = json.load(f)["files"]
  except (OSError, ValueError, KeyError) as e:
    raise CheckpointError(f"its manifest {path} is unreadable ({e})") from None
  found = _file_digests(root)
  for rel in sorted(set(expected) | set(found)):
    if rel not in found:
      raise CheckpointError(f"file {rel} is missing")
    if rel not in expected:
      raise CheckpointError(f"file {rel} is not in its manifest")
    if found[rel][1] != expected[rel][1]:
      raise CheckpointError(f"file {rel} has {found[rel][1]} bytes, the manifest says "
                            f"{expected[rel][1]}")
    if found[rel][0] != expected[rel][0]:
      raise CheckpointError(f"file {rel} does not match its sha256 in the manifest "
                            "(its contents changed after the save)")
  return True


def write_error(e: BaseException) -> str | None:
  """The cause of a failed write in words, or None if `e` is not a file-system failure
  (Orbax wraps ENOSPC as `ValueError: RESOURCE_EXHAUSTED ...`)."""
  for err in (e, e.__cause__, e.__context__):
    if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
      return f"{WRITE_ERRNOS[err.errno]}: {err.filename or ''}".rstrip(": ")
  text = str(e)
  if "RESOURCE_EXHAUSTED" in text or "No space left" in text:
    return "no space left on the device"
  if isinstance(e, OSError):
    return f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")
  return None


def save(manager: ocp.CheckpointManager, step: int, state, data_iterator) -> None:
  """Saves the state and the data iterator as `step`, then its manifest.

  A failed write stops the run with one UserError naming the path and the cause;
  the half-written step stays in Orbax's temporary folder (never a step a restore
  would take), so the previous checkpoint is what a relaunch resumes from.
  """
  args = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  try:
    manager.save(step, args=ocp.args.Composite(**args), force=True)
    if jax.process_index() == 0:
      write_manifest(step_dir(manager, step))
  except Exception as e:  # noqa: BLE001 -- only file-system failures are translated
    cause = write_error(e)
    if cause is None:
      raise
    raise UserError(f"Could not write checkpoint step {step} to {manager.directory} ({cause}); "
                    "free disk space or make the workdir writable, then relaunch to resume "
                    "from the last saved step.") from None


def _first_line(e: BaseException, limit: int = 300) -> str:
  """`Type: first line of the message`, cut at a word boundary if long."""
  text = str(e).strip().splitlines()[0] if str(e).strip() else ""
  if len(text) > limit:
    text = text[:limit].rsplit(" ", 1)[0] + " ..."
  return f"{type(e).__name__}: {text}" if not isinstance(e, CheckpointError) else text


def restore_latest(manager: ocp.CheckpointManager, abstract_state, data_iterator,
                   quarantine: bool = False):
  """Restores the newest intact step; returns (state, step, failures).

  `failures` lists (step, why) of the newer steps that did not restore: each is
  reported by name and skipped, never deleted. With `quarantine` (a training
  relaunch, which will save that step number again) it is renamed
  `<step>.corrupt` beside the others. A step is intact when its files match its
  manifest (or it predates manifests) and Orbax restores it.
  """
  failures = []
  steps = sorted(manager.all_steps(), reverse=True)
  # Manifests exist since gen_jax checksummed checkpoints: in a workdir that has any, every
  # complete step has one. Only a workdir with none at all holds steps from before.
  required = any(os.path.exists(os.path.join(step_dir(manager, s), MANIFEST)) for s in steps)
  for step in steps:
    path = step_dir(manager, step)
    args = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      checked = verify_manifest(path, required)
      restored = manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # noqa: BLE001 -- any failure means this step is unusable
      why = _first_line(e)
      moved = ""
      if quarantine and os.path.isdir(path):
        moved = f" and moved to {path}.corrupt"
        os.replace(path, f"{path}.corrupt")
        manager.reload()
      logging.warning("Checkpoint step %d in %s could not be restored (%s); it is kept on "
                      "disk%s. Trying an older one.", step, manager.directory, why, moved)
      failures.append((step, why))
      continue
    if not checked:
      logging.warning("Checkpoint step %d in %s has no manifest (saved before gen_jax "
                      "checksummed checkpoints); restored without verifying it.", step,
                      manager.directory)
    return restored["state"], step, failures
  return None, None, failures
