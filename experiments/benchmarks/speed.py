r"""Speed suite: every family's throughput in one run; as the `autoregressive` suite, the GPT's
training speed and loss and its KV-cached decoding.

  python -m experiments.benchmark --suite=speed [--quick] [--workdir=/tmp/ddpm]
  python -m experiments.benchmark --suite=autoregressive [--parts=kv_cache]   # ~3-4 min idle

Parts (speed: all; autoregressive: matmul, gpt_train, kv_cache); writes `<out>/speed.{txt,json}`:
* matmul: the machine's float32 matmul rate (`gen_jax.eval.speed.matmul_rate`).
* gpt_train: nanoGPT's CPU recipe (gpt.py:shakespeare_small), --num_iters iterations of the
  loop's jitted step: ms/iter (median after 10; with and without the input pipeline), tokens/s,
  CPU time and load (other processes share the cores), MFU by nanoGPT's 6 N + 12 L C T flops a
  token, with --gpt_eval the loss on the whole validation split. Reference (issue 4, this
  machine): nanoGPT 50 ms/iter, 15,300 tokens/s, loss 1.898 on the whole split (1.886 by its
  20-batch estimate); targets <= 33 ms/iter, >= 23,000 tokens/s, loss <= 1.88.
* against: with --against=REV (a git revision of this repository), gpt_train's ms/iter of this
  checkout and of REV (checked out into a temporary git worktree), --rounds alternating rounds,
  each in a fresh process: the medians and their ratio (the "no CPU regression" check):
    python -m experiments.benchmark --suite=autoregressive --parts=against --against=HEAD~1 \
        --num_iters=300 --rounds=4
* kv_cache: KV-cached vs naive re-forward decoding (257 positions), the fastest of 5 runs for
  64/128/256 tokens (cached should grow linearly), the ratio at 256 (target >= 10x), tokens
  checked identical.
* train_steps: each one-stage digits config's train step: examples/s, XLA flops, MFU.
* nfe: with --workdir (a trained ddpm.py:digits run), the diffusion suite's NFE -> FD curve.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import benchmark
from experiments.benchmarks import diffusion
from experiments.configs import gpt
from gen_jax.eval import likelihood, speed, tables
from gen_jax.paradigms.gpt import ArCore, make_model

DEFAULTS = {"parts": ["matmul", "gpt_train", "kv_cache", "train_steps", "nfe"], "out": "results/speed"}


def _recipe():
  return gpt.get_config("shakespeare_small")


def gpt_train(num_iters=2_000, timed_from=10, evaluate=True, matmul_gflops=None, manual_dir=None) -> dict:
  """Trains the recipe through the loop's jitted step, timing every iteration."""
  config = _recipe()
  config.update(num_train_steps=num_iters, manual_dir=manual_dir or config.manual_dir)
  t, run, state = benchmark.probe(config, num_iters - 1, timed_from - 1)
  m, tokens = config.model, config.batch_size * config.seq_len
  ms, ms_with_data = 1e3 * t["seconds_per_step"], 1e3 * t["seconds_per_step_with_data"]
  fpt, n = speed.transformer_flops_per_token(m.embed_dim, m.num_layers, m.mlp_ratio, config.seq_len,
                                             run.info.vocab_size)
  out = {"iters": num_iters, "timed_iters": t["timed_steps"], "ms_per_iter": ms,
         "ms_per_iter_with_data": ms_with_data,
         "tokens_per_s": tokens / (ms / 1e3), "tokens_per_s_with_data": tokens / (ms_with_data / 1e3),
         "train_wall_s": t["wall_s"], "cpu_ms_per_iter": 1e3 * t["cpu_s"] / num_iters,
         "final_train_loss": t["final_loss"], "params_without_positions": n, "gflop_per_iter": fpt * tokens / 1e9,
         **{k: t[k] for k in ("load_avg_1min_before", "load_avg_1min_after", "input_pipeline_share")}}
  if matmul_gflops:
    out["mfu"] = out["gflop_per_iter"] / (ms / 1e3) / matmul_gflops
  if evaluate:
    start, result = time.perf_counter(), likelihood.evaluate(run, state, split="validation")
    out.update(val_nats_per_token=result["nats_per_token"], val_windows=result["num_examples"],
               eval_s=time.perf_counter() - start)
  return out


