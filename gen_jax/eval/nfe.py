r"""Few-step samplers against a reference sampler of the same model: FD by NFE.

    rows = compare([("ancestral", 1000, fn), ("ddim", 35, fn35), ...], reference, 1000, seeds=(1, 2))
    write(out, rows, summarize(rows, ("ddim",)), ("ddim",))   # rows.jsonl, summary.json, table.md, PNG

A sampler is (name, NFE, fn(rng, n) -> images in [0, 1]); every sampler is drawn once per
sampling seed (the same model, independent noise, `sampling.draw` from key(seed)) and scored
against a `classifier.Reference`. The summary compares each sampler at NFE <= `budget` with the
reference sampler in two ways:
  * per seed, FD(the sampler's best NFE <= budget) / FD(reference, same seed), then their mean
    and standard deviation over the seeds;
  * at the sampler's largest NFE <= budget (a fixed point: no choice of the best NFE per seed),
    the ratio of FDs averaged over the seeds, R = mean FD_s / mean FD_ref, with its
    delta-method standard error R sqrt(se_s^2 / m_s^2 + se_ref^2 / m_ref^2), se = sd /
    sqrt(#seeds). The samplers' sample sets are independent draws, so per-seed ratios pair
    nothing; the ratio of means is the less noisy estimate of the same quantity.
"""
from __future__ import annotations

import json
import os
import time
from typing import Sequence

import jax
import numpy as np

from gen_jax.eval import sampling, tables
from gen_jax.utils import images


def compare(samplers: Sequence[tuple], reference, num: int, seeds=(0,), out: str = "",
            batch: int = 500, log=print) -> list:
  """One row per seed and sampler: {'seed', 'sampler', 'nfe', 'seconds_per_1000', scores};
  with `out`, a grid of each sampler's first 64 samples of the first seed
  (`<out>/nfe_<sampler>_<nfe>.png`)."""
  rows = []
  for seed in seeds:
    for name, nfe, fn in samplers:
      start = time.time()
      fake = sampling.draw(fn, jax.random.key(seed), num, batch).samples
      seconds = time.time() - start
      if out and seed == seeds[0]:
        images.save_png(images.image_grid(fake[:64]), os.path.join(out, f"nfe_{name}_{nfe}.png"))
      rows.append({"seed": seed, "sampler": name, "nfe": nfe,
                   "seconds_per_1000": round(seconds * 1000 / num, 1), **reference.scores(fake)})
      log(json.dumps(rows[-1]))
  return rows


def summarize(rows, samplers: Sequence[str], reference: str = "ancestral", budget: int = 35) -> dict:
  """The two comparisons of the module docstring, keyed as `fd_<reference>_<NFE>[_mean|_std]`,
  `ratio_<s>_nfe<=<budget>[_mean|_std]`, `ratio_of_means_<s>_nfe<N>[_se]`."""
  fd = tables.fd_key(rows)
  seeds = list(dict.fromkeys(r["seed"] for r in rows))
  std = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else None
  refs = {r["seed"]: r[fd] for r in rows if r["sampler"] == reference}
  key = f"fd_{reference}_{next(r['nfe'] for r in rows if r['sampler'] == reference)}"
  summary = {"seeds": seeds, key: list(refs.values()), f"{key}_mean": float(np.mean(list(refs.values()))),
             f"{key}_std": std(list(refs.values()))}
  for s in samplers:
    v = [min(r[fd] for r in rows if r["seed"] == seed and r["sampler"] == s and r["nfe"] <= budget)
         / refs[seed] for seed in seeds]
    summary.update({f"ratio_{s}_nfe<={budget}": v, f"ratio_{s}_nfe<={budget}_mean": float(np.mean(v)),
                    f"ratio_{s}_nfe<={budget}_std": std(v)})
    nfe = max(r["nfe"] for r in rows if r["sampler"] == s and r["nfe"] <= budget)
    fds = [r[fd] for r in rows if r["sampler"] == s and r["nfe"] == nfe]
    ratio = np.mean(fds) / summary[f"{key}_mean"]
    summary[f"ratio_of_means_{s}_nfe{nfe}"] = float(ratio)
    if len(seeds) > 1:
      rel_se = lambda x: np.std(x, ddof=1) / np.sqrt(len(x)) / np.mean(x)
      summary[f"ratio_of_means_{s}_nfe{nfe}_se"] = float(ratio * np.hypot(rel_se(fds),
                                                                          rel_se(list(refs.values()))))
  return summary


