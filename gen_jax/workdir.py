"""What a saved run is: a workdir, its config, its checkpoints, and its stage-1 link.

    from gen_jax import workdir as workdir_lib
    state = workdir_lib.train(config, "/tmp/vae")          # resumes if the workdir has a checkpoint
    run, state, step = workdir_lib.restore("/tmp/vae")      # the newest intact checkpoint
    record = workdir_lib.evaluate("/tmp/vae")               # writes eval.json

A workdir holds `config.json` (the config that created it), `metrics.jsonl`,
TensorBoard events, `checkpoints/` (Orbax: the train state and the data
iterator together), `samples/step_<N>.png` and `eval.json`. Relaunching
`train` with the same config resumes exactly where the newest checkpoint left
off; a different config is refused (fields in `RELAUNCH_FIELDS` may change).

A two-stage run (`config.dataset = "encoded"`) names a finished stage-1 run in
`config.stage1` (`experiments.configs.common.stage1_config`): this module loads
it (`load_stage1` -> `Stage1`), hands it to the data layer, which encodes the
stage-1 dataset once and caches it under the stage 1's fingerprint, and records
the fingerprint in `stage1.json` so that a retrained stage 1 is never mixed in.
A config on a dataset of its own may name a run in `config.stage1` too (a teacher:
consistency distillation's edm run): it is loaded the same way, needs no encoder, and
reaches the paradigm as `info.stage1` (`stage1_of`).

`config.dataset = "synthetic"` trains on random batches made on device, shaped like
`config.synthetic_like` (`gen_jax.data.synthetic`, `train_batches`), to measure a step's speed
without the data: such a run has no test split, so its periodic evaluation is skipped and
`evaluate` refuses it. `config.profile_steps = "N,M"` writes a `jax.profiler` trace of steps
N..M under `tensorboard/plugins/profile/` (`gen_jax.train.profile`). `config.init_from = FILE`
starts a new run's params and EMA from a parameter file of `python -m experiments.export`
(`initial_state`); a resumed run continues from its checkpoint, not the file.

Layers: this module sits above `gen_jax.train` (the step and its hooks) and
`gen_jax.eval` (evaluators); nothing in the library below imports it.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from gen_jax import data as data_lib
from gen_jax.data import synthetic as synthetic_lib
from gen_jax.errors import UserError
from gen_jax.eval import likelihood as likelihood_lib
from gen_jax.eval import sampling
from gen_jax.train import build as build_lib
from gen_jax.train import checkpoint as ckpt_lib
from gen_jax.train import loop
from gen_jax.train import params_file
from gen_jax.train import profile as profile_lib
from gen_jax.train import sharding as shard_lib
from gen_jax.train.metrics import MetricWriter, read_metrics
from gen_jax.train.state import TrainState

# Fields that may differ between launches of one run: they change how often
# things are logged or saved, or where the run is laid out, never the
# trajectory of the parameters.
RELAUNCH_FIELDS = ("mesh", "log_every_steps", "eval_every_steps", "checkpoint_every_steps",
                   "sample_every_steps", "num_samples", "keep_checkpoints",
                   "eval_batch_size", "eval_max_examples", "data_dir", "manual_dir", "remat",
                   "profile_steps")

# Fields added to the configs after workdirs were made without them, each with the value that
# does what the code did before the field existed: a saved config that lacks the field is the
# same experiment as a new one that holds this value. Add a field here when you add it to a config.
ADDED_FIELDS = {"model.ddim_spacing": "uniform", "model.split_prior": "standard",
                "model.res_blocks": 0, "compute_dtype": "float32", "param_dtype": "float32",
                "remat": "none", "grad_accum_steps": 1, "profile_steps": "",
                "model.attention_impl": "xla", "init_from": ""}

# Fields that matter only while another field holds a value: {field: (other, value)}. They are
# left out of the comparison of two configs in neither of which `other` holds `value`, so a
# saved config that predates such a field (synthetic_like, added with synthetic data) is the
# same experiment as a new one, whatever the field's value.
CONDITIONAL_FIELDS = {"synthetic_like": ("dataset", "synthetic")}

# Fields that may change when a run is continued in its workdir (besides RELAUNCH_FIELDS):
# how long it trains, what a NaN/inf does and how many micro-batches an update takes (an
# out-of-memory relaunch). Each change is recorded in config.json's
# "history". Any other field may change only when named in `resume_changes`.
CONTINUE_FIELDS = ("num_train_steps", "on_nonfinite", "grad_accum_steps")

# config.stage1 fields that say where the stage-1 run is; every other field is an expectation
# of its saved config (`check_expected`).
STAGE1_LINK_FIELDS = ("workdir", "step")

# The config.json key that names a paradigm given to `train` in code instead of config.paradigm,
# and the one that lists the deliberate changes of a continued run.
USER_PARADIGM_KEY = "user_paradigm"
HISTORY_KEY = "history"
_NOT_CONFIG = (USER_PARADIGM_KEY, HISTORY_KEY)


# ----------------------------------------------------------------- config ---

def flat_dict(d, prefix=""):
  """{"a": {"b": 1}} -> {"a.b": 1}: nested dicts as one level of dotted keys."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flat_dict(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def normalized(value):
  """A config (ConfigDict or dict) as JSON gives it back (tuples -> lists), for comparisons."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  return json.loads(json.dumps(value, default=str))


def config_record(config, user_paradigm: str = "") -> dict:
  """The JSON object `config.json` holds: the config, and the user paradigm if one was given."""
  record = normalized(config)
  if user_paradigm:
    record[USER_PARADIGM_KEY] = user_paradigm
  return record


def _read_record(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f"{path} is unreadable ({e}); this workdir's config is unknown: "
                    "use a new --workdir.") from None


def _matches(field: str, names) -> bool:
  """`field` is one of `names` or lies under one ("optimizer" covers optimizer.learning_rate)."""
  return any(field == n or field.startswith(n + ".") for n in names)


def config_changes(workdir: str, record: dict, allowed=()) -> dict:
  """{field: (saved, new)} of the deliberate changes from the saved config.json to `record`.

  Fields in RELAUNCH_FIELDS may always differ (and are not reported); CONTINUE_FIELDS and
  the fields `allowed` names are reported; any other difference is refused with a
  UserError naming the fields and the ways on. No config.json: {}.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return {}
  old = {k: v for k, v in _read_record(path).items() if k != HISTORY_KEY}
  a, b = flat_dict(old), flat_dict({k: v for k, v in record.items() if k != HISTORY_KEY})
  for k, value in ADDED_FIELDS.items():     # a field the saved config predates
    if k in b and k not in a and b[k] == value:
      a[k] = value
  for k, (other, value) in CONDITIONAL_FIELDS.items():
    if a.get(other) != value and b.get(other) != value:
      a.pop(k, None)
      b.pop(k, None)
  diff = sorted(k for k in set(a) | set(b)
                if a.get(k) != b.get(k) and k.split(".")[0] not in RELAUNCH_FIELDS)
  refused = [k for k in diff if not _matches(k, (*CONTINUE_FIELDS, *allowed))]
  if refused:
    shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in refused[:6])
    raise UserError(
        f"The workdir {workdir} was created by a different config ({shown}"
        f"{', ...' if len(refused) > 6 else ''}). Use a new --workdir for a new experiment, "
        "relaunch with the original config (and paradigm) to resume, or continue this run "
        f"with the change on purpose: --resume_changes={','.join(refused)}.")
  return {k: (a.get(k), b.get(k)) for k in diff}


