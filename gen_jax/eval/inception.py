r"""Inception FID and KID as papers compute them, from a weight file the user supplies.

FID (Heusel et al. 2017, arXiv:1706.08500) is the Fréchet distance between Gaussians fitted
to the pool3 features (2048-d, the final average pool) of the Inception-v3 graph of
TensorFlow's 2015-12-05 release:

  FID = ||mu_r - mu_g||^2 + tr(Sigma_r + Sigma_g - 2 (Sigma_r Sigma_g)^{1/2})

(computed by `gen_jax.eval.frechet`, float64). KID (Binkowski et al. 2018, "Demystifying
MMD GANs", arXiv:1801.01401, Sec. 3) is the unbiased estimate of the squared MMD between
the same features under the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, d = 2048:

  MMD_u^2 = 1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i, y_j)
            - 2/(mn) sum_{i,j} k(x_i, y_j),

averaged over `num_subsets` random subsets of `subset_size` of each set (drawn without
replacement), as the paper's code and torch-fidelity do (defaults 100 x 1,000, torch-
fidelity's); the spread (std) of the subset values is reported beside it.

The network is `FIDInceptionV3`, the graph as pytorch-fid (github.com/mseitzer/pytorch-fid,
`pytorch_fid/inception.py`) ports it: torchvision's Inception3 up to pool3 with its
`FIDInceptionA`, `FIDInceptionC`, `FIDInceptionE_1` blocks (TensorFlow's average pool does not
count the zero padding) and `FIDInceptionE_2` (a max pool in the last block's pool branch).
Inputs are pytorch-fid's: uint8 RGB images (a grey channel is repeated, as PIL's
`convert('RGB')`) as x / 255, resized to 299 x 299 bilinearly exactly as
`F.interpolate(mode='bilinear', align_corners=False)` (no antialiasing, also when shrinking),
then mapped to [-1, 1] by 2x - 1. Convolutions run at `Precision.HIGHEST`, so an accelerator
does not round them to bfloat16/TF32.

Weights. Nothing downloads: the user gives pytorch-fid's published file
pt_inception-2015-12-05-6726825d.pth (`WEIGHTS_URL`, a torch state_dict) as
`--inception_weights=FILE` (experiments/evaluate.py) or $GEN_JAX_INCEPTION. The library reads
only an `.npz` of the same names -> arrays (`load`), so it never imports torch (tests/
test_layout.py and tests/test_export.py check it); a `.pth` is read by
`experiments.convert_inception` (torch, imported inside its functions), which evaluate.py
calls for a .pth, or which converts the file once:
`python -m experiments.convert_inception pt_inception-2015-12-05-6726825d.pth inception.npz`.

`variables_from_state_dict` maps the torch names (`Mixed_5b.branch1x1.conv.weight`,
`...bn.running_var`, ...) to Flax variables (conv kernels OIHW -> HWIO; BatchNorm eps 0.001);
the classifier `fc.*` is not used. Tested (tests/test_inception.py) against pytorch-fid's own
`InceptionV3([3])` with random weights: the same 2048-d features within 1e-4.

Comparability. Values depend on N (FID is biased upwards at small N; papers use 50,000
samples against the training set's statistics) and on the reference split: report both.
pytorch-fid's numbers differ slightly from the original TensorFlow code's (its README says
so); these are pytorch-fid's.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.errors import UserError
from gen_jax.eval import frechet

WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               "pt_inception-2015-12-05-6726825d.pth")
ENV_VAR = "GEN_JAX_INCEPTION"
FEATURE_DIM = 2048
INPUT_SIZE = 299
BN_EPS = 1e-3
_HIGHEST = jax.lax.Precision.HIGHEST


def missing_weights_message(path: str = "") -> str:
  """The one line saying where to get the weight file and how to pass it."""
  what = f"Inception weight file {path!r} not found" if path else "No Inception weight file given"
  return (f"{what}: download pytorch-fid's {WEIGHTS_URL} and pass it as "
          f"--inception_weights=FILE or ${ENV_VAR}=FILE (nothing is downloaded at run time).")


# ------------------------------------------------------------------ network ---

class BasicConv(nn.Module):
  """torchvision's BasicConv2d: conv (no bias) -> BatchNorm(eps 0.001, running stats) -> ReLU."""
  features: int
  kernel: tuple
  strides: int = 1
  padding: tuple = (0, 0)

  @nn.compact
  def __call__(self, x):
    (ph, pw) = self.padding
    x = nn.Conv(self.features, self.kernel, strides=self.strides, padding=((ph, ph), (pw, pw)),
                use_bias=False, precision=_HIGHEST, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
    return nn.relu(x)


def _avg_pool_same(x):
  """3x3 / 1 average pool over the unpadded pixels only (TF's; count_include_pad=False)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class FIDInceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv(48, (1, 1), name="branch5x5_1")(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), strides=2, name="branch3x3")(x)
    bd = BasicConv(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], -1)


class FIDInceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = BasicConv(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv(c7, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv(192, (1, 1), name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(192, (1, 1), name="branch3x3_1")(x)
    b3 = BasicConv(320, (3, 3), strides=2, name="branch3x3_2")(b3)
    b7 = BasicConv(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], -1)


class FIDInceptionE(nn.Module):
  """FIDInceptionE_1 (pool branch: average pool without padding) or, with max_pool=True,
  FIDInceptionE_2 (pool branch: 3x3 / 1 max pool, as the TF graph has it)."""
  max_pool: bool = False

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], -1)
    bd = BasicConv(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], -1)
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_same(x)
    bp = BasicConv(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], -1)


class FIDInceptionV3(nn.Module):
  """pytorch-fid's InceptionV3([3]) in Flax: x in [-1, 1], [N, 299, 299, 3] -> pool3 [N, 2048].

  Submodule names are torchvision's (Conv2d_1a_3x3, ..., Mixed_7c), so the converter maps
  names one to one."""

  @nn.compact
  def __call__(self, x):
    x = BasicConv(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
    x = BasicConv(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = BasicConv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_s2(x)
    x = FIDInceptionA(32, name="Mixed_5b")(x)
    x = FIDInceptionA(64, name="Mixed_5c")(x)
    x = FIDInceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = FIDInceptionC(c7, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = FIDInceptionE(max_pool=False, name="Mixed_7b")(x)
    x = FIDInceptionE(max_pool=True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))          # AdaptiveAvgPool2d((1, 1)): pool3


# ------------------------------------------------------------------- inputs ---

def bilinear_matrix(in_size: int, out_size: int, dtype=np.float32) -> np.ndarray:
  """[out, in] weights of PyTorch's bilinear resize with align_corners=False, no antialias:
  source coordinate s = max(scale (i + 0.5) - 0.5, 0), scale = in/out in `dtype`, taps
  floor(s) and floor(s) + 1 (clamped to the last pixel) with weights 1 - frac(s), frac(s).
  In float32 s is rounded once after the multiply-add, as the fused multiply-add of torch's
  CPU kernel does (rounding twice moved some weights by ~1e-5)."""
  dtype = np.dtype(dtype)
  scale = np.float64(dtype.type(in_size) / dtype.type(out_size))
  src = ((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5).astype(dtype)
  src = np.maximum(src, dtype.type(0))
  i0 = np.floor(src).astype(np.int64)
  i1 = np.minimum(i0 + 1, in_size - 1)
  lam = (src - i0.astype(dtype)).astype(dtype)
  w = np.zeros((out_size, in_size), dtype)
  np.add.at(w, (np.arange(out_size), i0), dtype.type(1) - lam)
  np.add.at(w, (np.arange(out_size), i1), lam)
  return w


def resize_bilinear(x, size: int = INPUT_SIZE):
  """[N, H, W, C] float -> [N, size, size, C], as F.interpolate(mode='bilinear',
  align_corners=False) (separable: rows, then columns), in x's dtype."""
  _, h, w, _ = x.shape
  x = jnp.einsum("oh,nhwc->nowc", bilinear_matrix(h, size, x.dtype), x, precision=_HIGHEST)
  return jnp.einsum("pw,nowc->nopc", bilinear_matrix(w, size, x.dtype), x, precision=_HIGHEST)


def preprocess(images, dtype=jnp.float32):
  """uint8 [N, H, W, 1 or 3] (or float in [0, 1], taken as x / 255 already divided) ->
  [N, 299, 299, 3] in [-1, 1] (`dtype`), as pytorch-fid: x / 255, bilinear to 299, 2x - 1."""
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise UserError(f"Inception features take images [N, H, W, 1 or 3], got shape {images.shape}.")
  x = images.astype(dtype) / 255.0 if images.dtype == jnp.uint8 else images.astype(dtype)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  return 2.0 * resize_bilinear(x) - 1.0


def to_uint8(images01) -> np.ndarray:
  """Float images in [0, 1] -> uint8 as a PNG stores them: round(255 x), clipped."""
  return np.clip(np.round(np.asarray(images01, np.float64) * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- converter ---

def read_state_dict(path: str) -> dict:
  """name -> numpy array from an .npz of pytorch-fid's state_dict (`save_npz`). A torch file
  (.pth) is refused with the one command that converts it: reading it needs torch, which the
  library never imports (`experiments.convert_inception` does, once)."""
  if not path.endswith(".npz"):
    raise UserError(f"{path} is not an .npz: pass the .pth to experiments.evaluate "
                    "(--inception_weights=FILE.pth, needs torch), or convert it once with "
                    f"`python -m experiments.convert_inception {path} inception.npz` and pass the .npz.")
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


def variables_from_state_dict(state: Mapping[str, Any], dtype=np.float32) -> dict:
  """pytorch-fid / torchvision names -> {'params', 'batch_stats'} of `FIDInceptionV3`.

  `<path>.conv.weight` [O, I, kh, kw] -> params[<path>]['conv']['kernel'] [kh, kw, I, O];
  `<path>.bn.{weight, bias, running_mean, running_var}` -> params ...['bn']['scale', 'bias'],
  batch_stats ...['bn']['mean', 'var']. `num_batches_tracked` and `fc.*` are unused. A name
  the network needs that the file lacks, or a shape that differs, is refused (UserError)."""
  template = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0),
                            jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
  leaves = {"kernel": ("conv.weight", lambda w: np.transpose(w, (2, 3, 1, 0))),
            "scale": ("bn.weight", None), "bias": ("bn.bias", None),
            "mean": ("bn.running_mean", None), "var": ("bn.running_var", None)}
  missing, bad_shape = [], []

  def convert(path, leaf):
    keys = [p.key for p in path]
    module_path, name = keys[1:-2], keys[-1]      # keys[0] is the collection
    suffix, fn = leaves[name]
    torch_name = ".".join(module_path + [suffix])
    if torch_name not in state:
      missing.append(torch_name)
      return np.zeros(leaf.shape, np.float32)
    value = np.asarray(state[torch_name], dtype)
    value = fn(value) if fn else value
    if value.shape != leaf.shape:
      bad_shape.append(f"{torch_name} {value.shape} (expected {leaf.shape})")
      return np.zeros(leaf.shape, np.float32)
    return value

  variables = jax.tree_util.tree_map_with_path(convert, template)
  if missing or bad_shape:
    raise UserError(f"Not pytorch-fid's Inception state_dict: {len(missing)} names missing "
                    f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}), "
                    f"{len(bad_shape)} shapes differ ({', '.join(bad_shape[:3])}); use "
                    f"{WEIGHTS_URL.rsplit('/', 1)[1]} from {WEIGHTS_URL}.")
  return jax.tree.map(jnp.asarray, variables) if np.dtype(dtype) == np.float32 else variables


