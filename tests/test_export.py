"""Export of a run's parameters (experiments.export) and a new run started from them
(config.init_from, gen_jax.workdir.initial_state).

Truth checked: export -> init_from gives back every leaf bitwise (params and EMA, both
formats, a bfloat16 run too); the file's names/shapes that do not fit are refused in one
UserError naming them, before anything is written; a resumed run continues from its
checkpoint, not the file; and the GPT's exported arrays, loaded into a PyTorch GPT with
nanoGPT's module layout and parameter names, give gen_jax's logits on the same tokens.
torch is a test-only dependency (requirements-test.txt); the library never imports it.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from experiments import export as export_lib
from experiments.configs import gpt as gpt_config
from gen_jax import workdir as workdir_lib
from gen_jax.errors import UserError
from gen_jax.train import params_file
from tests.train.conftest import tiny_vae_config

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 30


def host_leaves(tree):
  """[(name, numpy array)] of a pytree's leaves, in flattening order."""
  return [(n, np.asarray(jax.device_get(a))) for n, a in params_file.leaf_names(tree)]


def assert_bitwise(a, b):
  """Same names, dtypes, shapes and bytes at every leaf."""
  la, lb = host_leaves(a), host_leaves(b)
  assert [n for n, _ in la] == [n for n, _ in lb]
  for (name, x), (_, y) in zip(la, lb):
    assert x.dtype == y.dtype and x.shape == y.shape, name
    assert x.tobytes() == y.tobytes(), name


def vae_config(**overrides):
  return tiny_vae_config(**{"num_train_steps": 4, "checkpoint_every_steps": 2,
                            "eval_every_steps": 4, "sample_every_steps": 4,
                            "ema_decay": 0.9, **overrides})


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
  """A tiny VAE trained 4 steps with an EMA (so EMA != params): its workdir and state."""
  workdir = str(tmp_path_factory.mktemp("vae"))
  workdir_lib.train(vae_config(), workdir, progress=False)
  _, state, step = workdir_lib.restore(workdir)
  assert step == 4
  return workdir, state


def new_run(config):
  return workdir_lib.build(config)


def started_from(path, **overrides):
  """The initial state of a new tiny VAE run with init_from=path."""
  run = new_run(vae_config(init_from=str(path), **overrides))
  return run, workdir_lib.initial_state(run, lambda: pytest.fail("the paradigm's init ran"))


# ------------------------------------------------------------------ round trip ---

@pytest.mark.parametrize("fmt", params_file.FORMATS)
def test_export_then_init_from_gives_back_every_leaf_bitwise(trained_vae, tmp_path, fmt):
  workdir, state = trained_vae
  record = export_lib.export(workdir, fmt, str(tmp_path / f"p.{fmt}"))
  assert record["params"] == "ema" and record["step"] == 4     # the EMA by default
  assert params_file.sniff_format(record["out"]) == fmt
  with open(tmp_path / "config.json") as f, open(os.path.join(workdir, "config.json")) as g:
    assert json.load(f) == json.load(g)                          # the config beside it
  _, started = started_from(record["out"])
  assert_bitwise(started.params, state.ema_params)
  assert_bitwise(started.ema_params, state.ema_params)
  assert int(started.step) == 0
  # The optimizer starts fresh: Adam's count and moments as a new run's.
  fresh = _fresh_state()
  assert_bitwise(started.opt_state, fresh.opt_state)
  # --params=params exports the raw params instead.
  raw = export_lib.export(workdir, fmt, str(tmp_path / "raw" / f"p.{fmt}"), which="params")
  assert_bitwise(started_from(raw["out"])[1].params, state.params)
  assert not all(np.array_equal(x, y) for (_, x), (_, y)
                 in zip(host_leaves(state.params), host_leaves(state.ema_params)))


def _fresh_state():
  """A new tiny VAE run's state from the paradigm's init (on a zero batch)."""
  from gen_jax.train import build as build_lib
  run = new_run(vae_config())
  return run.init_state(run.put_batch(build_lib.example_batch(run.info, 8)))


def test_names_are_the_param_tree_paths(trained_vae, tmp_path):
  workdir, state = trained_vae
  out = export_lib.export(workdir, "npz", str(tmp_path / "p.npz"))["out"]
  flat = params_file.read(out)
  assert sorted(flat) == sorted(n for n, _ in params_file.leaf_names(state.params))
  assert all("/" in n for n in flat)
  tree = {"generator": {"Dense_0": {"kernel": np.ones((2, 3)), "bias": np.zeros(3)}},
          "discriminator": {"Conv_0": {"kernel": np.ones((1, 1, 1, 2))}}}
  assert sorted(params_file.flatten(tree)) == ["discriminator/Conv_0/kernel",
                                               "generator/Dense_0/bias",
                                               "generator/Dense_0/kernel"]