def table(rows, summary, samplers: Sequence[str], reference: str = "ancestral", budget: int = 35) -> str:
  """Markdown: FD per seed and mean over the reference's mean per (sampler, NFE), then the ratios."""
  fd, seeds = tables.fd_key(rows), summary["seeds"]
  ref_mean = next(v for k, v in summary.items() if k.startswith(f"fd_{reference}_") and k.endswith("_mean"))
  points = sorted({(r["sampler"], r["nfe"]) for r in rows}, key=lambda p: (p[0] != reference, p[0], p[1]))
  fds = {p: [r[fd] for s in seeds for r in rows if r["seed"] == s and (r["sampler"], r["nfe"]) == p]
         for p in points}
  columns = [("sampler", lambda p: p[0], ""), ("NFE", lambda p: p[1], ""),
             *((f"FD seed {s}", lambda p, i=i: fds[p][i], ".1f") for i, s in enumerate(seeds)),
             (f"mean / {reference} mean", lambda p: np.mean(fds[p]) / ref_mean, ".3f")]
  lines = ["", f"Per-seed ratio FD(best at NFE <= {budget}) / FD({reference}, same seed), mean +- sd:", ""]
  for s in samplers:
    sd, key = summary[f"ratio_{s}_nfe<={budget}_std"], f"ratio_{s}_nfe<={budget}"
    lines.append(f"- {s}: {', '.join(f'{x:.3f}' for x in summary[key])} -> {summary[key + '_mean']:.3f}"
                 + (f" +- {sd:.3f}" if sd else ""))
  lines += ["", f"Ratio of mean FDs over the seeds at the largest NFE <= {budget} (+- standard error):", ""]
  for key, value in summary.items():
    if key.startswith("ratio_of_means_") and not key.endswith("_se"):
      se = summary.get(key + "_se")
      lines.append(f"- {key[len('ratio_of_means_'):]}: {value:.3f}" + (f" +- {se:.3f}" if se else ""))
  return tables.markdown(columns, points) + "\n".join(lines) + "\n"


def figure(rows, path: str, samplers: Sequence[str], reference: str = "ancestral") -> None:
  """FD (y) against NFE (x, log scale) of each sampler: the mean over seeds, a band from the
  smallest to the largest; the reference sampler (one NFE) as a horizontal line and band."""
  from matplotlib.figure import Figure
  fd = tables.fd_key(rows)

  def by_nfe(sampler):
    fds = {}
    for r in rows:
      if r["sampler"] == sampler:
        fds.setdefault(r["nfe"], []).append(r[fd])
    nfe = sorted(fds)
    return nfe, [np.mean(fds[n]) for n in nfe], [min(fds[n]) for n in nfe], [max(fds[n]) for n in nfe]
  fig = Figure(figsize=(5, 3.5))
  ax = fig.subplots()
  for sampler, marker in zip(samplers, ("o--", "o-", "s--", "s-", "^--", "^-")):
    nfe, mean, lo, hi = by_nfe(sampler)
    line, = ax.plot(nfe, mean, marker, label=sampler)
    ax.fill_between(nfe, lo, hi, color=line.get_color(), alpha=0.2)
  nfe, mean, lo, hi = by_nfe(reference)
  ax.axhline(mean[0], color="k", ls="--", label=f"{reference} ({nfe[0]} NFE)")
  ax.axhspan(lo[0], hi[0], color="k", alpha=0.1)
  ax.set(xscale="log", xlabel="NFE", ylabel=fd)
  ax.set_title(f"{len({r['seed'] for r in rows})} sampling seed(s): mean, band = range", fontsize=9)
  ax.legend()
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)


def write(out: str, rows, summary, samplers: Sequence[str], name: str = "nfe_curve") -> None:
  """rows.jsonl, summary.json, table.md and `<name>.png` (the figure) in `out`."""
  tables.write(out, {"rows.jsonl": rows, "summary.json": summary, "table.md": table(rows, summary, samplers)})
  figure(rows, os.path.join(out, f"{name}.png"), samplers)
