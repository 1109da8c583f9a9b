"""The one table writer of the benchmarks: markdown cells and tables, result files, figures.

    md = markdown([("model", "name", ""), ("bits/dim", "bits_per_dim", ".3f")], rows,
                  caption=["Measured ... on ..."])
    write(out, {"table.md": md, "table.json": {"meta": meta, "rows": rows}, "rows.jsonl": rows})

A column is (header, key, fmt): `key` names a row field or is a function of the row;
`fmt` is a format spec or a function of the value (`rate`); a missing value is "—".
"""
from __future__ import annotations

import json
import math
import os
from typing import Callable, Sequence, Union

import numpy as np

Column = tuple  # (header, key: str | Callable[[dict], object], fmt: str | Callable[[object], str])


def cell(value, fmt: Union[str, Callable] = "") -> str:
  """A table cell: "—" for None, "nan" for a float NaN, else fmt(value) when fmt is a
  function, else format(value, fmt)."""
  if value is None:
    return "—"
  if callable(fmt):
    return fmt(value)
  if isinstance(value, float) and math.isnan(value):
    return "nan"
  return format(value, fmt)


def rate(value) -> str:
  """A rate cell: whole numbers with thousands separators from 100 up, 3 significant digits
  below, "—" for None or NaN."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "—"
  return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def markdown(columns: Sequence[Column], rows: Sequence[dict], caption: Sequence[str] = ()) -> str:
  """The caption's lines and a blank line (when there is a caption), then the table: a
  header of the columns' headers and one line per row."""
  lines = [*caption, ""] if caption else []
  lines += ["| " + " | ".join(c[0] for c in columns) + " |", "|" + "---|" * len(columns)]
  for r in rows:
    cells = (cell(key(r) if callable(key) else r.get(key), fmt) for _, key, fmt in columns)
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write(out: str, files: dict) -> None:
  """Writes `files` ({name: content}) in the folder `out` (made if missing): a str as text,
  a list as JSON lines (one object a line), anything else as indented JSON."""
  os.makedirs(out, exist_ok=True)
  for name, content in files.items():
    with open(os.path.join(out, name), "w") as f:
      if isinstance(content, str):
        f.write(content)
      elif isinstance(content, list):
        f.writelines(json.dumps(r, default=str) + "\n" for r in content)
      else:
        json.dump(content, f, indent=1, default=str)


def exact_or_bound(row: dict):
  """"exact" or "bound" by a row's "bound" flag (None when it has no likelihood)."""
  return None if row.get("bound") is None else "bound" if row["bound"] else "exact"


def score_columns(fd: str) -> list:
  """The columns of a model's scores: bits/dim, exact/bound, FD, precision, recall,
  samples/s, NFE (keys as `gen_jax.eval.evaluators` names them)."""
  return [("bits/dim", "bits_per_dim", ".3f"), ("exact/bound", exact_or_bound, ""), (fd, fd, ".1f"),
          ("precision", "precision", ".3f"), ("recall", "recall", ".3f"),
          ("samples/s", "samples_per_s", rate), ("NFE", "nfe", "")]


def fd_key(rows: Sequence[dict]) -> str:
  """The key of the FD column in `rows`, "FD (<dataset> classifier)" ("FD" when none has one)."""
  return next((k for r in rows for k in r if k.startswith("FD (")), "FD")


def _save(fig, path: str, dpi: int) -> None:
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=dpi)


def panels_figure(panels: dict, path: str, title: str = "", size=(3.2, 3.6), dpi: int = 110,
                  fontsize: int = 10) -> None:
  """One titled picture per panel, side by side, as a PNG: {label: a uint8 [H, W, 3] picture,
  or float images [N, H, W, C] in [0, 1], drawn as a grid 8 a row}; `size` is (width per panel,
  height) in inches."""
  from matplotlib.figure import Figure          # no pyplot: leaves the caller's backend alone
  from gen_jax.utils import images
  panels = {k: v if np.asarray(v).dtype == np.uint8 else images.image_grid(v, ncols=8, upscale=1)
            for k, v in panels.items()}
  fig = Figure(figsize=(size[0] * len(panels), size[1]))
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  for ax, (label, picture) in zip(axes, panels.items()):
    ax.imshow(picture, interpolation="nearest")
    ax.set_title(label, fontsize=fontsize)
    ax.axis("off")
  if title:
    fig.suptitle(title, fontsize=fontsize + 1)
  _save(fig, path, dpi)


def likelihood_vs_fd_figure(rows: Sequence[dict], path: str) -> None:
  """bits/dim (x) vs FD (y, log scale), a point a row named by its "paradigm"; o exact,
  ^ bound; marker area ~ log10(1 + samples/s); rows without a likelihood at the right edge."""
  from matplotlib.figure import Figure
  fd = fd_key(rows)
  ok = [r for r in rows if r.get(fd) is not None and np.isfinite(r[fd])]
  bpds = [r["bits_per_dim"] for r in ok if r.get("bits_per_dim") is not None]
  lo, hi = (min(bpds), max(bpds)) if bpds else (0.0, 1.0)
  span = max(hi - lo, 0.5)
  has_none = any(r.get("bits_per_dim") is None for r in ok)
  none_x = hi + 0.3 * span
  fig = Figure(figsize=(7, 4.8))
  ax = fig.subplots()
  for r in ok:
    x = r["bits_per_dim"] if r.get("bits_per_dim") is not None else none_x
    marker = "x" if r.get("bound") is None else ("^" if r["bound"] else "o")
    size = 30 + 70 * math.log10(1 + max(r.get("samples_per_s") or 0.0, 0.0))
    ax.scatter([x], [r[fd]], s=size, marker=marker, alpha=0.7)
    ax.annotate(r["paradigm"], (x, r[fd]), fontsize=8, xytext=(5, 5), textcoords="offset points")
  ax.set_xlim(lo - 0.15 * span, (none_x if has_none else hi) + 0.2 * span)
  if has_none:
    ax.set_xticks([t for t in ax.get_xticks() if lo - 0.15 * span <= t <= hi + 0.1 * span])
    ax.axvline(hi + 0.15 * span, color="0.8", lw=0.8)
    ax.text(none_x, 0.98, "no likelihood", fontsize=7, ha="center", va="top", color="0.4",
            transform=ax.get_xaxis_transform())
  ax.set_xlabel("bits/dim (test; o exact, ^ bound)")
  ax.set_ylabel(fd)
  ax.set_yscale("log")
  ax.set_title("lower-left is better; marker area ~ log(1 + samples/s)", fontsize=9)
  _save(fig, path, 130)