_CHILD = """import json, sys
from experiments.benchmarks import speed
r = speed.gpt_train(int(sys.argv[1]), 10, False, None, sys.argv[2])
print(json.dumps({k: r[k] for k in ("ms_per_iter", "load_avg_1min_before")}))"""


def against(rev: str, rounds: int, num_iters: int, text_dir: str = "", log=print) -> dict:
  """gpt_train's ms/iter here and at git revision `rev`, `rounds` alternating rounds each in a
  fresh process (this checkout first in odd rounds, `rev` first in even ones), on the same data."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  text_dir = os.path.abspath(text_dir or _recipe().manual_dir)
  runs = {"this": [], rev: []}
  with tempfile.TemporaryDirectory(prefix="gen_jax_against_") as tmp:
    tree = os.path.join(tmp, "tree")
    subprocess.run(["git", "-C", root, "worktree", "add", "--detach", "-q", tree, rev], check=True)
    try:
      for r in range(rounds):
        for name, cwd in ((("this", root), (rev, tree)) if r % 2 == 0 else ((rev, tree), ("this", root))):
          done = subprocess.run([sys.executable, "-c", _CHILD, str(num_iters), text_dir], cwd=cwd,
                                capture_output=True, text=True)
          if done.returncode:
            raise SystemExit(f"gpt_train at {name} failed:\n{done.stderr[-2000:]}")
          runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
          log(f"round {r + 1}, {name}: {runs[name][-1]['ms_per_iter']:.2f} ms/iter")
    finally:
      subprocess.run(["git", "-C", root, "worktree", "remove", "--force", tree], check=False)
  ms = {name: float(np.median([x["ms_per_iter"] for x in xs])) for name, xs in runs.items()}
  return {"rev": rev, "rounds": rounds, "iters": num_iters, "runs": runs,
          "median_ms_this": ms["this"], "median_ms_rev": ms[rev], "ratio_this_over_rev": ms["this"] / ms[rev]}


def kv_cache(lengths=(64, 128, 256), iters: int = 5) -> dict:
  """KV-cached vs naive decoding (batch 1, a prompt of 1 token) of the recipe's model with
  max(lengths) + 1 positions (`speed.decoder_speedup`); the naive decoder re-runs the full
  forward pass on the fixed [1, max_len] buffer for every token."""
  max_len = max(lengths) + 1
  core = ArCore(make_model(_recipe().model.copy_and_resolve_references(), 65, max_len))
  params = core.init(jax.random.key(0), jnp.zeros((1, max_len), jnp.int32))
  decode = lambda n, naive: core.decode(params, jnp.zeros((1, 1), jnp.int32), jax.random.key(1),
                                        n, 1.0, None, None, naive)[0]
  return {"max_len": max_len, **speed.decoder_speedup(decode, lengths, iters)}


def train_steps(matmul_gflops: float, only=None, log=print) -> list:
  """Each discovered one-stage digits config (two-stage ones need a trained stage 1): its train
  step probed on real batches, examples/s, and MFU = XLA-counted flops/s over the matmul rate."""
  rows = []
  for name, config in benchmark.discover_configs("digits", only=only):
    if config.get("stage1") is None:
      probe = benchmark.probe(config)[0]
      rows.append({"name": name, "batch_size": config.batch_size, **probe,
                   "examples_per_s": config.batch_size / probe["seconds_per_step"],
                   "mfu": (probe["flops_per_step"] or np.nan) / probe["seconds_per_step"] / (matmul_gflops * 1e9)})
      log(json.dumps(rows[-1]))
  return rows


def lines(res) -> list:
  """speed.txt: a line a figure."""
  out = [f"gen_jax speed suite, {res['date']}, {res['machine']}{' (quick)' if res['quick'] else ''}"]
  if "matmul" in res:
    out.append(f"float32 matmul ({res['matmul']['matmul_n']}^3): {res['matmul']['matmul_gflops']:.1f} GFLOP/s")
  if t := res.get("gpt_train"):
    out += [f"GPT nanoGPT CPU recipe: {t['ms_per_iter']:.1f} ms/iter, {t['tokens_per_s']:.0f} tokens/s "
            f"({t['timed_iters']} timed iters), MFU {100 * t.get('mfu', np.nan):.1f}% of the measured matmul rate",
            f"input pipeline share of step time: {100 * t['input_pipeline_share']:.1f}%"]
    out += [f"GPT validation loss (whole split, {t['val_windows']} windows): {t['val_nats_per_token']:.3f} "
            "nats/char"] if "val_nats_per_token" in t else []
  if a := res.get("against"):
    out.append(f"GPT recipe ms/iter, this checkout vs {a['rev']} (median of {a['rounds']} alternating rounds, "
               f"{a['iters']} iters each): {a['median_ms_this']:.2f} vs {a['median_ms_rev']:.2f} "
               f"(ratio {a['ratio_this_over_rev']:.3f})")
  if kv := res.get("kv_cache"):
    ns = sorted(int(k.split("_")[-1]) for k in kv if k.startswith("naive_s_"))
    out.append(f"KV-cache vs naive decoding ({ns[-1]} tokens): {kv[f'speedup_{ns[-1]}']:.1f}x, tokens identical: "
               f"{all(v for k, v in kv.items() if k.startswith('identical_'))}; cached / naive s: "
               + ", ".join(f"{n}: {kv[f'cached_s_{n}']:.3f} / {kv[f'naive_s_{n}']:.3f}" for n in ns))
  if "train_steps" in res:
    out.append("train steps on digits (XLA-counted flops; MFU = flops/s over the matmul rate):")
    out += [f"  {r['name']:<16} {r['examples_per_s']:>10,.0f} ex/s  {1e3 * r['seconds_per_step']:7.2f} ms/step  "
            f"{r['flops_per_step'] / 1e9:8.3f} GFLOP/step  MFU {100 * r['mfu']:5.1f}%" for r in res["train_steps"]]
  return out + (["sampler NFE vs FD: " + json.dumps(res["nfe_vs_quality"])] if "nfe_vs_quality" in res else [])


def run(args) -> dict:
  parts, quick = args.parts, args.quick
  res = {"date": datetime.date.today().isoformat(), "machine": speed.machine(), "quick": quick}
  if {"matmul", "gpt_train", "train_steps"} & set(parts):
    res["matmul"] = speed.matmul_rate(n=256 if quick else 1024, iters=5 if quick else 30)
  gflops = res.get("matmul", {}).get("matmul_gflops")
  if "gpt_train" in parts:
    res["gpt_train"] = gpt_train(15 if quick else args.num_iters, 5 if quick else 10, args.gpt_eval, gflops,
                                 args.text_dir)
  if "against" in parts:
    if not args.against:
      raise SystemExit("--parts=against needs --against=REV, a git revision to compare with.")
    res["against"] = against(args.against, args.rounds, args.num_iters, args.text_dir, args.log)
  if "kv_cache" in parts:
    res["kv_cache"] = kv_cache((16, 32), 1) if quick else kv_cache()
  if "train_steps" in parts:
    res["train_steps"] = train_steps(gflops, ("vae", "gan") if quick else args.only or None, args.log)
  if "nfe" in parts and args.workdir and not quick:
    res["nfe_vs_quality"] = diffusion.nfe_part(args, os.path.join(args.out, "nfe"))["summary"]
  text = "\n".join(lines(res)) + "\n"
  tables.write(args.out, {"speed.json": res, "speed.txt": text})
  args.log(text)
  return res
