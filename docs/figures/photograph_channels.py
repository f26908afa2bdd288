"""Red and blue channels of a photograph shifted by 6.5 pixels. (A docs figure, run at build time.)"""

import matplotlib.pyplot as plt
import numpy as np
import jax.numpy as jnp
from sklearn.datasets import load_sample_image
import jaxshift

image = jnp.asarray(load_sample_image("china.jpg"), jnp.float32) / 255   # (H, W, C=3)
x = image[None]                                                      # (N, H, W, C), NHWC
shifts = jnp.array([[-6.5, -6.5],    # red:   up and left   (rows, columns)
                    [0.0, 0.0],      # green: still
                    [6.5, 6.5]])     # blue:  down and right

fig, axes = plt.subplots(1, 3, figsize=(9.6, 2.6))
panels = [("original", x),
          ("active shift, zeros padding", jaxshift.shift(x, shifts)),
          ("active shift, reflect padding", jaxshift.shift(x, shifts, padding="reflect"))]
for ax, (title, img) in zip(axes, panels):
  ax.imshow(np.clip(np.asarray(img[0]), 0, 1))
  ax.set_title(title)
  ax.axis("off")
