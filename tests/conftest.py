"""Test configuration: 8 CPU devices, strict promotion, shared oracles."""

import jax

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_numpy_rank_promotion", "raise")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.ndimage  # noqa: E402

import jaxshift  # noqa: E402

SCIPY_MODE = {"zeros": "grid-constant", "border": "nearest",
              "periodic": "grid-wrap", "reflect": "mirror",
              "symmetric": "reflect"}


def scipy_shift(x, shifts, *, mode="active", padding="zeros", channel_axis=-1,
                strides=1):
  """Independent oracle: `scipy.ndimage.shift` channel by channel (float64)."""
  x = np.asarray(x, np.float64)
  shifts = np.asarray(shifts, np.float64)
  ndim = shifts.shape[1]
  if mode in ("sparse", "integer"):
    shifts = np.round(shifts)
  cax = channel_axis % x.ndim
  xc = np.moveaxis(x, cax, -1)  # (..., *spatial, C)
  if cax != x.ndim - 1:  # channels-first: spatial axes follow the channel
    xc = np.moveaxis(x, cax, -1)
  strides = (strides,) * ndim if np.isscalar(strides) else tuple(strides)
  batch = xc.shape[:-1 - ndim]
  flat = xc.reshape((-1,) + xc.shape[-1 - ndim:])
  outs = []
  for n in range(flat.shape[0]):
    chans = []
    for c in range(flat.shape[-1]):
      y = scipy.ndimage.shift(flat[n, ..., c], shifts[c], order=1,
                              prefilter=False, mode=SCIPY_MODE[padding])
      chans.append(y[tuple(slice(None, None, t) for t in strides)])
    outs.append(np.stack(chans, -1))
  out_sp = tuple(-(-xc.shape[len(batch) + a] // strides[a])
                 for a in range(ndim))
  out = np.stack(outs, 0) if outs else np.zeros(
      (0,) + out_sp + (x.shape[cax],))
  out = out.reshape(batch + out_sp + (x.shape[cax],))
  return np.moveaxis(out, -1, cax)


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def has_gpu():
  return jax.default_backend() == "gpu"


requires_cuda_kernels = pytest.mark.skipif(
    not (jax.default_backend() == "gpu" and jaxshift.kernels_available("cuda")),
    reason="needs a GPU and jaxshift's CUDA kernels")
