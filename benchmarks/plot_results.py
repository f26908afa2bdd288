"""Bar charts of committed benchmark results (the tables ``bench.py`` prints).

Reads the first table of a ``benchmarks/results/*.md`` file written from
``bench.py``'s output and draws each implementation's time as a multiple of
the copy of the same bytes measured in the same run (the floor: 1x), on a log
axis. The docs' performance page calls `plot` at build time, so the chart is
always the committed numbers.

  python benchmarks/plot_results.py benchmarks/results/FILE.md out.png
"""

import os
import sys

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# bench.py's column -> the legend's name.
FORWARD = {"kernel fwd": "jaxshift kernel", "jnp fwd": "jaxshift jnp path",
           "4-gather fwd": "plain four-gather jnp", "dw3x3 fwd": "depthwise 3x3 conv"}


def read_table(path):
  """The first markdown table in ``path`` whose header has ``copy``: a list of row dicts."""
  with open(path, encoding="utf-8") as f:
    lines = [line.strip() for line in f]
  for i, line in enumerate(lines):
    cells = [c.strip() for c in line.strip("|").split("|")]
    if line.startswith("|") and "copy" in cells:
      rows = []
      for body in lines[i + 2:]:
        if not body.startswith("|"):
          break
        rows.append(dict(zip(cells, (c.strip() for c in body.strip("|").split("|")))))
      return rows
  raise ValueError(f"{path}: no bench.py table (a header with a 'copy' column)")


def plot(ax, path, title, rows_filter=None):
  """Draw one results file's forward times / copy as grouped bars on ``ax``."""
  rows = [r for r in read_table(path) if rows_filter is None or rows_filter(r)]
  labels = [f"{r['dtype']} {r['layout']}\n{r['mode']}" for r in rows]
  width = 0.8 / len(FORWARD)
  for k, (column, name) in enumerate(FORWARD.items()):
    ratios = [float(r[column]) / float(r["copy"]) for r in rows]
    ax.bar(np.arange(len(rows)) + (k - (len(FORWARD) - 1) / 2) * width, ratios,
           width, label=name)
  ax.axhline(1.0, color="k", lw=0.8, ls="--", label="copy (the floor)")
  ax.set_yscale("log")
  ax.set_xticks(np.arange(len(rows)), labels, fontsize=6.5)
  ax.set_ylabel("forward time / copy")
  ax.set_title(title, fontsize=9)


def main(argv):
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  path, out = argv
  fig, ax = plt.subplots(figsize=(8, 3))
  plot(ax, path, os.path.basename(path))
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out, dpi=120)


if __name__ == "__main__":
  main(sys.argv[1:])
