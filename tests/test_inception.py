"""Inception FID / KID (gen_jax.eval.inception, experiments.convert_inception).

Truth checked without the real weights: pytorch-fid's own `InceptionV3([3],
use_fid_inception=True)` (its FIDInceptionA/C/E_1/E_2 blocks, its resize and [-1, 1] map),
built with random weights where it would download them, and gen_jax's Flax network with
those weights converted, give the same 2048-d pool3 features within 1e-4 on the same uint8
images; also through a .pth file and its .npz. The bilinear resize equals F.interpolate's,
shrinking too. KID equals a brute-force double loop over the same subsets; FID of a set with
itself is 0; a missing weight file is one line with the URL.

torch is in requirements-test.txt; pytorch-fid and torchvision (for the pure-Python classes
pytorch_fid.inception subclasses) are in requirements-test-reference.txt, installed off
sys.path in .venv/test-reference (see that file for why): `_pytorch_fid()` loads them.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import pathlib
import sys
import types

import numpy as np
import pytest

from gen_jax.errors import UserError
from gen_jax.eval import frechet, inception

REFERENCE_DIR = pathlib.Path(__file__).resolve().parent.parent / ".venv" / "test-reference"
MISSING = ("is a test dependency: `make test` installs requirements-test.txt (torch) and "
           "requirements-test-reference.txt (pytorch-fid, torchvision) into .venv")


def _torch():
  """torch, which these tests need (they fail without it rather than skip: CI must run them)."""
  if importlib.util.find_spec("torch") is None:
    pytest.fail(f"torch {MISSING}")
  import torch
  return torch


@pytest.fixture(scope="module")
def pfi():
  """pytorch_fid.inception, imported with torchvision's package __init__ skipped (it loads
  compiled ops that the CPU torch lacks); sys.modules restored afterwards, so no other test
  sees this torchvision."""
  _torch()
  before = set(sys.modules)
  added_path = False
  if REFERENCE_DIR.is_dir() and str(REFERENCE_DIR) not in sys.path:
    sys.path.insert(0, str(REFERENCE_DIR))
    importlib.invalidate_caches()
    added_path = True
  spec = importlib.util.find_spec("torchvision")
  if spec is None or importlib.util.find_spec("pytorch_fid") is None:
    pytest.fail(f"pytorch-fid {MISSING}")
  shim = types.ModuleType("torchvision")
  shim.__path__ = list(spec.submodule_search_locations)
  shim.__file__ = spec.origin
  shim.__version__ = importlib.metadata.version("torchvision") if not added_path else (
      next(REFERENCE_DIR.glob("torchvision-*.dist-info")).name.split("-")[1])
  sys.modules["torchvision"] = shim
  try:
    import torchvision.models.inception  # noqa: F401  (pure Python: BasicConv2d, InceptionA..E)
    shim.models = sys.modules["torchvision.models"]
    from pytorch_fid import inception as module
    yield module
  finally:
    for name in set(sys.modules) - before:
      if name.split(".")[0] in ("torchvision", "pytorch_fid"):
        del sys.modules[name]
    if added_path:
      sys.path.remove(str(REFERENCE_DIR))


def random_fid_model(pfi, monkeypatch):
  """pytorch-fid's InceptionV3([3]) with random weights in place of the download: convs at
  torch's default init, random BatchNorm scales/shifts, then its running statistics calibrated
  on random images (so every layer's output is O(1) in eval mode)."""
  import torch
  torch.manual_seed(0)
  template = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
  # FID blocks have torchvision's blocks' parameters (they override forward only), so the
  # template's state_dict is what fid_inception_v3 loads in place of the published file.
  monkeypatch.setattr(pfi, "load_state_dict_from_url",
                      lambda url, progress=True: template.state_dict())
  built = []
  original = pfi.fid_inception_v3
  monkeypatch.setattr(pfi, "fid_inception_v3", lambda: built.append(original()) or built[0])
  model = pfi.InceptionV3([3], use_fid_inception=True)
  model.inception = built[0]    # its torchvision names are the published file's (fc.* too)
  bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for bn in bns:
      bn.weight.uniform_(0.5, 1.5)
      bn.bias.normal_(0.0, 0.1)
      bn.momentum = None          # cumulative average: running stats = the batch's
      bn.reset_running_stats()
    model.train()
    model(torch.rand(4, 3, 32, 32))     # images like the tests' (random pixels, resized)
  return model.eval()


def torch_features(model, images_uint8, dtype=None):
  import torch
  x = torch.from_numpy(images_uint8).permute(0, 3, 1, 2).to(dtype or torch.float32) / 255.0   # TF.ToTensor()
  if x.shape[1] == 1:
    x = x.repeat(1, 3, 1, 1)
  with torch.no_grad():
    return model(x)[0].squeeze(-1).squeeze(-1).numpy()


def numpy_state(model):
  """The state_dict in the published file's layout (torchvision's names: Mixed_5b.branch1x1...)."""
  return {k: v.numpy() for k, v in model.inception.state_dict().items()}


def test_converted_random_weights_give_pytorch_fid_features(pfi, monkeypatch, tmp_path):
  """In float64 on both sides the features agree to ~1e-12 (the architecture and the
  converter, exactly); in float32 a random-weight net amplifies rounding (torch's own float32
  features are ~4e-4 off its float64 ones), so float32 is held to torch's own float32 error."""
  import jax
  import torch
  model = random_fid_model(pfi, monkeypatch)
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  expected = torch_features(model, images)
  assert expected.shape == (2, 2048) and expected.std() > 0.05     # not a degenerate net
  net = inception.from_variables(inception.variables_from_state_dict(numpy_state(model)))
  got = net.features(images)
  assert got.shape == (2, 2048) and got.dtype == np.float32
  expected64 = torch_features(model.double(), images, torch.float64)
  with jax.enable_x64(True):
    net64 = inception.from_variables(inception.variables_from_state_dict(numpy_state(model), np.float64))
    got64 = net64.features(images)
  assert got64.dtype == np.float64
  np.testing.assert_allclose(got64, expected64, atol=1e-9, rtol=0)
  torch32_error = np.abs(expected - expected64).max()
  assert np.abs(got - expected64).max() <= 1.5 * torch32_error
  np.testing.assert_allclose(got, expected, atol=3 * torch32_error, rtol=0)
  model.float()
  # Through the files a user passes: the .pth (torch) and its one-time .npz (no torch).
  from experiments import convert_inception
  pth, npz = tmp_path / "w.pth", tmp_path / "w.npz"
  torch.save(model.inception.state_dict(), pth)
  assert convert_inception.main(["x", str(pth), str(npz)]) == 0
  for path in (pth, npz):
    np.testing.assert_allclose(convert_inception.load(str(path)).features(images), got, atol=1e-6)


def test_grey_images_are_repeated_to_rgb(pfi, monkeypatch):
  model = random_fid_model(pfi, monkeypatch)
  grey = np.random.default_rng(1).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
  net = inception.from_variables(inception.variables_from_state_dict(numpy_state(model)))
  got, expected = net.features(grey), torch_features(model, grey)
  assert np.abs(got - expected).max() < 2e-4 * np.abs(expected).max()


@pytest.mark.parametrize("size", [(8, 13), (64, 64), (400, 333)])
def test_resize_is_torch_bilinear_without_antialias(size):
  torch = _torch()
  x = np.random.default_rng(2).random((2, *size, 3), dtype=np.float32)
  expected = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2),
                                             size=(299, 299), mode="bilinear", align_corners=False)
  got = np.asarray(inception.resize_bilinear(x))
  np.testing.assert_allclose(got, expected.permute(0, 2, 3, 1).numpy(), atol=2e-6, rtol=0)


