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


def parse_flags(argv):
  """absl's flag parsing, with an unknown `--config.FIELD` override said in one line."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    name = str(e).strip("\"'")
    bad = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.") and name in a]
    print(f"error: unknown config field {bad[0] if bad else name!r} in an override; check "
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
