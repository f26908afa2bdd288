"""jaxshift in one minute: jit, vmap and grad of a learned per-channel shift.

Builds smooth random images, moves each channel by a known sub-pixel offset,
then recovers those offsets by gradient descent on an active shift layer, and
prints the true and recovered offsets side by side.

  python examples/quickstart.py
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxshift


def smooth_images(key, n, size, channels):
  """Random images smoothed by a Gaussian: sub-pixel shifts are learnable."""
  noise = jax.random.normal(key, (n, size, size, channels))
  k = jnp.exp(-0.5 * (jnp.arange(-6, 7) / 2.5) ** 2)
  k = k / k.sum()
  blur = lambda v: jnp.convolve(v, k, mode="same")
  for axis in (1, 2):
    noise = jnp.apply_along_axis(blur, axis, noise)
  return noise / noise.std()


def main():
  print(f"jax {jax.__version__} on {jax.default_backend()}; compiled kernels: "
        f"cpu={jaxshift.kernels_available('cpu')} "
        f"cuda={jaxshift.kernels_available('cuda')}")
  channels = 6
  x = smooth_images(jax.random.key(0), 16, 32, channels)
  true = jnp.array([[0.3, -1.2], [2.5, 0.0], [-0.7, 0.7], [1.0, 1.0],
                    [0.0, -2.25], [-1.6, 0.4]])
  target = jaxshift.shift(x, true, padding="border")  # what we want to match

  @jax.jit
  def step(shifts):
    loss = lambda s: jnp.mean(
        (jaxshift.shift(x, s, padding="border") - target) ** 2)
    value, grad = jax.value_and_grad(loss)(shifts)
    return shifts - 2.0 * grad, value

  shifts = jnp.zeros_like(true)  # start at the identity (a lattice point)
  t0 = time.perf_counter()
  for i in range(300):
    shifts, value = step(shifts)
    if i % 100 == 0:
      print(f"step {i:3d}  loss {float(value):.5f}")
  jax.block_until_ready(shifts)
  print(f"300 steps in {time.perf_counter() - t0:.2f} s; final loss "
        f"{float(value):.2e}\n")
  print("channel  true (dy, dx)      recovered (dy, dx)")
  for c in range(channels):
    print(f"{c:7d}  ({true[c, 0]:+.2f}, {true[c, 1]:+.2f})     "
          f"({shifts[c, 0]:+.3f}, {shifts[c, 1]:+.3f})")
  err = float(jnp.abs(shifts - true).max())
  print(f"\nlargest error: {err:.4f} px")

  # vmap: a different set of shifts per example, one kernel launch.
  per_example = jax.random.uniform(jax.random.key(1), (16, channels, 2),
                                   minval=-1, maxval=1)
  y = jax.jit(jax.vmap(jaxshift.shift))(x, per_example)
  print(f"vmap over (x, shifts): {x.shape} -> {y.shape}")
  # The grouped shift of Wu et al.: fixed integer offsets, no multiplications.
  grouped = jaxshift.grouped_shifts(9 * 2, kernel_size=3)
  z = jaxshift.shift(jnp.ones((1, 8, 8, 18)), grouped, mode="integer")
  print(f"grouped shift: {grouped.shape[0]} channels, offsets "
        f"{sorted(set(map(tuple, np.asarray(grouped, int).tolist())))[:3]}...,"
        f" output {z.shape}")
  if err > 0.05:
    raise SystemExit("did not recover the shifts to 0.05 px")


if __name__ == "__main__":
  main()
