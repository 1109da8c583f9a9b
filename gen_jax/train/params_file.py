r"""Parameters as a flat file of named arrays (safetensors or npz), out of a run and into one.

    flat = flatten(params)                  # {"block_0/attn/qkv_kernel": np.ndarray, ...}
    write("/tmp/gpt.safetensors", flat, metadata={"paradigm": "gpt"})
    flat = read("/tmp/gpt.safetensors")     # format told by the file's first bytes
    params = unflatten_like(flat, abstract_params, "/tmp/gpt.safetensors")

A name is the leaf's path in the parameter pytree, its keys joined by "/" (a GAN's
"generator/Dense_0/kernel", the GPT's "block_0/attn/qkv_kernel"), the names a PyTorch user
maps onto a state_dict. Arrays are written in their own dtype, except bfloat16, which neither
a numpy .npz nor safetensors' numpy API can read back: those leaves are widened to float32
(exact), and `unflatten_like` casts each array to the dtype of the run it enters, so a
bfloat16 run exported and imported is bitwise the same.

`python -m experiments.export` writes such a file from a workdir, and `config.init_from=FILE`
starts a new run from one (`gen_jax.workdir.initial_state`). Nothing here imports torch.
"""
from __future__ import annotations

import json
import os
import zipfile

import jax
import numpy as np

from gen_jax.errors import UserError

FORMATS = ("safetensors", "npz")
SEPARATOR = "/"
_SHOWN = 5         # names listed per kind of mismatch in an error


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):      # DictKey, GetAttrKey, SequenceKey
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def leaf_names(tree) -> list[tuple[str, object]]:
  """[(name, leaf)] of a pytree in its flattening order; names are keys joined by "/"."""
  out = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    parts = [_key_name(k) for k in path]
    if any(SEPARATOR in p or not p for p in parts):
      raise ValueError(f"Parameter path {parts} has an empty key or one holding "
                       f"{SEPARATOR!r}: it has no flat name.")
    out.append((SEPARATOR.join(parts), leaf))
  return out


def flatten(params) -> dict[str, np.ndarray]:
  """{name: host numpy array} of every leaf of `params` (bfloat16 widened to float32)."""
  flat = {}
  for name, leaf in leaf_names(params):
    array = np.asarray(jax.device_get(leaf))
    if array.dtype == jax.numpy.bfloat16:
      array = array.astype(np.float32)          # exact: every bfloat16 is a float32
    flat[name] = np.ascontiguousarray(array)
  return flat


def write(path: str, flat: dict, fmt: str = "", metadata: dict | None = None) -> str:
  """Writes `flat` to `path` atomically (a temporary file, then a rename); returns the format.

  fmt: "safetensors" or "npz" (default: from the file's extension). `metadata` (str -> str)
  goes into a safetensors header; an npz has no place for it (the caller writes config.json
  beside it).
  """
  fmt = fmt or format_of_name(path)
  if fmt not in FORMATS:
    raise UserError(f"Export format {fmt!r} is unknown; use one of {', '.join(FORMATS)}.")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    if fmt == "safetensors":
      from safetensors import numpy as st_numpy
      st_numpy.save_file(flat, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
    else:
      with open(tmp, "wb") as f:       # a file object: np.savez would append ".npz" to a name
        np.savez(f, **flat)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return fmt


def format_of_name(path: str) -> str:
  """"safetensors" or "npz" from a file name's extension ("" when it is neither)."""
  ext = os.path.splitext(path)[1].lstrip(".").lower()
  return ext if ext in FORMATS else ""


def sniff_format(path: str) -> str:
  """The format of an existing file from its first bytes: an npz is a zip archive, a
  safetensors file opens with an 8-byte header length and a JSON header ("" otherwise)."""
  with open(path, "rb") as f:
    head = f.read(9)
  if head[:4] == b"PK\x03\x04":
    return "npz"
  if len(head) == 9 and head[8:9] == b"{":
    return "safetensors"
  return ""


def read(path: str) -> dict[str, np.ndarray]:
  """{name: array} of a parameter file (safetensors or npz), or a UserError naming why not."""
  if not os.path.isfile(path):
    raise UserError(f"config.init_from={path!r}: no such file. Point it at a file written by "
                    "`python -m experiments.export --workdir=DIR` (safetensors or npz).")
  fmt = sniff_format(path)
  try:
    if fmt == "npz":
      with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
    if fmt == "safetensors":
      from safetensors import numpy as st_numpy
      return dict(st_numpy.load_file(path))
  except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
    raise UserError(f"config.init_from={path!r} is not a readable {fmt} parameter file "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                    "export it again with `python -m experiments.export`.") from None
  except Exception as e:  # noqa: BLE001 -- safetensors raises its own SafetensorError
    if type(e).__name__ != "SafetensorError":
      raise
    raise UserError(f"config.init_from={path!r} is not a readable safetensors file ({e}); "
                    "export it again with `python -m experiments.export`.") from None
  raise UserError(f"config.init_from={path!r} is neither a safetensors nor an npz file; "
                  "export one with `python -m experiments.export --format=safetensors|npz`.")


def _listed(names, more=lambda n: n) -> str:
  names = sorted(names)
  shown = ", ".join(more(n) for n in names[:_SHOWN])
  return shown + (f" (and {len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def unflatten_like(flat: dict, abstract, source: str = "the file"):
  """The pytree of `abstract` (arrays or ShapeDtypeStructs) with each leaf taken from `flat`
  by name and cast to the leaf's dtype, as host numpy arrays.

  Every name of the tree must be in `flat` with the leaf's shape, and `flat` may hold no
  other name: otherwise one UserError names the missing names, the extra names and the
  shape mismatches (the first few of each) and says how to get a matching file.
  """
  names = leaf_names(abstract)
  wanted = dict(names)
  missing = [n for n in wanted if n not in flat]
  extra = [n for n in flat if n not in wanted]
  shapes = [n for n in wanted if n in flat
            and tuple(np.shape(flat[n])) != tuple(wanted[n].shape)]
  if missing or extra or shapes:
    parts = []
    if missing:
      parts.append(f"missing {len(missing)} name(s): {_listed(missing)}")
    if extra:
      parts.append(f"{len(extra)} name(s) the model does not have: {_listed(extra)}")
    if shapes:
      parts.append(f"{len(shapes)} shape mismatch(es): " + _listed(
          shapes, lambda n: f"{n} is {tuple(np.shape(flat[n]))} in the file, "
                            f"{tuple(wanted[n].shape)} in the model"))
    raise UserError(
        f"The parameters in {source} do not fit this config's model ({'; '.join(parts)}). "
        "Use a file exported from a run of the same paradigm and config.model fields "
        "(its config.json lies beside it), or change config.model to match it.")
  leaves = [np.asarray(flat[n]).astype(leaf.dtype, copy=False) for n, leaf in names]
  return jax.tree.unflatten(jax.tree.structure(abstract), leaves)