def save_npz(state: Mapping[str, Any], out: str) -> None:
  """Writes a state_dict (name -> array) as an .npz that `load` reads without torch."""
  np.savez(out, **{k: np.asarray(v) for k, v in state.items() if not k.endswith("num_batches_tracked")})


def resolve_weights(path: str = "") -> str:
  """The weight file: `path`, else $GEN_JAX_INCEPTION; a UserError with the URL if neither
  names an existing file."""
  path = os.path.expanduser(path or os.environ.get(ENV_VAR, ""))
  if not path or not os.path.isfile(path):
    raise UserError(missing_weights_message(path))
  return path


# ------------------------------------------------------------------ features ---

class InceptionNet(NamedTuple):
  """The loaded FID network: `features(images)` -> pool3 float32 [N, 2048]."""
  variables: Any
  apply_fn: Callable        # jitted (variables, images uint8 or [0, 1] floats) -> [N, 2048]

  def features(self, images, batch_size: int = 100) -> np.ndarray:
    """pool3 features of uint8 images [N, H, W, 1 or 3] (floats in [0, 1] are read as x / 255
    already taken), in batches of `batch_size` (the last padded: one compiled shape)."""
    images = np.asarray(images)
    n = images.shape[0]
    outs = []
    for start in range(0, n, batch_size):
      chunk = images[start:start + batch_size]
      pad = batch_size - chunk.shape[0] if n > batch_size else 0
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
      out = np.asarray(self.apply_fn(self.variables, chunk))
      outs.append(out[:out.shape[0] - pad])
    return np.concatenate(outs) if outs else np.zeros((0, FEATURE_DIM), np.float32)