def write_record(workdir: str, record: dict) -> None:
  """Writes config.json atomically (the config, the user paradigm, the history)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
  os.replace(path + ".tmp", path)


def check_or_write_config(workdir: str, record: dict, write: bool = True, allowed=(),
                          step: int = 0) -> dict:
  """Refuses a workdir created by a different config; records the config otherwise.

  Returns the deliberate changes (`config_changes`); with `write`, a new workdir gets
  `record` and a continued one gets `record` with the changes appended to its history
  (as {"step", "changes", "time"}).
  """
  changes = config_changes(workdir, record, allowed)
  path = os.path.join(workdir, "config.json")
  if write and not os.path.exists(path):
    write_record(workdir, record)
  elif write and changes:
    history = _read_record(path).get(HISTORY_KEY, [])
    history.append({"step": int(step), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "changes": {k: list(v) for k, v in changes.items()}})
    write_record(workdir, {**record, HISTORY_KEY: history})
  return changes


def load_config(workdir: str):
  """The config a workdir was trained with (read from JSON: nothing is executed)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise UserError(f"{workdir} has no config.json: it is not a gen_jax workdir. Train into it "
                    "first with `python -m experiments.train --config=... --workdir=...`.")
  record = _read_record(path)
  for key in _NOT_CONFIG:
    record.pop(key, None)
  return ml_collections.ConfigDict(record)


