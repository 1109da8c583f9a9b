"""The grain pipelines: determinism, per-epoch reshuffling, exact resume (get_state/set_state
and Orbax), process sharding equal to the global batch, eval padding and masks, text windows."""
from __future__ import annotations

import threading

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from gen_jax import data
from gen_jax.data import builders


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def batches_equal(a, b):
  return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


@pytest.fixture(scope="module")
def text_kw(data_dir, text_dir):
  return dict(data_dir=data_dir, manual_dir=text_dir[0], seq_len=16)


def test_train_batches_shapes_and_determinism(data_dir):
  kw = dict(batch_size=16, data_dir=data_dir)
  a = take(data.train_iterator("digits", seed=3, **kw), 4)
  b = take(data.train_iterator("digits", seed=3, **kw), 4)
  c = take(data.train_iterator("digits", seed=4, **kw), 4)
  assert_batches_equal(a, b)
  assert not batches_equal(a, c)
  assert a[0]["image"].shape == (16, 8, 8, 1) and a[0]["image"].dtype == np.uint8
  assert a[0]["label"].shape == (16,) and a[0]["label"].dtype == np.int32
  assert a[0]["image"].max() <= 16


def test_each_epoch_is_a_new_permutation_of_the_train_split(data_dir):
  """digits' 1,437 train images in batches of 479: epochs 0 and 1 each hold every example once,
  in different orders (epoch e: default_rng([seed, e]).permutation); batches run on past the epochs."""
  batches = take(data.train_iterator("digits", batch_size=479, seed=0, data_dir=data_dir), 7)
  images, labels = builders.digits_arrays()
  train = builders.digits_split_indices()["train"]
  as_rows = lambda im, lab: sorted(zip(im.reshape(len(im), -1).tolist(), lab.tolist()))
  truth = as_rows(images[train], labels[train])
  epochs = [[b for b in batches[3 * e:3 * e + 3]] for e in range(2)]
  for epoch in epochs:
    im = np.concatenate([b["image"] for b in epoch])
    lab = np.concatenate([b["label"] for b in epoch])
    assert as_rows(im, lab) == truth
  assert not batches_equal(epochs[0], epochs[1])
  assert batches[6]["image"].shape == (479, 8, 8, 1)


@pytest.mark.parametrize("name", ["digits", "text_file"])
def test_resume_with_get_state_set_state(data_dir, text_kw, name):
  kw = dict(text_kw) if name == "text_file" else dict(data_dir=data_dir)
  it = data.train_iterator(name, batch_size=8, seed=1, **kw)
  take(it, 5)
  state = it.get_state()
  expected = take(it, 4)
  fresh = data.train_iterator(name, batch_size=8, seed=1, **kw)
  fresh.set_state(state)
  assert_batches_equal(take(fresh, 4), expected)


def test_resume_with_orbax_checkpoint_manager(data_dir, tmp_path):
  it = data.train_iterator("digits", batch_size=32, seed=0, data_dir=data_dir)
  take(it, 7)
  with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
    mngr.save(7, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
  expected = take(it, 5)                      # 50 batches > one epoch: crosses into epoch 2
  expected += take(it, 40)[-3:]
  fresh = data.train_iterator("digits", batch_size=32, seed=0, data_dir=data_dir)
  with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
    restored = mngr.restore(mngr.latest_step(),
                            args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  got = take(restored["data"], 5)
  got += take(restored["data"], 40)[-3:]
  assert_batches_equal(got, expected)


@pytest.mark.parametrize("name,process_count", [("digits", 2), ("digits", 4), ("text_file", 2)])
def test_process_shards_concatenate_to_the_global_batch(data_dir, text_kw, name, process_count):
  kw = dict(text_kw) if name == "text_file" else dict(data_dir=data_dir, preprocess="binarize")
  global_batches = take(data.train_iterator(name, batch_size=8, seed=5, **kw), 3)
  shards = [take(data.train_iterator(name, batch_size=8, seed=5, process_index=p,
                                     process_count=process_count, **kw), 3)
            for p in range(process_count)]
  for step, batch in enumerate(global_batches):
    for k in batch:
      assert shards[0][step][k].shape[0] == 8 // process_count
      np.testing.assert_array_equal(np.concatenate([s[step][k] for s in shards]), batch[k])


def test_bad_sharding_arguments(data_dir):
  with pytest.raises(ValueError, match="multiple of process_count"):
    data.train_iterator("digits", batch_size=10, seed=0, data_dir=data_dir, process_count=4)
  with pytest.raises(ValueError, match="process_index"):
    data.train_iterator("digits", batch_size=8, seed=0, data_dir=data_dir, process_index=2, process_count=2)


def test_binarize_preprocess(data_dir):
  info = data.get_info("digits", data_dir=data_dir, preprocess="binarize")
  assert info.num_levels == 2
  raw = take(data.train_iterator("digits", batch_size=64, seed=2, data_dir=data_dir), 2)
  binary = take(data.train_iterator("digits", batch_size=64, seed=2, data_dir=data_dir,
                                    preprocess="binarize"), 2)
  for r, b in zip(raw, binary):
    np.testing.assert_array_equal(b["image"], (r["image"] >= 8.5).astype(np.uint8))
    np.testing.assert_array_equal(b["label"], r["label"])


@pytest.mark.parametrize("process_count", [1, 2, 3])
def test_eval_batches_cover_each_example_exactly_once(data_dir, process_count):
  """digits test (360 examples) in global batches of 48 (7 full + 1 with 24 real rows)."""
  truth = builders.digits_arrays()[0][builders.digits_split_indices()["test"]]
  per_process = [list(data.eval_batches("digits", batch_size=48, data_dir=data_dir, process_index=p,
                                        process_count=process_count))
                 for p in range(process_count)]
  assert {len(b) for b in per_process} == {8}               # every process, same number of batches
  rows = []
  for step in range(8):
    parts = [per_process[p][step] for p in range(process_count)]
    for part in parts:
      assert part["image"].shape == (48 // process_count, 8, 8, 1) and part["mask"].dtype == bool
    glob = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
    assert glob["mask"].sum() == (48 if step < 7 else 24)
    assert not np.any(glob["image"][~glob["mask"]])          # padding is zeros
    rows.append(glob["image"][glob["mask"]])
  np.testing.assert_array_equal(np.concatenate(rows), truth)


def test_text_eval_process_shards_concatenate_to_the_global_batch(text_kw):
  glob = list(data.eval_batches("text_file", batch_size=4, **text_kw))
  shards = [list(data.eval_batches("text_file", batch_size=4, process_index=p, process_count=2, **text_kw))
            for p in range(2)]
  assert len(shards[0]) == len(shards[1]) == len(glob)
  for k, batch in enumerate(glob):
    for key in ("tokens", "token_mask", "mask"):
      np.testing.assert_array_equal(np.concatenate([shards[0][k][key], shards[1][k][key]]), batch[key])


def test_eval_batches_max_examples(data_dir):
  batches = list(data.eval_batches("toy2d/eight_gaussians", batch_size=64, data_dir=data_dir,
                                   max_examples=100))
  assert len(batches) == 2 and [b["mask"].sum() for b in batches] == [64, 36]
  np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches])[:100],
                                builders.toy2d_arrays("eight_gaussians", "test")[:100])


