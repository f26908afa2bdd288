"""Forward time / copy, from the committed benchmark results. (A docs figure, run at build time.)"""

import matplotlib.pyplot as plt
import os

import plot_results  # benchmarks/plot_results.py (docs/conf.py puts it on the path)

results = plot_results.RESULTS
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), width_ratios=(1, 2))
plot_results.plot(axes[0], os.path.join(results, "2026-11-23-cpu-2core-0ff44a0.md"),
                  "CPU, 2 cores, (8, 32, 32, 64)")
plot_results.plot(axes[1], os.path.join(results, "2026-11-23-h100-walk-v1.md"),
                  "H100, (64, 56, 56, 256)", lambda r: r["shape (NHWC sizes)"] == "64x56x56x256")
axes[1].legend(fontsize=7, loc="upper right")