def test_a_bfloat16_run_round_trips_bitwise(tmp_path):
  """bfloat16 leaves are written as float32 (exact) and cast back on import."""
  config = vae_config(param_dtype="bfloat16", compute_dtype="bfloat16", num_train_steps=2)
  workdir = str(tmp_path / "bf16")
  workdir_lib.train(config, workdir, progress=False)
  _, state, _ = workdir_lib.restore(workdir)
  out = export_lib.export(workdir, "safetensors", str(tmp_path / "p.safetensors"))["out"]
  assert {a.dtype for a in params_file.read(out).values()} == {np.dtype(np.float32)}
  run = new_run(vae_config(param_dtype="bfloat16", compute_dtype="bfloat16",
                           init_from=out))
  started = workdir_lib.initial_state(run, lambda: pytest.fail("init ran"))
  assert_bitwise(started.params, state.ema_params)


def test_init_from_trains_from_the_file(trained_vae, tmp_path):
  """Through `train`: with learning rate 0 the params after a step are the file's."""
  workdir, state = trained_vae
  out = export_lib.export(workdir, "safetensors", str(tmp_path / "p.safetensors"))["out"]
  config = vae_config(init_from=out, num_train_steps=1, checkpoint_every_steps=1,
                      eval_every_steps=1, sample_every_steps=1, ema_decay=0.0)
  config.optimizer.learning_rate = 0.0
  trained = workdir_lib.train(config, str(tmp_path / "b"), progress=False)
  for (name, x), (_, y) in zip(host_leaves(trained.params), host_leaves(state.ema_params)):
    np.testing.assert_array_equal(x, y, err_msg=name)


# ------------------------------------------------------------------ resume ---

def test_a_resumed_run_continues_from_its_checkpoint_not_the_file(trained_vae, tmp_path):
  workdir, _ = trained_vae
  out = str(tmp_path / "p.safetensors")
  export_lib.export(workdir, "safetensors", out)
  whole = workdir_lib.train(vae_config(init_from=out), str(tmp_path / "whole"), progress=False)
  resumed_dir = str(tmp_path / "resumed")
  workdir_lib.train(vae_config(init_from=out, num_train_steps=2), resumed_dir, progress=False)
  os.replace(out, out + ".moved")          # the relaunch must not read it
  resumed = workdir_lib.train(vae_config(init_from=out), resumed_dir, progress=False)
  assert int(resumed.step) == 4
  assert_bitwise(resumed.params, whole.params)
  assert_bitwise(resumed.ema_params, whole.ema_params)
  # A new run from the moved file is refused in one line.
  with pytest.raises(UserError, match="no such file") as error:
    workdir_lib.train(vae_config(init_from=out), str(tmp_path / "new"), progress=False)
  assert "\n" not in str(error.value)
  assert not os.path.exists(tmp_path / "new" / "config.json")


# ------------------------------------------------------------------ errors ---

def _edited(trained_vae, tmp_path, fmt, edit):
  workdir, _ = trained_vae
  out = export_lib.export(workdir, fmt, str(tmp_path / "orig" / f"p.{fmt}"))["out"]
  flat = dict(params_file.read(out))
  edit(flat)
  path = str(tmp_path / f"edited.{fmt}")
  params_file.write(path, flat, fmt)
  return path


def _first(flat, ndim=None):
  return sorted(n for n in flat if ndim is None or np.ndim(flat[n]) == ndim)[0]


CASES = {
    "missing": (lambda f: f.pop(_first(f)), "missing 1 name"),
    "extra": (lambda f: f.update({"decoder/NotALayer/kernel": np.zeros(3, np.float32)}),
              "decoder/NotALayer/kernel"),
    "shape": (lambda f: f.update({_first(f, 2): np.zeros((3, 5), np.float32)}),
              "1 shape mismatch"),
}