def from_variables(variables) -> InceptionNet:
  """The network of converted `variables`; computes in their dtype (float32; float64 under
  jax_enable_x64 for the tests' exact comparison)."""
  module = FIDInceptionV3()
  dtype = jax.tree.leaves(variables)[0].dtype
  apply_fn = jax.jit(lambda v, images: module.apply(v, preprocess(images, dtype)))
  return InceptionNet(variables, apply_fn)


@functools.lru_cache(maxsize=2)
def load(path: str = "") -> InceptionNet:
  """The FID Inception network from pytorch-fid's weights converted to .npz (`path`, else
  $GEN_JAX_INCEPTION); cached per process. A .pth goes through
  `experiments.convert_inception.load` (torch)."""
  return from_variables(variables_from_state_dict(read_state_dict(resolve_weights(path))))


# ----------------------------------------------------------------- the scores ---

def polynomial_kernel(x, y, degree: int = 3, coef0: float = 1.0):
  """k(x, y) = (x.y / d + coef0)^degree for rows of x [m, d], y [n, d] (float64)."""
  d = x.shape[1]
  return (x @ y.T / d + coef0) ** degree


def mmd2_unbiased(x, y) -> float:
  r"""The unbiased MMD^2 of two feature sets under the cubic polynomial kernel
  (arXiv:1801.01401, eq. 3 of Gretton et al. 2012's MMD_u^2): within-set terms without the
  diagonal, over m(m-1) and n(n-1); the cross term over all m n pairs."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  m, n = x.shape[0], y.shape[0]
  if m < 2 or n < 2:
    raise ValueError(f"MMD_u^2 needs at least 2 points a set, got {m} and {n}.")
  kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
               + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.sum() / (m * n))


def kid_subsets(n_real: int, n_fake: int, num_subsets: int, subset_size: int, seed: int = 0):
  """[(real indices, fake indices)] of the KID subsets: `num_subsets` draws without
  replacement of min(subset_size, n_real, n_fake) from each set, from default_rng(seed)."""
  size = min(subset_size, n_real, n_fake)
  rng = np.random.default_rng(seed)
  return [(rng.choice(n_real, size, replace=False), rng.choice(n_fake, size, replace=False))
          for _ in range(num_subsets)]


def kernel_inception_distance(real, fake, num_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
  """(KID, std over subsets): the mean of `mmd2_unbiased` over `kid_subsets` (torch-fidelity's
  defaults, 100 subsets of 1,000; fewer points than subset_size use all of the smaller set)."""
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  values = [mmd2_unbiased(real[i], fake[j])
            for i, j in kid_subsets(len(real), len(fake), num_subsets, subset_size, seed)]
  return float(np.mean(values)), float(np.std(values))


def scores(net: InceptionNet, real_uint8, fake, batch_size: int = 100) -> dict:
  """{"FID", "KID", "KID_std", "fid_num_real", "fid_num_fake", "fid_features"} of images
  `fake` (float in [0, 1], as samplers return: stored as PNG-like uint8 first) against uint8
  images `real_uint8`, on pool3 features. Non-finite samples give NaN scores."""
  fake = np.asarray(fake)
  counts = {"fid_num_real": int(len(real_uint8)), "fid_num_fake": int(len(fake)),
            "fid_features": "inception-2015-12-05 pool3 (pytorch-fid)"}
  if fake.dtype != np.uint8:
    if not np.all(np.isfinite(fake)):
      return {"FID": float("nan"), "KID": float("nan"), "KID_std": float("nan"), **counts}
    fake = to_uint8(fake)
  fr, ff = net.features(real_uint8, batch_size), net.features(fake, batch_size)
  kid, kid_std = kernel_inception_distance(fr, ff)
  return {"FID": frechet.frechet_distance(fr, ff), "KID": kid, "KID_std": kid_std, **counts}
