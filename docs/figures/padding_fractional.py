"""A signal shifted by +1.5 (active) under each padding. (A docs figure, run at build time.)"""

import matplotlib.pyplot as plt
import jax.numpy as jnp
import jaxshift

signal = jnp.array([1.0, 3.0, 2.0, 4.0, 3.5, 1.0])
x = signal[None, :, None]
fig, axes = plt.subplots(1, len(jaxshift.PADDINGS), figsize=(9.0, 2.0), sharey=True)
for ax, padding in zip(axes, jaxshift.PADDINGS):
  moved = jaxshift.shift(x, jnp.array([[1.5]]), padding=padding)[0, :, 0]
  ax.plot(signal, "o-", color="0.6", label="x")
  ax.plot(moved, "o-", label="shifted by +1.5")
  ax.set_title(padding)
  ax.set_xticks(range(len(signal)))
axes[0].legend(loc="lower left", fontsize=7)
