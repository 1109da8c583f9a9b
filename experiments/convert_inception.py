r"""pytorch-fid's Inception weights (.pth, a torch state_dict) -> the .npz gen_jax reads.

  python -m experiments.convert_inception pt_inception-2015-12-05-6726825d.pth inception.npz

Get the file from pytorch-fid's release (`gen_jax.eval.inception.WEIGHTS_URL`). Reading a
.pth needs torch (`pip install -r requirements-test.txt`), imported inside `read_pth` only:
gen_jax itself never imports torch and reads the .npz (`gen_jax.eval.inception.load`). The
file is checked to be the FID Inception (every name and shape the network needs) before the
.npz is written. `load(path)` gives the network from either file.
"""
from __future__ import annotations

import sys

from gen_jax.errors import UserError
from gen_jax.eval import inception


def read_pth(path: str) -> dict:
  """name -> numpy array of a torch state_dict file (torch imported here)."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError(f"Reading {path} needs torch (`pip install torch==2.13.0`); or convert it "
                    "once where torch is, with `python -m experiments.convert_inception "
                    "FILE.pth FILE.npz`, and pass the .npz.") from e
  state = torch.load(path, map_location="cpu", weights_only=True)
  return {k: v.detach().cpu().numpy() for k, v in state.items()}


def load(path: str = "") -> inception.InceptionNet:
  """The FID network from `path` (else $GEN_JAX_INCEPTION): an .npz without torch, a .pth
  through `read_pth`; a missing file is a UserError saying where to get it."""
  path = inception.resolve_weights(path)
  if path.endswith(".npz"):
    return inception.load(path)
  return inception.from_variables(inception.variables_from_state_dict(read_pth(path)))


def main(argv) -> int:
  if len(argv) != 3 or not argv[2].endswith(".npz"):
    print("usage: python -m experiments.convert_inception pt_inception-2015-12-05-6726825d.pth "
          "OUT.npz", file=sys.stderr)
    return 2
  try:
    state = read_pth(inception.resolve_weights(argv[1]))
    inception.variables_from_state_dict(state)       # refuse a file that is not the FID Inception
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  inception.save_npz(state, argv[2])
  print(f"wrote {argv[2]} ({len(state)} arrays); pass it as --inception_weights={argv[2]}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
