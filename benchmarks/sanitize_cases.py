"""Drives every kernel variant once on small inputs, for compute-sanitizer.

  compute-sanitizer --tool memcheck --kernel-name regex:jaxshift \
      python benchmarks/sanitize_cases.py

Checks each result against the jnp path and exits non-zero on a mismatch, so
a run proves both "no findings" and "right answers" for the same launches.
"""

import itertools
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxshift


def main():
  platform = "cuda" if jax.default_backend() == "gpu" else "cpu"
  assert jaxshift.kernels_available(platform), platform
  rng = np.random.default_rng(0)
  bad = 0
  cases = itertools.product(jaxshift.MODES, jaxshift.PADDINGS, [True, False],
                            [jnp.float32, jnp.bfloat16, jnp.float16], [1, 2, 3])
  for mode, padding, channels_last, dtype, ndim in cases:
    lengths = [7, 5, 6][:ndim]
    c = 5
    shape = (2, *lengths, c) if channels_last else (2, c, *lengths)
    x = jnp.asarray(rng.normal(size=shape), dtype)
    s = jnp.asarray(rng.uniform(-4, 4, size=(c, ndim)).round(1), jnp.float32)
    cax = -1 if channels_last else 1
    strides = (1, 2, 3)[:ndim]
    out = {}
    for impl in ("ffi", "xla"):
      f = lambda x, s: jaxshift.shift(x, s, mode=mode, padding=padding,
                                      channel_axis=cax, strides=strides,
                                      impl=impl)
      loss = lambda x, s: jnp.sum(jnp.cos(f(x, s).astype(jnp.float32)))
      out[impl] = [np.asarray(a, np.float32) for a in
                   (f(x, s),) + jax.grad(loss, (0, 1))(x, s)]
    tol = 1e-4 if dtype == jnp.float32 else 3e-2
    for a, b in zip(out["ffi"], out["xla"]):
      if not np.allclose(a, b, rtol=tol, atol=tol * max(1, np.abs(b).max())):
        bad += 1
        print("MISMATCH", mode, padding, channels_last, dtype.__name__, ndim,
              float(np.abs(a - b).max()))
  print(f"sanitize_cases: {bad} mismatches")
  sys.exit(1 if bad else 0)


if __name__ == "__main__":
  main()