@pytest.mark.parametrize("fmt", params_file.FORMATS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_file_that_does_not_fit_is_refused_naming_the_names(trained_vae, tmp_path, fmt,
                                                               case):
  edit, expected = CASES[case]
  workdir, state = trained_vae
  names = sorted(n for n, _ in params_file.leaf_names(state.params))
  path = _edited(trained_vae, tmp_path, fmt, edit)
  target = str(tmp_path / "new")
  with pytest.raises(UserError, match="do not fit") as error:
    workdir_lib.train(vae_config(init_from=path), target, progress=False)
  message = str(error.value)
  assert "\n" not in message and expected in message, message
  if case in ("missing", "shape"):
    assert (names[0] if case == "missing" else
            sorted(n for n in names if np.ndim(dict(host_leaves(state.params))[n]) == 2)[0]
            ) in message
  if case == "shape":
    assert "(3, 5) in the file" in message
  assert not os.path.exists(os.path.join(target, "config.json"))   # nothing recorded


def test_a_file_of_neither_format_is_refused(tmp_path):
  path = tmp_path / "weights.bin"
  path.write_bytes(b"not a parameter file")
  with pytest.raises(UserError, match="neither a safetensors nor an npz"):
    params_file.read(str(path))
  torn = tmp_path / "torn.npz"
  torn.write_bytes(b"PK\x03\x04" + b"\0" * 20)
  with pytest.raises(UserError, match="not a readable npz"):
    params_file.read(str(torn))


def test_export_refusals(trained_vae, tmp_path):
  workdir, _ = trained_vae
  no_ema = str(tmp_path / "no_ema")
  workdir_lib.train(vae_config(ema_decay=0.0, num_train_steps=2), no_ema, progress=False)
  with pytest.raises(UserError, match="no EMA"):
    export_lib.export(no_ema, "npz", str(tmp_path / "a.npz"), which="ema")
  assert export_lib.export(no_ema, "npz", str(tmp_path / "a.npz"))["params"] == "params"
  with pytest.raises(UserError, match="another run"):        # a.npz's config.json is no_ema's
    export_lib.export(workdir, "npz", str(tmp_path / "b.npz"))
  with pytest.raises(UserError, match="names a .npz file but --format=safetensors"):
    export_lib.export(workdir, "safetensors", str(tmp_path / "c" / "c.npz"))
  with pytest.raises(UserError, match="no checkpoint at that step"):
    export_lib.export(workdir, "npz", str(tmp_path / "d" / "d.npz"), step=3)


def test_the_command_line(trained_vae, tmp_path, cli):
  workdir, state = trained_vae
  proc = cli("experiments.export", f"--workdir={workdir}", "--format=npz")
  record = json.loads(proc.stdout.strip().splitlines()[-1])
  assert record["out"] == os.path.join(workdir, "export", "params.npz")
  assert record["num_parameters"] == sum(np.size(a) for a in jax.tree.leaves(state.params))
  bad = cli("experiments.export", f"--workdir={tmp_path}", check=False)
  assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr


def test_the_library_never_imports_torch():
  import ast
  import pathlib
  root = pathlib.Path(__file__).resolve().parent.parent / "gen_jax"
  for path in root.rglob("*.py"):
    tree = ast.parse(path.read_text())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in names if m.split(".")[0] == "torch"}, path


# ------------------------------------------------------------------ nanoGPT ---

def nanogpt_state_dict(flat, num_layers: int, use_bias: bool):
  """gen_jax GPT arrays -> nanoGPT's state_dict names and layouts (torch Linear weights are
  [out, in]; qkv_kernel [C, 3, H, D] is c_attn's [C, 3C] with q, k, v side by side and heads
  inside each, as nanoGPT splits and views them)."""
  sd = {"transformer.wte.weight": flat["wte/embedding"],
        "transformer.wpe.weight": flat["wpe"],
        "transformer.ln_f.weight": flat["ln_f/scale"]}
  if use_bias:
    sd["transformer.ln_f.bias"] = flat["ln_f/bias"]
  for i in range(num_layers):
    g, t = f"block_{i}/", f"transformer.h.{i}."
    c = flat[g + "attn/qkv_kernel"].shape[0]
    sd[t + "ln_1.weight"] = flat[g + "ln1/scale"]
    sd[t + "ln_2.weight"] = flat[g + "ln2/scale"]
    sd[t + "attn.c_attn.weight"] = flat[g + "attn/qkv_kernel"].reshape(c, 3 * c).T
    sd[t + "attn.c_proj.weight"] = flat[g + "attn/proj_kernel"].reshape(c, c).T
    sd[t + "mlp.c_fc.weight"] = flat[g + "mlp/fc_kernel"].T
    sd[t + "mlp.c_proj.weight"] = flat[g + "mlp/fc_out_kernel"].T
    if use_bias:
      sd[t + "ln_1.bias"] = flat[g + "ln1/bias"]
      sd[t + "ln_2.bias"] = flat[g + "ln2/bias"]
      sd[t + "attn.c_attn.bias"] = flat[g + "attn/qkv_bias"].reshape(3 * c)
      sd[t + "attn.c_proj.bias"] = flat[g + "attn/proj_bias"]
      sd[t + "mlp.c_fc.bias"] = flat[g + "mlp/fc_bias"]
      sd[t + "mlp.c_proj.bias"] = flat[g + "mlp/fc_out_bias"]
  used = {"wte/embedding", "wpe"} | {n for n in flat if n.startswith(("ln_f/", "block_"))}
  assert used == set(flat), set(flat) - used          # every exported array is placed
  return sd