def user_paradigm_of(workdir: str) -> str:
  """The paradigm a run was trained with in code (`train(..., paradigm=...)`), or ""."""
  with open(os.path.join(workdir, "config.json")) as f:
    return json.load(f).get(USER_PARADIGM_KEY, "")


def describe_paradigm(paradigm) -> str:
  """Where a paradigm given in code comes from: its `source`, else its loss functions."""
  if paradigm.source:
    return paradigm.source
  losses = [paradigm.loss] if callable(paradigm.loss) else list(paradigm.loss.values())
  return ", ".join(f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"
                   for f in losses)


# ----------------------------------------------------------------- stage 1 ---

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


def check_expected(saved_config, expect, workdir: str) -> None:
  """Raises a UserError naming the first field where the stage-1 config differs from `expect`."""
  saved = flat_dict(normalized(saved_config))
  wanted = {k: v for k, v in flat_dict(normalized(expect)).items()
            if k not in STAGE1_LINK_FIELDS}
  for field, value in sorted(wanted.items()):
    if field not in saved:
      raise UserError(
          f"config.stage1.{field}={value!r} but the stage-1 run {workdir} has no field {field}: it "
          f"is not the kind of run this stage-2 config expects. Point --config.stage1.workdir at a "
          f"run trained with {field}={value!r}.")
    if field == "paradigm" and saved[field] != value:   # no setting makes another family fit
      raise UserError(
          f"The stage-1 run {workdir} was trained with paradigm={saved[field]!r}, but this config "
          f"needs a stage 1 with paradigm={value!r}: point --config.stage1.workdir at a run of "
          f"experiments/configs/{value}.py.")
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
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    leaf = np.ascontiguousarray(leaf)
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(str((leaf.dtype, leaf.shape)).encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()


def checkpoint_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints a workdir holds, ascending (intact or not)."""
  path = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(path):
    return []
  return sorted(int(d) for d in os.listdir(path) if d.isdigit())


@functools.lru_cache(maxsize=4)
def _load_stage1(workdir: str, step: int, mtime: float) -> Stage1:
  del mtime                     # part of the cache key: a rewritten checkpoint is reloaded
  run, state, step = restore(workdir, step=step, mesh="data=-1,fsdp=1")
  params = jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), run.sampling_params(state))
  config = run.config
  kept = {k: v for k, v in flat_dict(normalized(config)).items()
          if k.split(".")[0] not in RELAUNCH_FIELDS}
  digest = hashlib.sha256(json.dumps([kept, step], sort_keys=True).encode())
  digest.update(_params_digest(params).encode())
  return Stage1(workdir=workdir, config=config, info=run.info, paradigm=run.paradigm,
                params=params, step=int(step), fingerprint=digest.hexdigest())


def _check_tokenizer(stage1: Stage1) -> None:
  """A stage 1 whose codes are a stage 2's data must encode and decode."""
  for name in ("encode", "decode", "decoder_log_likelihood"):
    if getattr(stage1.paradigm, name) is None:
      raise UserError(f"The stage-1 run {stage1.workdir} trained paradigm {stage1.config.paradigm!r}, "
                      f"which has no `{name}`: it cannot serve as a tokenizer. Use a vqvae (codes) "
                      "or vae (latents) run as stage 1.")


def load_stage1(workdir: str, step: Optional[int] = None, expect=None,
                tokenizer: bool = True) -> Stage1:
  """The finished stage-1 run in `workdir` (cached per process).

  Args:
    workdir: a workdir trained by `experiments.train` (a vqvae or vae run).
    step: the checkpoint; None or 0 = the final step `num_train_steps`, which
      must exist (a missing or unfinished run is refused, naming the command
      that finishes it).
    expect: `config.stage1` of a stage-2 config: its fields (but workdir and
      step) must equal the stage-1 saved config's (`check_expected`).
    tokenizer: the run must encode and decode (its codes are the stage-2 data); False for
      a teacher (consistency distillation's edm run), whose params the paradigm uses.
  """
  expect = normalized(expect or {})
  workdir = os.path.abspath(os.path.expanduser(workdir or ""))
  if not os.path.exists(os.path.join(workdir, "config.json")):
    raise UserError(
        f"config.stage1.workdir={workdir} holds no stage-1 run (no config.json). Train stage 1 "
        f"first: `{_train_command(workdir, expect)}`, or point --config.stage1.workdir at one.")
  saved = load_config(workdir)
  check_expected(saved, expect, workdir)
  steps = checkpoint_steps(workdir)
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
  stage1 = _load_stage1(workdir, want, mtime)
  if tokenizer:
    _check_tokenizer(stage1)
  return stage1


def stage1_of(config) -> Optional[Stage1]:
  """The loaded stage-1 run of a two-stage config: of `dataset="encoded"` (a tokenizer, whose
  codes are the data), or of a config on a dataset of its own that names a run in
  config.stage1.workdir (a teacher: consistency distillation's edm run, which reaches the
  paradigm as `info.stage1`); else None."""
  stage1 = config.get("stage1")
  if config.dataset != "encoded":
    if not stage1 or not stage1.get("workdir"):
      return None
    return load_stage1(stage1["workdir"], stage1.get("step", 0), expect=stage1, tokenizer=False)
  if not stage1 or not stage1.get("workdir"):
    raise UserError("Dataset 'encoded' is a stage-1 run's codes: it needs config.stage1.workdir "
                    "(see experiments.configs.common.stage1_config). Set --config.stage1.workdir "
                    "to a trained vqvae or vae workdir.")
  return load_stage1(stage1["workdir"], stage1.get("step", 0), expect=stage1)


def data_kwargs(config) -> dict:
  """The config's data fields as keyword arguments of the gen_jax.data functions, with
  a two-stage config's stage-1 run loaded."""
  return build_lib.data_kwargs(config, stage1_of(config))


def check_same_stage1(workdir: str, stage1: Optional[Stage1], write: bool) -> None:
  """A stage-2 run records its stage 1's fingerprint and refuses to resume on another one
  (a retrained stage 1 gives other codes, so the run would silently change data)."""
  if stage1 is None:
    return
  path = os.path.join(workdir, "stage1.json")
  record = {"workdir": stage1.workdir, "step": stage1.step, "fingerprint": stage1.fingerprint}
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


# ------------------------------------------------------------------ train ---

def build(config, paradigm=None, info=None) -> build_lib.Run:
  """`gen_jax.train.build.build` with the config's stage-1 run loaded (two-stage configs)."""
  return build_lib.build(config, stage1=stage1_of(config), info=info, paradigm=paradigm)


INTERVAL_FIELDS = ("log_every_steps", "eval_every_steps", "checkpoint_every_steps",
                   "sample_every_steps")


def validate(config) -> None:
  """Refuses, in one UserError each, the run-level fields no training can start with."""
  if config.on_nonfinite not in ("halt", "skip"):
    raise UserError(f"config.on_nonfinite={config.on_nonfinite!r}; use 'halt' or 'skip'.")
  if not isinstance(config.num_train_steps, int) or config.num_train_steps < 1:
    raise UserError(f"config.num_train_steps={config.num_train_steps!r}; it must be a whole "
                    "number >= 1.")
  for name in INTERVAL_FIELDS:
    if config[name] < 1:
      raise UserError(f"config.{name}={config[name]!r}; it must be >= 1 (set it to "
                      f"config.num_train_steps={config.num_train_steps} to do it once, at the end).")
  lr = config.optimizer.learning_rate
  if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr >= 0):
    raise UserError(f"config.optimizer.learning_rate={lr!r}; it must be a finite number >= 0.")
  profile_lib.parse_steps(config.get("profile_steps", ""), config.num_train_steps)


