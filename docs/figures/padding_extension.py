"""X(i) for each padding: the signal 1 2 3 4 as a shift reads it. (A docs figure, run at build time.)"""

import matplotlib.pyplot as plt
import numpy as np
import jax.numpy as jnp
import jaxshift

signal = jnp.array([1.0, 2.0, 3.0, 4.0])
positions = np.arange(-6, 10)                  # where to read X
# One channel per position: channel c, shifted by -positions[c], holds X(positions[c]) at 0.
x = jnp.tile(signal[None, :, None], (1, 1, len(positions)))      # (N, L, C)
shifts = -jnp.asarray(positions, jnp.float32)[:, None]           # (C, 1)

fig, axes = plt.subplots(len(jaxshift.PADDINGS), 1, figsize=(6.4, 6.0), sharex=True)
for ax, padding in zip(axes, jaxshift.PADDINGS):
  read = jaxshift.shift(x, shifts, mode="integer", padding=padding)[0, 0]
  ax.axvspan(-0.5, 3.5, color="0.9")
  ax.stem(positions, read, basefmt=" ")
  ax.set_ylim(-0.5, 4.8)
  ax.set_ylabel(padding, rotation=0, ha="right", va="center")
  ax.set_yticks([])
axes[-1].set_xticks(positions)
axes[-1].set_xlabel("position i read (the array holds 0..3)")
fig.suptitle("X(i): the signal 1 2 3 4 as each padding extends it")