def nanogpt_module(vocab_size, block_size, n_layer, n_head, n_embd, bias):
  """nanoGPT's model.py GPT (Karpathy), its module names kept: transformer.{wte, wpe, h, ln_f},
  h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}, lm_head tied to wte. The
  GELU is the tanh form, gen_jax's (nanoGPT's default is the exact erf)."""
  import torch
  from torch import nn
  from torch.nn import functional as F

  class LayerNorm(nn.Module):
    def __init__(self, ndim):
      super().__init__()
      self.weight = nn.Parameter(torch.ones(ndim))
      self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
      return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)

  class CausalSelfAttention(nn.Module):
    def __init__(self):
      super().__init__()
      self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
      self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x):
      b, t, c = x.size()
      q, k, v = self.c_attn(x).split(n_embd, dim=2)
      q, k, v = (z.view(b, t, n_head, c // n_head).transpose(1, 2) for z in (q, k, v))
      y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
      return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))

  class MLP(nn.Module):
    def __init__(self):
      super().__init__()
      self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
      self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)

    def forward(self, x):
      return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

  class Block(nn.Module):
    def __init__(self):
      super().__init__()
      self.ln_1, self.attn, self.ln_2, self.mlp = LayerNorm(n_embd), CausalSelfAttention(), \
          LayerNorm(n_embd), MLP()

    def forward(self, x):
      x = x + self.attn(self.ln_1(x))
      return x + self.mlp(self.ln_2(x))

  class GPT(nn.Module):
    def __init__(self):
      super().__init__()
      self.transformer = nn.ModuleDict(dict(
          wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
          h=nn.ModuleList([Block() for _ in range(n_layer)]), ln_f=LayerNorm(n_embd)))
      self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
      self.transformer.wte.weight = self.lm_head.weight      # weight tying, as nanoGPT

    def forward(self, idx):
      t = idx.size(1)
      x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t))
      for block in self.transformer.h:
        x = block(x)
      return self.lm_head(self.transformer.ln_f(x))

  return GPT()


@pytest.mark.parametrize("use_bias", [False, True])
def test_gpt_weights_in_nanogpts_layout_give_the_same_logits(tmp_path, use_bias):
  import torch
  text = tmp_path / "text"
  text.mkdir()
  (text / "input.txt").write_text(TEXT)
  config = gpt_config.get_config("text_file")
  config.update(manual_dir=str(text), data_dir=str(tmp_path / "tfds"), seq_len=16,
                batch_size=4, num_train_steps=3, log_every_steps=1, eval_every_steps=3,
                checkpoint_every_steps=3, sample_every_steps=3, num_samples=1, eval_max_examples=8)
  config.model.update(num_layers=2, num_heads=2, embed_dim=32, use_bias=use_bias,
                      sample_num_tokens=8)
  config.optimizer.warmup_steps = 1
  workdir = str(tmp_path / "gpt")
  workdir_lib.train(config, workdir, progress=False)
  out = export_lib.export(workdir, "safetensors", str(tmp_path / "export" / "gpt.safetensors"))
  from safetensors.numpy import load_file
  flat = load_file(out["out"])
  run, state, _ = workdir_lib.restore(workdir)
  assert_bitwise(params_file.unflatten_like(flat, state.params), state.params)
  vocab, block = flat["wte/embedding"].shape[0], flat["wpe"].shape[0]
  model = nanogpt_module(vocab, block, 2, 2, 32, use_bias)
  sd = {k: torch.from_numpy(np.array(v)) for k, v in nanogpt_state_dict(flat, 2, use_bias).items()}
  sd["lm_head.weight"] = sd["transformer.wte.weight"]
  loaded = model.load_state_dict(sd, strict=True)
  assert not loaded.missing_keys and not loaded.unexpected_keys
  tokens = np.random.default_rng(0).integers(0, vocab, (3, block)).astype(np.int32)
  ours = _gpt_logits(config, run, state.params, tokens)
  with torch.no_grad():
    theirs = model(torch.from_numpy(tokens.astype(np.int64))).numpy()
  assert ours.shape == theirs.shape == (3, block, vocab)
  np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)
  assert np.abs(ours).max() > 1e-2          # logits of a trained model, not all ~0


def _gpt_logits(config, run, params, tokens):
  """gen_jax's logits [B, T, V] of the run's GPT on `tokens` (the paradigm's own net)."""
  from gen_jax.paradigms.gpt import make_model
  model = make_model(config.model, len(run.info.vocab), params["wpe"].shape[0])
  return np.asarray(model.apply({"params": jax.device_get(params)}, tokens))
