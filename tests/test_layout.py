"""DESIGN.md's arrows: losses, samplers and nets never import train, data or experiments;
the loop imports nothing family-specific; saved state is never pickled."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "gen_jax"


def imported_modules(path):
  tree = ast.parse(path.read_text())
  names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
  names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
  return names


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
           if m.startswith(("gen_jax.train", "experiments"))
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