def is_synthetic(config) -> bool:
  """The run trains on random batches shaped like config.synthetic_like (no test split)."""
  return config.dataset == synthetic_lib.NAME


def train_batches(run):
  """The run's training batches from batch 0 on, checkpointable (`get_state`/`set_state`):
  this process's rows of each global batch from the input pipeline, or, for
  `dataset="synthetic"`, global batches made on device already laid out on the mesh
  (`gen_jax.data.synthetic`; `run.put_batch` passes them through)."""
  config = run.config
  if is_synthetic(config):
    return synthetic_lib.SyntheticBatches(run.info, config.batch_size, run.keys["data"],
                                          shard_lib.batch_sharding(run.mesh))
  return data_lib.train_iterator(
      config.dataset, batch_size=config.batch_size, seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(), **run.data_kwargs)


class WorkdirLock:
  """One writer per workdir: an exclusive `fcntl` lock on `<workdir>/.lock`, held while a
  run trains. The kernel drops it when its process dies, so a killed run never blocks
  its relaunch; a second writer is refused at once, naming the holder's PID and host.
  Readers (`restore`, `evaluate`, sampling) take no lock."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(workdir, ".lock")
    self.enabled = enabled
    self._file = None

  def __enter__(self):
    if not self.enabled:
      return self
    import fcntl
    import socket
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    self._file = open(self.path, "a+")
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip() or "another process"
      self._file.close()
      raise UserError(
          f"{os.path.dirname(self.path)} is being trained by {holder}: two writers would "
          "interleave its metrics and checkpoints. Wait for that run to end (or stop it), "
          "or use another --workdir.") from None
    self._file.seek(0)
    self._file.truncate()
    self._file.write(f"PID {os.getpid()} on host {socket.gethostname()} "
                     f"(since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
    self._file.flush()
    return self

  def __exit__(self, *exc):
    if self._file is not None:
      self._file.close()          # closing releases the lock


def initial_state(run, first_batch) -> TrainState:
  """The state a new run (no checkpoint yet) starts from.

  Without `config.init_from`: the paradigm's init on `first_batch()` (a zero-argument callable
  giving the first batch, laid out on the mesh). With `config.init_from=FILE` (a safetensors
  or npz file of `python -m experiments.export`): the params, and the EMA, are that file's
  arrays, cast to the run's param_dtype, and the optimizer state is fresh; a file whose
  names or shapes do not fit the model is refused in one UserError naming them
  (`gen_jax.train.params_file.unflatten_like`). A run that resumes from its checkpoint never
  calls this, so the file is read only at step 0 and may be gone later.
  """
  path = run.config.get("init_from", "")
  if not path:
    return run.init_state(first_batch())
  params = params_file.unflatten_like(params_file.read(path), run.abstract_state.params, path)
  logging.info("init_from: the params%s start from %s; the optimizer starts fresh.",
               " and EMA" if run.config.ema_decay > 0 else "", path)
  return run.init_state_from(params)


def _set_aside(path: str) -> str:
  """Renames `path` to `path.before_restart.<n>` (the first free n); returns the new name."""
  n = 1
  while os.path.exists(f"{path}.before_restart.{n}"):
    n += 1
  os.replace(path, f"{path}.before_restart.{n}")
  return f"{path}.before_restart.{n}"


def _has_eval_at(records, step: int) -> bool:
  return any(r["step"] == step and any(k.startswith("eval/") for k in r) for r in records)


def train(config, workdir: str, *, paradigm=None, progress: bool = True, restart: bool = False,
          resume_changes=(), stop: loop.StopRequest | None = None) -> TrainState:
  """Trains `config` in `workdir`, resuming from its newest intact checkpoint if any.

  Args:
    config: a gen_jax config. Relaunched in the same workdir it must be the same
      config, except for RELAUNCH_FIELDS (logging, layout), CONTINUE_FIELDS
      (num_train_steps, on_nonfinite) and the fields named in `resume_changes`;
      the deliberate changes are recorded in config.json's "history".
    paradigm: a Paradigm to train instead of the one `config.paradigm` names (e.g.
      built in a notebook around a new loss); config.json records where it came
      from (`describe_paradigm`), and a relaunch must pass the same one.
    restart: when checkpoints exist but none restores, set them and the metrics
      aside (`*.before_restart.<n>`) and start over; without it such a run stops,
      naming each checkpoint and why it failed.
    resume_changes: dotted config fields (or their prefixes, e.g. "optimizer") that
      may differ from the saved config: continue this run with them changed.
    stop: the `loop.StopRequest` to watch (SIGTERM, Ctrl-C); its `.signal` tells the
      caller why the run stopped early.
  """
  is_main = jax.process_index() == 0
  validate(config)
  resume_changes = tuple(f.strip() for f in resume_changes if f.strip())
  record = config_record(config, describe_paradigm(paradigm) if paradigm is not None else "")
  with WorkdirLock(workdir, enabled=is_main):
    config_changes(workdir, record, resume_changes)     # a foreign workdir is refused first
    run = build(config, paradigm=paradigm)
    check_same_stage1(workdir, run.data_kwargs.get("stage1"), write=False)
    return _train(run, workdir, record, paradigm, progress, restart, resume_changes,
                  stop or loop.StopRequest(), is_main)


def _train(run, workdir, record, paradigm, progress, restart, resume_changes, stop, is_main):
  config = run.config

  def new_train_iter():
    return train_batches(run)

  train_iter = new_train_iter()
  manager = ckpt_lib.make_manager(workdir, config.keep_checkpoints)
  state, start, failures = ckpt_lib.restore_latest(manager, run.abstract_state, train_iter,
                                                   quarantine=False)
  if failures and is_main:
    if state is None and not restart:
      manager.close()
      listed = "; ".join(f"step {step}: {why}" for step, why in failures)
      raise UserError(
          f"{workdir} has checkpoints but none restores ({listed}). Nothing was changed. "
          "Relaunch with --restart to set them and the metrics aside and train from step 0, "
          f"or remove {manager.directory} yourself.")
    for step, _ in failures:            # newer than the restored one: they will be redone
      path = ckpt_lib.step_dir(manager, step)
      if os.path.isdir(path):
        os.replace(path, path + ".corrupt")
        logging.warning("Checkpoint step %d is set aside as %s.corrupt.", step, path)
    manager.reload()
  writer = MetricWriter(workdir, enabled=is_main)
  if state is None:
    start = 0
    if restart and is_main:
      moved = [_set_aside(p) for p in (str(manager.directory), writer.path) if os.path.exists(p)]
      manager.close()
      manager = ckpt_lib.make_manager(workdir, config.keep_checkpoints)
      if moved:
        logging.warning("--restart: set aside %s; training %s from step 0.", ", ".join(moved),
                        workdir)
    train_iter = new_train_iter()      # a failed restore may have moved the old one
    # Data-dependent init (e.g. ActNorm) sees the first real batch, read from a
    # separate iterator so the saved one is not advanced.
    state = initial_state(run, lambda: run.put_batch(next(new_train_iter())))
  else:
    logging.info("Resumed from step %d of %s.", start, workdir)
  # Only a config that built, found its data and matched its checkpoints is recorded: a
  # failed launch leaves the workdir as it was, and the corrected command is not refused.
  changes = check_or_write_config(workdir, record, write=is_main, allowed=resume_changes,
                                  step=start)
  if changes:
    logging.warning("Continuing %s at step %d with %s.", workdir, start,
                    ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()))
  check_same_stage1(workdir, run.data_kwargs.get("stage1"), write=is_main)
  dropped = writer.truncate_after(start)
  if dropped:
    logging.warning("metrics.jsonl: %d records after step %d are dropped; the steps they "
                    "logged are trained again from the checkpoint.", dropped, start)

  def log(step, state, metrics):
    metrics = jax.device_get(metrics)
    writer.write(step, metrics)
    loop.check_finite(state, config.on_nonfinite, bool(manager.all_steps()))
    return {"loss": f"{float(metrics['loss']):.4f}"}

  def checkpoint(step, state, metrics):
    loop.check_finite(state, config.on_nonfinite, bool(manager.all_steps()))
    ckpt_lib.save(manager, step, state, train_iter)

  def evaluate_(step, state, metrics):
    t0 = time.perf_counter()
    result = likelihood_lib.evaluate(run, state, max_examples=config.get("eval_max_examples") or None)
    if result is not None:
      result["seconds"] = time.perf_counter() - t0
      writer.write(step, {f"eval/{k}": float(v) for k, v in result.items()
                          if isinstance(v, (int, float))})

  def samples(step, state, metrics):
    drawn = sampling.draw_samples(run, state, jax.random.fold_in(run.keys["sample"], step),
                                  config.num_samples)      # every process takes part
    if is_main:
      sampling.write_samples(run.info, drawn, os.path.join(workdir, "samples", f"step_{step}"))

  eval_hook = loop.Hook("eval", evaluate_, config.eval_every_steps)
  samples_hook = loop.Hook("samples", samples, config.sample_every_steps)
  hooks = [loop.Hook("log", log, config.log_every_steps, on_stop="if_due"),
           loop.Hook("checkpoint", checkpoint, config.checkpoint_every_steps, on_stop="always"),
           eval_hook, samples_hook]
  if not config.num_samples:       # a model that draws nothing unprompted (lmm: image -> text)
    hooks.remove(samples_hook)
  if is_synthetic(config):
    hooks.remove(eval_hook)
    logging.info("dataset=synthetic (random %s batches): no test split, so the periodic "
                 "evaluation is skipped; sample grids are still drawn.", run.info.name)
  step_fn = loop.jit_train_step(run)
  trace = None
  if steps := profile_lib.parse_steps(config.get("profile_steps", ""), config.num_train_steps):
    trace = profile_lib.StepTrace(*steps, log_dir=writer.tensorboard_dir)
    hooks = trace.around(hooks)
    step_fn = trace.annotate(step_fn, start)
  try:
    if start > 0:
      # A stop between a step's save and its eval or samples: redo what is missing.
      if (eval_hook in hooks and eval_hook.due(start, config.num_train_steps)
          and run.paradigm.log_likelihood and not _has_eval_at(read_metrics(workdir), start)):
        evaluate_(start, state, None)
      if samples_hook in hooks and samples_hook.due(start, config.num_train_steps) and not any(
          os.path.exists(os.path.join(workdir, "samples", f"step_{start}{ext}"))
          for ext in (".png", ".txt")):
        samples(start, state, None)
    if trace is not None:
      trace.begin(start)
    with stop:
      state, _ = loop.train_loop(
          step_fn, state, train_iter, run.keys["train"], start=start,
          num_steps=config.num_train_steps, hooks=hooks, put_batch=run.put_batch, stop=stop,
          progress=progress and is_main, desc=f"{config.paradigm}/{config.dataset}")
  finally:
    if trace is not None:
      trace.end()
    manager.wait_until_finished()
    manager.close()
    writer.close()
  return state


# ---------------------------------------------------------- restore, eval ---

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
  if paradigm is None and (user := user_paradigm_of(workdir)):
    logging.warning("%s was trained with a paradigm given in code (%s); restoring it with "
                    "config.paradigm=%r. Pass paradigm= to use the one it trained.",
                    workdir, user, config.paradigm)
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
  check_same_stage1(workdir, run.data_kwargs.get("stage1"), write=False)
  manager = ckpt_lib.make_manager(workdir, config.keep_checkpoints)
  try:
    if step is not None:
      state = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(run.abstract_state)))["state"]
    else:
      state, step, _ = ckpt_lib.restore_latest(manager, run.abstract_state, None)
  finally:
    manager.close()
  if state is None:
    raise UserError(f"{workdir} has no intact checkpoint yet; train (or resume) it first.")
  return run, state, step


def evaluate(workdir: str, split: str = "test", iwae_k: int = 0, max_examples: int = 0,
             paradigm=None, vlb_num_steps: int = -1, write: bool = True) -> dict:
  """Evaluates a workdir's newest checkpoint; returns the eval.json record and, with
  `write`, records it (`write_eval`).

  iwae_k > 0 (bound families with samples, the VAE): the importance-weighted
  bound with k samples. vlb_num_steps >= 0 (ddpm): the terms of the variational
  bound (0 = all T), else the config's.
  """
  overrides = {"vlb_num_steps": vlb_num_steps} if vlb_num_steps >= 0 else None
  if overrides and (saved := load_config(workdir).paradigm) != "ddpm":
    raise UserError(f"vlb_num_steps is a ddpm setting; {workdir} holds a {saved} run. "
                    "Drop --vlb_num_steps.")
  if is_synthetic(saved_config := load_config(workdir)):
    like = saved_config.get("synthetic_like", "?")
    raise UserError(f"{workdir} was trained on synthetic data (random batches shaped like "
                    f"{like!r}, for throughput): it has no test split and its likelihood would "
                    "mean nothing. Evaluate a run trained on the real dataset.")
  run, state, step = restore(workdir, paradigm=paradigm, model_overrides=overrides)
  if iwae_k and (run.paradigm.log_likelihood is None or run.paradigm.likelihood_is_exact):
    what = "has no likelihood" if run.paradigm.log_likelihood is None else "has an exact one"
    raise UserError(f"--iwae_k is the importance-weighted bound of a latent-variable model; "
                    f"{workdir} holds a {run.config.paradigm} run, which {what}. Drop --iwae_k.")
  if iwae_k:
    ll = functools.partial(run.paradigm.log_likelihood, num_samples=iwae_k)
    run.paradigm = run.paradigm._replace(log_likelihood=ll)
  result = likelihood_lib.evaluate(run, state, split=split, max_examples=max_examples or None)
  if result is None:
    result = {"bits_per_dim": None, "bound": None, "split": split,
              "note": f"{run.config.paradigm} has no likelihood: it is scored by its samples."}
  result = {"paradigm": run.config.paradigm, "dataset": run.config.dataset, "step": step,
            **result}
  if user := user_paradigm_of(workdir):
    result[USER_PARADIGM_KEY] = user
  if iwae_k:
    result["iwae_k"] = iwae_k
  if overrides:
    result["vlb_num_steps"] = vlb_num_steps
  if write:
    write_eval(workdir, result)
  return result


def write_eval(workdir: str, result: dict) -> None:
  """`eval.json` (the newest evaluation) and one more line of `eval_history.jsonl`, so
  that every evaluation of the run keeps its step and settings."""
  path = os.path.join(workdir, "eval.json")
  with open(path + ".tmp", "w") as f:
    json.dump(result, f, indent=2)
  os.replace(path + ".tmp", path)
  with open(os.path.join(workdir, "eval_history.jsonl"), "a") as f:
    f.write(json.dumps({**result, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
