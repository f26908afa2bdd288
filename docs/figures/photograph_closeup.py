"""Close-up: active interpolation against sparse rounding. (A docs figure, run at build time.)"""

import matplotlib.pyplot as plt
import numpy as np
import jax.numpy as jnp
from sklearn.datasets import load_sample_image
import jaxshift

image = jnp.asarray(load_sample_image("china.jpg"), jnp.float32) / 255
crop = image[150:166, 250:266][None]          # a 16x16 corner of the roof
fig, axes = plt.subplots(1, 4, figsize=(9.6, 2.6))
panels = [("original", crop, "active"),
          ("active, +0.5 columns", jnp.array([[0.0, 0.5]] * 3), "active"),
          ("active, +1.5 columns", jnp.array([[0.0, 1.5]] * 3), "active"),
          ("sparse, +1.5 columns", jnp.array([[0.0, 1.5]] * 3), "sparse")]
for ax, (title, s, mode) in zip(axes, panels):
  img = crop if s is crop else jaxshift.shift(crop, s, mode=mode, padding="border")
  ax.imshow(np.clip(np.asarray(img[0]), 0, 1), interpolation="nearest")
  ax.set_title(title)
  ax.axis("off")
