"""Sphinx configuration of jaxshift's documentation.

Build: ``pip install -e ".[docs]"`` then
``sphinx-build -W -b html docs docs/_build/html`` (``-W``: any warning fails,
as in CI, where ``tests/test_docs.py`` runs the same command). Figures are
made by the code in the pages at build time (matplotlib's ``plot`` directive);
the pages' ``>>>`` examples run as doctests under ``python -m pytest``.
"""

import importlib
import inspect
import os
import sys

from sphinx.util import logging

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))  # plot_results.py

import jaxshift  # noqa: E402  (after sys.path is set)

project = "jaxshift"
author = "the jaxshift authors"
copyright = "2026, the jaxshift authors"  # noqa: A001  (Sphinx's name)
release = version = jaxshift.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "matplotlib.sphinxext.plot_directive",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

smartquotes = False  # keep "--flags" and quotes in the results files as written
html_theme = "furo"
html_title = f"jaxshift {release}"

autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

plot_basedir = HERE  # figure scripts are named relative to docs/
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_rcparams = {"figure.autolayout": True, "font.size": 9}
plot_pre_code = ""  # each figure script (docs/figures/) imports what it uses

# Cross-references into jax's and flax's docs. Each inventory is tried online
# first, then from docs/_inventories/, a small inventory of the jax and flax
# names these pages cite (made by docs/_inventories/make.py), so an offline
# build (CI has no network but the package registries) resolves them too.
intersphinx_mapping = {
    "jax": ("https://docs.jax.dev/en/latest", (None, "_inventories/jax.inv")),
    "flax": ("https://flax.readthedocs.io/en/latest", (None, "_inventories/flax.inv")),
    "numpy": ("https://numpy.org/doc/stable", (None, "_inventories/numpy.inv")),
}
intersphinx_timeout = 5

# The public names: every one must have a page in the API reference.
PUBLIC_MODULES = ("jaxshift", "jaxshift.initializers", "jaxshift.nn",
                  "jaxshift.nn.linen")


def public_names():
  """``(module.name, object)`` for every name a user can import."""
  for module_name in PUBLIC_MODULES:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:  # a module without __all__: its public classes/functions
      names = [n for n, v in vars(module).items()
               if not n.startswith("_") and getattr(v, "__module__", None) == module_name]
    for name in names:
      yield f"{module_name}.{name}", getattr(module, name)


def check_api_coverage(app, env):
  """Fail the build (a warning, under -W) for an undocumented public name."""
  logger = logging.getLogger("jaxshift.coverage")
  documented = set(env.get_domain("py").objects)
  for full_name, obj in public_names():
    if full_name not in documented:
      logger.warning(f"public name {full_name} is missing from the API "
                     "reference (docs/api.md)")
    elif (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj):
      logger.warning(f"public name {full_name} has no docstring")


def setup(app):
  app.connect("env-check-consistency", check_api_coverage)