def test_eval_unknown_split(data_dir):
  with pytest.raises(ValueError, match="splits"):
    list(data.eval_batches("digits", split="validation", batch_size=8, data_dir=data_dir))


def test_text_eval_windows_predict_each_token_once(text_kw, text_dir):
  """Targets tokens[:, 1:] under token_mask, read in order, are the validation text minus its
  first character; 'test' is an alias of 'validation'."""
  text = text_dir[1]
  validation = text[int(0.9 * len(text)):]
  info = data.get_info("text_file", **text_kw)
  for split in ("test", "validation"):
    batches = list(data.eval_batches("text_file", split=split, batch_size=4, **text_kw))
    tokens = np.concatenate([b["tokens"] for b in batches])
    token_mask = np.concatenate([b["token_mask"] for b in batches])
    mask = np.concatenate([b["mask"] for b in batches])
    assert tokens.shape[1:] == (17,) and token_mask.shape[1:] == (16,)
    assert mask.sum() == info.num_examples["test"] == -(-(len(validation) - 1) // 16)
    assert not token_mask[~mask].any()
    assert np.all(token_mask[mask][:-1])                     # only the last window is short
    targets = tokens[:, 1:][token_mask]
    assert "".join(info.vocab[t] for t in targets) == validation[1:]
    assert info.vocab[tokens[0, 0]] == validation[0]
    # Consecutive windows overlap by exactly one token (the context of the next window).
    np.testing.assert_array_equal(tokens[1:mask.sum(), 0], tokens[:mask.sum() - 1, 16])


def test_text_train_windows_decode_to_substrings_of_the_train_text(text_kw, text_dir):
  text = text_dir[1]
  train_text = text[:int(0.9 * len(text))]
  info = data.get_info("text_file", **text_kw)
  batches = take(data.train_iterator("text_file", batch_size=8, seed=0, **text_kw), 5)
  starts = set()
  for b in batches:
    assert b["tokens"].shape == (8, 17) and b["tokens"].dtype == np.int32
    for row in b["tokens"]:
      window = "".join(info.vocab[t] for t in row)
      assert window in train_text
      starts.add(window)
  assert len(starts) > 30                                   # random offsets, not one window repeated


def test_concurrent_preparation_under_the_file_lock(tmp_path):
  """Two threads preparing the same dataset in a fresh data_dir: one prepares, the other waits
  and reads the same data."""
  results, errors = {}, []

  def work(i):
    try:
      results[i] = next(iter(data.eval_batches("toy2d/swiss_roll", batch_size=16,
                                               data_dir=str(tmp_path))))["x"]
    except Exception as e:  # surfaced below
      errors.append(e)

  threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors, errors
  np.testing.assert_array_equal(results[0], results[1])
  np.testing.assert_array_equal(results[0], builders.toy2d_arrays("swiss_roll", "test")[:16])
