"""The documentation builds with warnings as errors, and its API check bites.

The build is the README's (``sphinx-build -W -b html docs ...``) in a fresh
process; the pages' ``>>>`` examples run as doctests in the same pytest run
(``--doctest-glob=*.md``).
"""

import importlib.util
import os
import subprocess
import sys
import types

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed")
pytest.importorskip("myst_parser", reason="the docs extra is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def test_docs_build_without_warnings_and_hold_their_figures(tmp_path):
  out = tmp_path / "html"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(
      [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
       "-d", str(tmp_path / "doctrees"), DOCS, str(out)],
      capture_output=True, text=True, env=env, timeout=600, check=False)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
  # Every page of the toctree, the API page of the main entry point, and the
  # figures drawn by code at build time (non-trivial PNGs, referenced by their pages).
  for page in ("index", "api", "semantics", "performance", "changelog",
               "guide/kinds", "guide/padding", "guide/photograph",
               "guide/transformations", "guide/recipes", "guide/building",
               "_autosummary/jaxshift.shift", "_autosummary/jaxshift.nn.Shift"):
    assert (out / f"{page}.html").is_file(), page
  figures = sorted(p.name for p in (out / "_images").glob("*.png"))
  assert figures == sorted(f"{n[:-3]}.png" for n in os.listdir(os.path.join(DOCS, "figures"))
                           if n.endswith(".py")), figures
  for name in figures:
    assert (out / "_images" / name).stat().st_size > 10_000, name
  padding = (out / "guide" / "padding.html").read_text()
  assert "padding_extension.png" in padding and "padding_fractional.png" in padding
  shift_page = (out / "_autosummary" / "jaxshift.shift.html").read_text()
  assert "channel_axis" in shift_page and "Raises" in shift_page
  # No raw MyST or reST markup left in a rendered page.
  for page in ("index", "guide/kinds", "guide/recipes", "api"):
    text = (out / f"{page}.html").read_text()
    assert "{func}" not in text and "```" not in text and ".. autosummary" not in text, page


def _conf():
  spec = importlib.util.spec_from_file_location("jaxshift_docs_conf",
                                                os.path.join(DOCS, "conf.py"))
  conf = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(conf)
  return conf


def test_api_check_names_every_undocumented_public_name(monkeypatch):
  monkeypatch.setattr(sys, "path", list(sys.path))  # conf.py prepends benchmarks/
  conf = _conf()
  names = [name for name, _ in conf.public_names()]
  assert "jaxshift.shift" in names and "jaxshift.nn.Shift" in names
  assert "jaxshift.nn.linen.Shift" in names and "jaxshift.initializers.uniform" in names
  documented = set(names) - {"jaxshift.temporal_shift", "jaxshift.nn.freeze"}
  domain = types.SimpleNamespace(objects=dict.fromkeys(documented))
  env = types.SimpleNamespace(get_domain=lambda name: domain)
  warned = []
  # Sphinx's logger is a LoggerAdapter; capture what it is asked to warn.
  logger = conf.logging.getLogger("jaxshift.coverage")
  monkeypatch.setattr(type(logger), "warning",
                      lambda self, msg, *a, **k: warned.append(msg))
  conf.check_api_coverage(None, env)
  assert len(warned) == 2, warned
  assert any("jaxshift.temporal_shift " in w for w in warned)
  assert any("jaxshift.nn.freeze " in w for w in warned)
