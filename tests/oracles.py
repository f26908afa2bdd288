"""Independent oracles the tests compare jaxshift against (none is ours).

`scipy_shift` is `scipy.ndimage.shift` channel by channel, in float64; the
other oracles (central differences, the adjoint identity) live with the
tests that use them.
"""

import numpy as np
import scipy.ndimage

SCIPY_MODE = {"zeros": "grid-constant", "border": "nearest",
              "periodic": "grid-wrap", "reflect": "mirror",
              "symmetric": "reflect"}


def scipy_shift(x, shifts, *, mode="active", padding="zeros", channel_axis=-1,
                strides=1):
  """`scipy.ndimage.shift` of every channel by its shift (float64).

  `x` is channels-last or channels-first (`channel_axis`), with any batch
  axes; sparse and integer modes round half to even first (`np.round`).
  """
  x = np.asarray(x, np.float64)
  shifts = np.asarray(shifts, np.float64)
  ndim = shifts.shape[1]
  if mode in ("sparse", "integer"):
    shifts = np.round(shifts)
  cax = channel_axis % x.ndim
  xc = np.moveaxis(x, cax, -1)  # (..., *spatial, C)
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


def central_difference(f, s, eps=1e-6):
  """d f / d s by central differences, entry by entry (float64).

  At a kink of a piecewise-linear f this is exactly the mean of the two
  one-sided derivatives, which is what docs/semantics.md asks of the shift
  gradient at a lattice point.
  """
  s = np.asarray(s, np.float64)
  out = np.zeros_like(s)
  for idx in np.ndindex(s.shape):
    e = np.zeros_like(s)
    e[idx] = eps
    out[idx] = (f(s + e) - f(s - e)) / (2 * eps)
  return out
