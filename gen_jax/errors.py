"""Errors a user can cause: each message names the cause and the fix.

The command-line entry points print these as one line (no traceback) and exit
with status 2; set GEN_JAX_TRACEBACK=1 to see the traceback anyway.
"""


class UserError(ValueError):
  """A bad config, dataset, workdir or input: the message says what to change."""


class NonFiniteError(RuntimeError):
  """The loss or the gradients became NaN/inf; no checkpoint of that state exists."""
