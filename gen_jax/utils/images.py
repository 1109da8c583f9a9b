"""Turning samples into pictures: image grids, point scatters, GIF animations."""
from __future__ import annotations

import io
import math
import os

import numpy as np
from PIL import Image


def image_grid(images, ncols=None, pad=1, upscale=None):
  """[N, H, W, C] floats in [0, 1] -> one uint8 [rows*H, cols*W, 3] grid image.

  Small images are upscaled (nearest) so that the grid is at least ~256 px wide.
  """
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  if images.ndim == 3:
    images = images[..., None]
  n, h, w, c = images.shape
  if c == 1:
    images = np.repeat(images, 3, axis=-1)
  ncols = ncols or int(math.ceil(math.sqrt(n)))
  nrows = int(math.ceil(n / ncols))
  grid = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), np.float32)
  for i in range(n):
    r, col = divmod(i, ncols)
    grid[pad + r * (h + pad): pad + r * (h + pad) + h,
         pad + col * (w + pad): pad + col * (w + pad) + w] = images[i]
  if upscale is None:
    upscale = max(1, 256 // grid.shape[1])
  grid = np.kron(grid, np.ones((upscale, upscale, 1), np.float32))
  return (grid * 255).round().astype(np.uint8)


def points_figure(points, lim=None, size=256, reference=None):
  """[N, 2] points -> uint8 [size, size, 3] scatter image (reference in grey)."""
  points = np.asarray(points, np.float32)
  if lim is None:
    allp = points if reference is None else np.concatenate([points, reference])
    lim = float(np.percentile(np.abs(allp), 99.5)) * 1.1 + 1e-6
  img = np.full((size, size, 3), 255, np.uint8)

  def draw(p, color):
    ij = ((p + lim) / (2 * lim) * (size - 1)).round().astype(int)
    ok = np.all((ij >= 0) & (ij < size), axis=1)
    img[size - 1 - ij[ok, 1], ij[ok, 0]] = color

  if reference is not None:
    draw(np.asarray(reference, np.float32), (190, 190, 190))
  draw(points, (20, 60, 200))
  return img


def to_picture(samples):
  """Samples of any paradigm kind -> a uint8 RGB picture (grid or scatter)."""
  samples = np.asarray(samples)
  if samples.ndim == 2 and samples.shape[1] == 2:
    return points_figure(samples)
  if samples.ndim in (3, 4):
    return image_grid(samples)
  raise ValueError(f"Cannot draw samples of shape {samples.shape} as a picture.")


def save_png(picture, path):
  """Writes a uint8 [H, W, 3] array atomically (temp file + rename)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp"
  with open(tmp, "wb") as f:
    Image.fromarray(np.asarray(picture)).save(f, format="PNG")
  os.replace(tmp, path)


def save_gif(frames, path, duration_ms=80, final_hold=10):
  """Writes a list of uint8 [H, W, 3] frames as an animated GIF (last frame held)."""
  frames = [Image.fromarray(np.asarray(f)) for f in frames]
  frames += [frames[-1]] * final_hold
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  buf = io.BytesIO()
  frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                 duration=duration_ms, loop=0)
  with open(path, "wb") as f:
    f.write(buf.getvalue())


def random_shift(images, rng, max_shift: int):
  """Random translation of [B, H, W, C] images by up to max_shift pixels (zero pad + crop), one
  offset per image (the augmentation of the project's classifier and of lmm)."""
  import jax
  import jax.numpy as jnp
  b, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2, (0, 0)))
  offsets = jax.random.randint(rng, (b, 2), 0, 2 * max_shift + 1)
  crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c))
  return jax.vmap(crop)(padded, offsets)