def brute_force_mmd2(x, y):
  k = lambda a, b: (sum(float(p) * float(q) for p, q in zip(a, b)) / len(a) + 1.0) ** 3
  m, n = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i, j in itertools.product(range(m), repeat=2) if i != j)
  yy = sum(k(y[i], y[j]) for i, j in itertools.product(range(n), repeat=2) if i != j)
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
  return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2.0 * xy / (m * n)


def test_kid_is_the_brute_force_unbiased_polynomial_mmd():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(9, 5)), rng.normal(0.5, 1.0, size=(7, 5))
  assert inception.mmd2_unbiased(x, y) == pytest.approx(brute_force_mmd2(x, y), rel=1e-12)
  subsets = inception.kid_subsets(9, 7, num_subsets=4, subset_size=5, seed=11)
  values = [brute_force_mmd2(x[i], y[j]) for i, j in subsets]
  assert all(len(i) == len(j) == 5 and len(set(i)) == 5 for i, j in subsets)
  kid, std = inception.kernel_inception_distance(x, y, num_subsets=4, subset_size=5, seed=11)
  assert kid == pytest.approx(np.mean(values), rel=1e-12)
  assert std == pytest.approx(np.std(values), rel=1e-10)
  # Unbiased: over many draws from one distribution the mean is ~0 (a biased V-statistic
  # would be positive by about 2 E k(x, x) / m).
  same = [inception.mmd2_unbiased(rng.normal(size=(6, 5)), rng.normal(size=(6, 5))) for _ in range(2000)]
  assert abs(np.mean(same)) < 4 * np.std(same) / np.sqrt(len(same))


