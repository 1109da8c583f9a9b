r"""Exports a trained run's parameters as one flat name -> array file, its config.json beside it.

  python -m experiments.export --workdir=/tmp/gpt                      # <workdir>/export/params.safetensors
  python -m experiments.export --workdir=/tmp/gpt --format=npz --out=/tmp/gpt_params.npz
  python -m experiments.export --workdir=/tmp/vae --params=params      # the raw, not the EMA, params
  python -m experiments.train --config=experiments/configs/gpt.py:shakespeare_small \
      --workdir=/tmp/gpt2 --config.init_from=/tmp/gpt/export/params.safetensors

Names are the leaves' paths in the parameter tree joined by "/" ("block_0/attn/qkv_kernel",
"wte/embedding"; a GAN's "generator/..." and "discriminator/..."), arrays in their own dtype
(bfloat16 widened to float32, exactly: `gen_jax.train.params_file`). `--params`: "ema" (the
default when the run keeps an EMA, `config.ema_decay > 0`) or "params". The newest intact
checkpoint is exported, or `--step`. The run's config.json is copied into the output's folder
(a config.json of another run already there is refused, never overwritten), and a
safetensors header also holds the paradigm, dataset, step and which params. Prints, last, one
JSON line: out, format, params, step, num_arrays, num_parameters, config.

A new run starts from the file with `--config.init_from=FILE` (`gen_jax.workdir.initial_state`):
its params and EMA are the file's, its optimizer fresh.
"""
from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
from absl import app, flags

from experiments import common
from gen_jax import workdir as workdir_lib
from gen_jax.errors import UserError
from gen_jax.train import params_file

FLAGS = flags.FLAGS


def choose_params(state, which: str | None, workdir: str):
  """(name, tree): the EMA or the raw params of a restored state (`which` None: EMA if any)."""
  which = which or ("ema" if state.ema_params is not None else "params")
  if which == "ema" and state.ema_params is None:
    raise UserError(f"{workdir} keeps no EMA of its parameters (config.ema_decay=0): there is "
                    "nothing to export as --params=ema. Use --params=params.")
  return which, state.ema_params if which == "ema" else state.params


def copy_config(workdir: str, folder: str) -> str:
  """Copies `<workdir>/config.json` into `folder` (nothing when it is the workdir itself or
  holds the same bytes); a different config.json there is refused, never overwritten."""
  source = os.path.join(workdir, "config.json")
  target = os.path.join(folder, "config.json")
  if os.path.exists(target):
    if os.path.samefile(source, target):
      return target
    with open(source, "rb") as a, open(target, "rb") as b:
      if a.read() == b.read():
        return target
    raise UserError(f"{folder} already holds a config.json of another run ({target}); export "
                    "into another folder (--out=DIR/params.<format>) so that each file keeps "
                    "its own run's config beside it.")
  os.makedirs(folder, exist_ok=True)
  shutil.copyfile(source, target + ".tmp")
  os.replace(target + ".tmp", target)
  return target


def export(workdir: str, fmt: str = "safetensors", out: str | None = None,
           which: str | None = None, step: int | None = None) -> dict:
  """Writes the run's parameters to `out` (see the module docstring); returns the record
  printed last: out, format, params, step, num_arrays, num_parameters, config."""
  if fmt not in params_file.FORMATS:
    raise UserError(f"--format={fmt!r}; use one of {', '.join(params_file.FORMATS)}.")
  out = out or os.path.join(workdir, "export", f"params.{fmt}")
  if (named := params_file.format_of_name(out)) and named != fmt:
    raise UserError(f"--out={out} names a .{named} file but --format={fmt}; make them agree.")
  if step is not None and step not in (kept := workdir_lib.checkpoint_steps(workdir)):
    raise UserError(f"--step={step}: {workdir} has no checkpoint at that step (kept: {kept}); "
                    "use one of those, or drop --step for the newest.")
  run, state, step = workdir_lib.restore(workdir, step=step, mesh="data=-1,fsdp=1")
  which, params = choose_params(state, which, workdir)
  flat = params_file.flatten(jax.device_get(params))
  config = copy_config(workdir, os.path.dirname(os.path.abspath(out)))
  metadata = {"format": "gen_jax", "paradigm": run.config.paradigm,
              "dataset": run.config.dataset, "step": int(step), "params": which}
  params_file.write(out, flat, fmt, metadata)
  return {"out": out, "format": fmt, "params": which, "step": int(step),
          "num_arrays": len(flat), "num_parameters": int(sum(np.size(a) for a in flat.values())),
          "config": config}


def main(argv):
  del argv
  record = export(FLAGS.workdir, FLAGS.format, FLAGS.out, FLAGS.params, FLAGS.step)
  print(f"wrote {record['out']} ({record['num_arrays']} arrays, {record['num_parameters']:,} "
        f"parameters: the {record['params']} of step {record['step']}; config {record['config']})")
  print(json.dumps(record))


def define_flags():
  """The command's flags, defined when run as a command only (tests import this module beside
  other entry points that define --workdir)."""
  flags.DEFINE_string("workdir", None, "A trained workdir.")
  flags.DEFINE_enum("format", "safetensors", list(params_file.FORMATS), "File format.")
  flags.DEFINE_string("out", None, "Output file (default <workdir>/export/params.<format>).")
  flags.DEFINE_enum("params", None, ["ema", "params"],
                    "Which parameters (default: ema when the run has an EMA, else params).")
  flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the newest intact one).")


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["workdir"])
  app.run(common.run_main(main), flags_parser=common.parse_flags)
