"""Metric writers: one JSON object per logged step, and TensorBoard scalars.

`metrics.jsonl` is the record of a run: each line is written whole in one call
and flushed, a reader drops a torn last line (a kill or a full disk in the middle
of a write) with a warning, and a resumed run first cuts the records after the
step it resumes from (they are redone, so nothing is doubled). TensorBoard's
event files are rebuilt from those records on resume, so TensorBoard shows
every step once too.
"""
from __future__ import annotations

import glob
import json
import logging
import math
import os
import time

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from gen_jax.errors import UserError


def _to_float(v):
  v = float(v)
  return v if math.isfinite(v) else str(v)


def _parse_lines(path: str) -> list[dict]:
  """The records of a metrics.jsonl; a torn (unparseable) last line is dropped with a
  warning, a torn line anywhere else means the file was edited: UserError naming it."""
  with open(path) as f:
    lines = [line for line in f.read().split("\n") if line.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i == len(lines) - 1:
        logging.warning("%s: dropped a torn last line (%d characters), left by a stop in the "
                        "middle of a write.", path, len(line))
        continue
      raise UserError(f"{path}: line {i + 1} is not JSON ({line[:80]!r}); the file was "
                       "edited or damaged. Remove that line to go on.") from None
  return records


class MetricWriter:
  """Writes `metrics.jsonl` and TensorBoard event files into the workdir."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.tensorboard_dir = self._tb_dir = os.path.join(workdir, "tensorboard")
    self._tb = None

  def _event(self, step: int, metrics: dict):
    values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
              for k, v in metrics.items() if k != "step"]
    return event_pb2.Event(wall_time=time.time(), step=int(step),
                           summary=summary_pb2.Summary(value=values))

  def truncate_after(self, step: int) -> int:
    """Keeps the records up to `step` (a resume's starting point) and rebuilds the
    TensorBoard events from them; returns how many records were dropped."""
    if not self.enabled:
      return 0
    keep = []
    dropped = 0
    if os.path.exists(self.path):
      records = _parse_lines(self.path)
      keep = [r for r in records if r["step"] <= step]
      dropped = len(records) - len(keep)
      with open(self.path + ".tmp", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in keep)
      os.replace(self.path + ".tmp", self.path)
    for old in glob.glob(os.path.join(self._tb_dir, "events.out.tfevents.*")):
      os.remove(old)
    self._tb = EventFileWriter(self._tb_dir)
    for r in keep:
      self._tb.add_event(self._event(r["step"], {k: v for k, v in r.items()
                                                 if isinstance(v, (int, float))}))
    return dropped

  def write(self, step: int, metrics: dict) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: _to_float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
      f.flush()
    if self._tb is None:
      self._tb = EventFileWriter(self._tb_dir)
    self._tb.add_event(self._event(step, metrics))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  return _parse_lines(path)
