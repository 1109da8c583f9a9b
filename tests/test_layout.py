"""DESIGN.md's arrows: losses, samplers and nets never import train, data or experiments;
data never imports train; the loop imports nothing family-specific; no import cycles in
gen_jax; configs import no training code; saved state is never pickled.

Every import counts, at module level or inside a function (`ast.walk` sees both).
"""
import ast
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
ROOT = REPO / "gen_jax"


def module_name(path):
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules():
  return {module_name(p): p for p in ROOT.rglob("*.py")}


def imported_modules(path):
  tree = ast.parse(path.read_text())
  names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
  names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
  return names


def imported_gen_jax_modules(path, modules):
  """The gen_jax modules `path` imports: `from a.b import c` counts a.b.c when that is a
  module, else a.b; a module's own ancestor packages (imported implicitly) are left out."""
  tree = ast.parse(path.read_text())
  found = set()
  for n in ast.walk(tree):
    if isinstance(n, ast.Import):
      found |= {a.name for a in n.names}
    elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
      for a in n.names:
        sub = f"{n.module}.{a.name}"
        found.add(sub if sub in modules else n.module)
  me = module_name(path)
  ancestors = {".".join(me.split(".")[:i]) for i in range(1, me.count(".") + 1)}
  return {m for m in found if m in modules and m != me and m not in ancestors}


def test_no_import_cycles_in_gen_jax():
  modules = all_modules()
  graph = {m: imported_gen_jax_modules(p, modules) for m, p in modules.items()}
  # Tarjan's strongly connected components: a component of more than one module is a cycle.
  index, low, stack, on_stack, cycles = {}, {}, [], set(), []
  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        cycles.append(sorted(component))
  for m in sorted(graph):
    if m not in index:
      visit(m)
  assert not cycles, cycles


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
  """The check above can fail: two modules importing each other inside functions."""
  pkg = tmp_path / "gen_jax"
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "a.py").write_text("def f():\n  from gen_jax import b\n")
  (pkg / "b.py").write_text("def g():\n  import gen_jax.a\n")
  this = sys.modules[__name__]
  monkeypatch.setattr(this, "REPO", tmp_path)
  monkeypatch.setattr(this, "ROOT", pkg)
  modules = all_modules()
  assert imported_gen_jax_modules(pkg / "a.py", modules) == {"gen_jax.b"}
  assert imported_gen_jax_modules(pkg / "b.py", modules) == {"gen_jax.a"}
  try:
    test_no_import_cycles_in_gen_jax()
  except AssertionError as e:
    assert "gen_jax.a" in str(e)
  else:
    raise AssertionError("the cycle a <-> b went unnoticed")


def test_data_never_imports_train_workdir_eval_paradigms_or_experiments():
  for path in (ROOT / "data").rglob("*.py"):
    bad = {m for m in imported_modules(path)
           if m.startswith(("gen_jax.train", "gen_jax.workdir", "gen_jax.eval",
                            "gen_jax.paradigms", "experiments"))}
    assert not bad, (path, bad)


def test_nothing_in_the_library_imports_the_workdir_layer_above_it():
  for path in ROOT.rglob("*.py"):
    if path.name == "workdir.py" and path.parent == ROOT:
      continue
    assert "gen_jax.workdir" not in imported_gen_jax_modules(path, all_modules()), path


def test_train_and_eval_do_not_import_each_other():
  for folder, other in (("train", "gen_jax.eval"), ("eval", "gen_jax.train")):
    for path in (ROOT / folder).rglob("*.py"):
      assert not {m for m in imported_modules(path) if m.startswith(other)}, path


# What a config file may import from gen_jax: the paradigms' fields dataclasses (the one
# place a model field's default lives) and the errors; never the loop, the workdir, the
# evaluators or the data pipeline.
CONFIG_IMPORTS = ("gen_jax.paradigms", "gen_jax.errors")


def test_configs_import_no_training_code():
  for path in (REPO / "experiments" / "configs").rglob("*.py"):
    bad = {m for m in imported_modules(path)
           if (m.startswith("gen_jax") and not any(m == a or m.startswith(a + ".")
                                                    for a in CONFIG_IMPORTS))
           or (m.startswith("experiments") and not m.startswith("experiments.configs"))}
    assert not bad, (path, bad)


def test_losses_samplers_nets_never_import_train_data_or_experiments():
  for folder in ("losses", "samplers", "nets"):
    for path in (ROOT / folder).rglob("*.py"):
      bad = {m for m in imported_modules(path)
             if m.startswith(("gen_jax.train", "gen_jax.data", "experiments"))}
      assert not bad, (path, bad)


# Pure-Python data modules a paradigm may use inside its jitted functions
# (no TFDS, no grain): dataset descriptions and caption templates.
PURE_DATA_MODULES = ("gen_jax.data.info", "gen_jax.data.captions")


def test_paradigms_never_import_the_loop_the_data_pipeline_or_experiments():
  for path in (ROOT / "paradigms").rglob("*.py"):
    bad = {m for m in imported_modules(path)
           if m.startswith(("gen_jax.train", "gen_jax.eval", "gen_jax.workdir", "experiments"))
           or (m.startswith("gen_jax.data") and m not in PURE_DATA_MODULES)}
    assert not bad, (path, bad)


def test_the_loop_imports_no_family():
  for path in (ROOT / "train").rglob("*.py"):
    bad = {m for m in imported_modules(path)
           if m.startswith(("gen_jax.nets", "gen_jax.losses", "gen_jax.samplers"))
           or (m.startswith("gen_jax.paradigms.") and m != "gen_jax.paradigms.base")}
    assert not bad, (path, bad)


def test_nothing_is_pickled():
  for path in ROOT.rglob("*.py"):
    assert not {m for m in imported_modules(path) if m in ("pickle", "cloudpickle", "dill")}, path


def test_no_gen_jax_module_imports_torch_at_import_time():
  """Importing every gen_jax module (in a fresh interpreter) loads no torch: torch is a
  test-only dependency (requirements-test.txt); a .pth is read by experiments.convert_inception."""
  import subprocess
  names = sorted(m for m in all_modules() if not m.endswith("__main__"))
  code = ("import importlib, sys\n"
          f"for name in {names!r}:\n"
          "  importlib.import_module(name)\n"
          "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:5])\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
