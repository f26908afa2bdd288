"""The example scripts: smoke runs, the CIFAR-10 loader, checkpoints."""

import pathlib
import pickle
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxshift.nn as jsnn

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import common  # noqa: E402
import deploy_litert  # noqa: E402
import train_cifar  # noqa: E402
import train_digits  # noqa: E402


def test_train_digits_two_epochs(tmp_path, capsys):
  acc = train_digits.main(["--epochs", "2", "--width", "8", "--models",
                           "depthwise", "sparse", "--out", str(tmp_path)])
  assert set(acc) == {"depthwise", "sparse"}
  assert all(a > 0.5 for a in acc.values()), acc  # 10 classes: chance is 0.1
  out = capsys.readouterr().out
  assert "kernels: cpu: built" in out  # what the install built, and why
  assert "| shift (sparse)" in out and "zero shifts" in out
  for f in ("results.md", "shifts_sparse.png"):
    assert (tmp_path / f).stat().st_size > 0


def _write_cifar(folder: pathlib.Path, rng, batches=(("data_batch_1", 20),
                                                      ("data_batch_2", 12),
                                                      ("test_batch", 16))):
  """Batches in the CIFAR-10 python format: pickled dicts with bytes keys."""
  folder.mkdir(parents=True)
  written = {}
  for name, n in batches:
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).tolist()
    with open(folder / name, "wb") as f:
      pickle.dump({b"batch_label": name.encode(), b"labels": labels,
                   b"data": images.reshape(n, 3072),
                   b"filenames": [b"x.png"] * n}, f)
    written[name] = (images, np.asarray(labels))
  return written


def test_cifar_loader_reads_the_python_batches(tmp_path):
  written = _write_cifar(tmp_path / "cifar-10-batches-py",
                         np.random.default_rng(0))
  x_train, y_train, x_test, y_test = train_cifar.load_cifar10(tmp_path)
  assert x_train.shape == (32, 32, 32, 3) and x_train.dtype == np.uint8
  assert x_test.shape == (16, 32, 32, 3)
  images, labels = written["data_batch_2"]
  # Pixel (row 5, col 7) of channel 2 of the first image of batch 2.
  assert x_train[20, 5, 7, 2] == images[0, 2, 5, 7]
  np.testing.assert_array_equal(y_train[20:], labels)
  np.testing.assert_array_equal(x_test.transpose(0, 3, 1, 2),
                                written["test_batch"][0])


def test_cifar_loader_missing_data(tmp_path):
  with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
    train_cifar.load_cifar10(tmp_path)


def test_cifar_augment_keeps_shape_and_content():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 32, 32, 3)).astype(np.float32)
  y = train_cifar.augment(rng, x)
  assert y.shape == x.shape
  # Every output is a padded crop (possibly flipped) of its input: a 24x24
  # centre window of the input appears somewhere in it.
  for a, b in zip(x, y):
    hits = [np.array_equal(a[4:28, 4:28], c[i:i + 24, j:j + 24])
            for c in (b, b[:, ::-1]) for i in range(9) for j in range(9)]
    assert any(hits)


def test_train_cifar_runs_on_tiny_data(tmp_path, capsys):
  """The reported accuracy is the saved model's: restored from its
  checkpoint and evaluated on the test batch here, it must give the same
  number (a checkpoint, table or evaluation bug breaks the equality)."""
  data = _write_cifar(tmp_path / "data", np.random.default_rng(1))
  train_cifar.main(["--data-dir", str(tmp_path / "data"), "--depth", "8",
                    "--epochs", "1", "--batch-size", "16", "--models",
                    "sparse", "--out", str(tmp_path / "out")])
  out = capsys.readouterr().out
  # The run's own row, with the accuracy it measured (the published rows
  # beside them are constants of the script, not results).
  row = next(line for line in out.splitlines()
             if "jaxshift: ShiftResNet (sparse)-8" in line)
  printed = float(re.search(r"\|\s*(\d+\.\d\d)%\s*\|", row).group(1))
  model = common.restore_checkpoint(
      tmp_path / "out" / "checkpoint_sparse",
      common.build_model("sparse", 8, expansion=3, rngs=nnx.Rngs(0)))
  images, labels = data["test_batch"]
  x_test = train_cifar.normalize(images.transpose(0, 2, 3, 1))
  assert printed == round(100 * common.accuracy(model, x_test, labels), 2)
  results = (tmp_path / "out" / "results.md").read_text()
  assert "jaxshift: ShiftResNet (sparse)-8" in results


