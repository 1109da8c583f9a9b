"""Shared plumbing of the absl entry points: one-line user errors, multi-host start."""
from __future__ import annotations

import os
import sys

from absl import flags, logging

from gen_jax.errors import NonFiniteError, UserError

flags.DEFINE_string("coordinator_address", os.environ.get("GEN_JAX_COORDINATOR", ""),
                    "host:port of process 0 for multi-host runs (jax.distributed).")
flags.DEFINE_integer("num_processes", int(os.environ.get("GEN_JAX_NUM_PROCESSES", "0")),
                     "number of processes in a multi-host run (0 = single process).")
flags.DEFINE_integer("process_id", int(os.environ.get("GEN_JAX_PROCESS_ID", "0")),
                     "this process's index in a multi-host run.")


def maybe_initialize_distributed() -> None:
  """Starts jax.distributed when asked by flags or GEN_JAX_* environment variables."""
  f = flags.FLAGS
  if not f.coordinator_address and f.num_processes <= 1:
    return
  import jax
  # Collectives between CPU processes (the local test setup); GPUs/TPUs ignore it.
  # Must be set before anything initialises a JAX backend.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f.coordinator_address or None,
                             num_processes=f.num_processes or None,
                             process_id=f.process_id)
  logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())


HELP_FLAGS = ("--help", "-h", "--helpshort", "--helpfull", "-?")


def _config_file_error(argv) -> str | None:
  """One line for a --config that names no file (ml_collections' own report is a traceback)."""
  for a in argv[1:]:
    if a.startswith("--config="):
      path = a.split("=", 1)[1].split(":", 1)[0]
      if path and not os.path.isfile(path):
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
        known = sorted(f for f in os.listdir(here) if f.endswith(".py") and not f.startswith("_")
                       and f not in ("__init__.py", "common.py"))
        return (f"error: --config={path}: no such file (from {os.getcwd()}). Configs: "
                f"{', '.join('experiments/configs/' + k for k in known)}, each with a dataset "
                "argument, e.g. --config=experiments/configs/vae.py:digits.")
  return None


def parse_flags(argv):
  """absl's flag parsing, with each mistake said in one line (exit 2), and --help exit 0."""
  if bad := _config_file_error(argv):
    print(bad, file=sys.stderr)
    sys.exit(2)
  try:
    return flags.FLAGS(argv)
  except SystemExit as e:          # absl's --help prints the usage, then exits 1
    if any(a in HELP_FLAGS for a in argv[1:]):
      sys.exit(0)
    raise e
  except (AttributeError, KeyError) as e:
    while e.args and isinstance(e.args[0], BaseException):    # AttributeError(KeyError(...))
      e = e.args[0]
    text = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    name, _, hint = text.partition("\n")
    name = name.strip("\"' ")
    bad = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.") and name in a]
    hint = f" {hint.strip()}" if hint.strip() else ""
    name = f"--config.{name}" if not bad and not name.startswith("--") else name
    print(f"error: unknown config field {bad[0] if bad else name!r} in an override.{hint} Check "
          "its spelling against the config file (every field is listed there).", file=sys.stderr)
    sys.exit(2)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def run_main(main_fn):
  """Runs an absl main; user errors print one line naming cause and fix, exit 2.

  Library INFO logs (Orbax, TFDS) are hidden unless --verbosity=0 is given.
  """
  def wrapped(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    try:
      return main_fn(argv)
    except (UserError, NonFiniteError, FileNotFoundError) as e:
      if os.environ.get("GEN_JAX_TRACEBACK"):
        raise
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  return wrapped