def test_fid_of_a_set_with_itself_is_zero():
  f = np.random.default_rng(4).normal(size=(300, 64))
  assert frechet.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)
  assert frechet.frechet_distance(f, f + 1.0) == pytest.approx(64.0, rel=1e-9)


def test_missing_weights_say_where_to_get_them(tmp_path, monkeypatch):
  monkeypatch.delenv(inception.ENV_VAR, raising=False)
  for path in ("", str(tmp_path / "absent.pth")):
    with pytest.raises(UserError) as e:
      inception.resolve_weights(path)
    message = str(e.value)
    assert "\n" not in message and inception.WEIGHTS_URL in message
    assert "--inception_weights=FILE" in message and inception.ENV_VAR in message
  monkeypatch.setenv(inception.ENV_VAR, str(tmp_path / "w.npz"))
  (tmp_path / "w.npz").write_bytes(b"")
  assert inception.resolve_weights("") == str(tmp_path / "w.npz")


def test_a_state_dict_of_another_net_is_refused():
  with pytest.raises(UserError, match="names missing"):
    inception.variables_from_state_dict({"fc.weight": np.zeros((1008, 2048), np.float32)})


def test_evaluate_without_the_file_says_where_to_get_it_before_any_work(cli, tmp_path):
  out = cli("experiments.evaluate", f"--workdir={tmp_path / 'no_run'}", "--inception_fid",
            check=False, env={inception.ENV_VAR: ""}, timeout=120)
  assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
  assert inception.WEIGHTS_URL in out.stderr and "--inception_weights=FILE" in out.stderr


def test_scores_quantise_samples_as_pngs_and_use_the_projects_fd():
  """`scores` plumbing, on a stand-in feature net (the network itself is tested above): float
  samples are stored as PNG-like uint8 before their features are taken; FID is the project's
  Fréchet distance and KID the subset average; non-finite samples give NaN."""
  seen = []

  class PixelFeatures:               # duck-types InceptionNet.features
    def features(self, images, batch_size=100):
      seen.append(np.asarray(images).dtype)
      return np.asarray(images, np.float64).reshape(len(images), -1)[:, :8]

  net = PixelFeatures()
  rng = np.random.default_rng(5)
  real = rng.integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
  fake = rng.random((30, 4, 4, 3)).astype(np.float32)
  row = inception.scores(net, real, fake)
  assert seen == [np.uint8, np.uint8]
  fr, ff = net.features(real), net.features(inception.to_uint8(fake))
  assert row["FID"] == pytest.approx(frechet.frechet_distance(fr, ff), rel=1e-12)
  assert row["KID"] == pytest.approx(inception.kernel_inception_distance(fr, ff)[0], rel=1e-12)
  assert (row["fid_num_real"], row["fid_num_fake"]) == (40, 30)
  np.testing.assert_array_equal(inception.to_uint8(np.array([0.0, 0.5 / 255, 0.502, 1.2])),
                                [0, 0, 128, 255])
  bad = inception.scores(net, real, np.full_like(fake, np.nan))
  assert np.isnan(bad["FID"]) and np.isnan(bad["KID"])