def test_checkpoint_round_trip(tmp_path):
  model = jsnn.ShiftResNet(8, mode="sparse", rngs=nnx.Rngs(0))
  # Running statistics that are not their initial values, as after training.
  stats = nnx.state(model, nnx.BatchStat)
  nnx.update(model, jax.tree.map(lambda v: v + 0.25, stats))
  common.save_checkpoint(tmp_path / "ckpt", model)
  other = jsnn.ShiftResNet(8, mode="sparse", rngs=nnx.Rngs(9))
  assert not common.same_state(other, model)
  restored = common.restore_checkpoint(tmp_path / "ckpt", other)
  assert common.same_state(restored, model)
  assert float(restored.blocks[1].shift.shifts[...].std()) > 0


def test_make_optimizer_treats_shifts_apart():
  """Shifts get their own transformation (here: frozen), weights theirs."""
  import optax
  model = jsnn.ShiftResNet(8, rngs=nnx.Rngs(0))
  opt = common.make_optimizer(model, optax.sgd(0.1), optax.set_to_zero())
  before_s = model.blocks[0].shift.shifts[...]
  before_w = model.head.kernel[...]
  x, y = jnp.ones((2, 8, 8, 3)), jnp.array([1, 2])
  common.train_step(model, opt, x, y, jnp.float32(0.0))
  np.testing.assert_array_equal(model.blocks[0].shift.shifts[...], before_s)
  assert not np.allclose(model.head.kernel[...], before_w)


@pytest.mark.skipif(__import__("jax").device_count() < 8,
                    reason="needs 8 (CPU) devices")
def test_train_sharded_two_steps_match_one_device(capsys):
  import train_sharded
  sharded = train_sharded.main(["--steps", "2", "--data", "4", "--model", "2",
                                "--width", "8"])
  out = capsys.readouterr().out
  assert "mesh {'data': 4, 'model': 2}" in out and "P('model', None)" in out
  single = train_sharded.main(["--steps", "2", "--data", "1", "--model", "1",
                               "--width", "8"])
  np.testing.assert_allclose(sharded, single, rtol=2e-4)


def test_quickstart_recovers_the_shifts(capsys):
  import quickstart
  quickstart.main()  # raises SystemExit if the error exceeds 0.05 px
  assert "largest error" in capsys.readouterr().out


def test_video_tsm_runs_online_as_offline(capsys):
  import video_tsm
  acc, gap = video_tsm.main(["--epochs", "1", "--clips", "64", "--width",
                             "8", "--batch-size", "16"])
  assert set(acc) == {"TSM (online, right)", "no shift"}
  assert gap < 1e-4  # frame-by-frame logits == offline logits
  assert "online (frame by frame)" in capsys.readouterr().out


def test_video_clips_move_one_pixel_a_frame_in_their_direction():
  import video_tsm
  clips, labels = video_tsm.make_clips(16, seed=1)
  for clip, label in zip(clips, labels):
    dy, dx = video_tsm.DIRECTIONS[label]
    for t in range(1, video_tsm.FRAMES):
      np.testing.assert_array_equal(
          np.roll(clip[t - 1], (dy, dx), axis=(0, 1)), clip[t])


def test_deploy_litert_converts_an_active_model_exactly(capsys):
  """examples/deploy_litert.py on a frozen active ShiftResNet (4 epochs):
  LiteRT float logits within 1e-4 of JAX (so the same accuracy), int8
  accuracy within 2 points of float, builtin ops only and no gather (the
  static weighted form), and the online TSM block frame by frame in LiteRT
  equal to the offline logits."""
  out = deploy_litert.main(["--modes", "active", "--epochs", "4"])
  (row,) = out["rows"]
  assert row["max_diff"] <= 1e-4, row
  assert row["float"] == row["jax"] and row["jax"] > 0.8, row
  assert abs(row["int8"] - row["float"]) <= 0.02, row
  for ops in (row["ops_float"], row["ops_int8"]):
    assert deploy_litert.builtin_only(ops) and "GATHER_ND" not in ops, ops
  assert "QUANTIZE" in row["ops_int8"] and "CONV_2D" in row["ops_int8"]
  assert out["tsm"] <= 1e-4
  assert "LiteRT float acc" in capsys.readouterr().out


def test_segment_sharded_matches_one_device(capsys):
  """The 3-D net trained split over a 2x2x2 mesh: halos only (no gather),
  and the loss curve of one device."""
  import segment_sharded  # noqa: E402
  split, whole, counts = segment_sharded.main(["--steps", "2", "--size", "16",
                                               "--width", "4", "--depth", "1"])
  np.testing.assert_allclose(split, whole, rtol=1e-5)
  assert split[-1] < split[0]
  assert counts["collective-permute"] > 0 and counts["all-gather"] == 0
  assert "largest loss difference" in capsys.readouterr().out
