"""The distributions: the sdist and wheel built the way a user builds them, the wheel installed into a fresh virtual
environment, and used from outside the source tree.

A packaging mistake (a library or data file left out of the wheel, a module
missing from ``wheel.packages``, broken metadata) fails here, not on a user's
machine. The build is CPU-only, without the emulated CUDA library and
unoptimised and in the baseline instruction set only (``JAXSHIFT_EMULATOR=OFF``,
``cmake.build-type=Debug``, ``-O0 -DJAXSHIFT_BASELINE_ONLY``, as the
sanitized library: a packaging check, a fraction of the compile time); the
fresh environment
borrows this environment's dependencies (jax, flax, ...) through a ``.pth``
line instead of downloading them again, and holds jaxshift only from the
wheel.
"""

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

pytest.importorskip("build", reason="the test extra's 'build' is not installed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMOKE = textwrap.dedent("""
    import os, sys
    import jax, jax.numpy as jnp, numpy as np
    import jaxshift
    from flax import nnx
    import jaxshift.nn as jsnn

    here = os.path.realpath(jaxshift.__file__)
    assert here.startswith(os.path.realpath(sys.prefix)), here   # the wheel's copy
    assert jaxshift.kernels_available("cpu"), jaxshift.build_info()
    assert "cpu: built" in jaxshift.build_info(), jaxshift.build_info()

    x = jax.random.normal(jax.random.key(0), (2, 6, 5, 3))
    s = jnp.array([[0.3, -1.2], [0.0, 2.5], [-0.7, 0.4]])
    def loss(x, s, impl):
      return jnp.sum(jnp.sin(jaxshift.shift(x, s, impl=impl)))
    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), static_argnums=2)
    (v_ffi, (dx_ffi, ds_ffi)) = grad(x, s, "ffi")
    (v_xla, (dx_xla, ds_xla)) = grad(x, s, "xla")
    np.testing.assert_allclose(v_ffi, v_xla, rtol=1e-5)
    np.testing.assert_allclose(dx_ffi, dx_xla, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds_ffi, ds_xla, rtol=1e-5, atol=1e-5)

    layer = jsnn.Shift(3, mode="sparse", strides=2, rngs=nnx.Rngs(0))
    assert layer(x).shape == (2, 3, 3, 3)
    print("wheel smoke test passed:", jaxshift.__version__, here)
""")


def _run(cmd, **kwargs):
  result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
  assert result.returncode == 0, (f"{cmd}\n{result.stdout[-3000:]}\n"
                                  f"{result.stderr[-3000:]}")
  return result


def test_wheel_installs_into_a_fresh_venv_and_runs(tmp_path):
  dist = tmp_path / "dist"
  env = dict(os.environ, JAXSHIFT_CUDA="OFF", JAXSHIFT_SANITIZE="OFF", JAXSHIFT_EMULATOR="OFF")
  # `python -m build`: the sdist, then the wheel built from the sdist (so a
  # file the sdist leaves out fails the wheel build too). Unoptimised and
  # without debug information (-g is a third of an -O0 compile): a packaging
  # check, not the kernels users get.
  _run([sys.executable, "-m", "build", "--outdir", str(dist),
        f"-Cbuild-dir={tmp_path / 'build'}", "-Ccmake.build-type=Debug",
        "-Ccmake.define.CMAKE_CXX_FLAGS_DEBUG=-O0 -DJAXSHIFT_BASELINE_ONLY", ROOT],
       env=env, timeout=900)
  (wheel,) = dist.glob("jaxshift-*-py3-none-*.whl")
  (sdist,) = dist.glob("jaxshift-*.tar.gz")

  with zipfile.ZipFile(wheel) as zf:
    names = set(zf.namelist())
    metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
  for required in ("jaxshift/__init__.py", "jaxshift/py.typed", "jaxshift/nn/__init__.py",
                   "jaxshift/nn/linen.py", "jaxshift/_src/dispatch.py",
                   "jaxshift/libjaxshift_cpu.so", "jaxshift/_build_info.txt"):
    assert required in names, (required, sorted(names))
  assert not any(n.startswith(("tests/", "docs/", "xla_ffi/")) for n in names)
  assert "Requires-Dist: jax>=0.10.2" in metadata
  assert "Classifier: Programming Language :: Python :: 3" in metadata
  _run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
       timeout=120)

  venv = tmp_path / "venv"
  _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
  python = str(venv / "bin" / "python")
  target = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                ).stdout.strip()
  # The dependencies, from this environment (a path line; its .pth files, such as
  # the editable jaxshift's, are not processed, so jaxshift comes from the wheel).
  with open(os.path.join(target, "_deps.pth"), "w") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")
  _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
        "--no-index", "-q", str(wheel)], timeout=300)
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAXSHIFT_", "PYTHON"))}
  result = _run([python, "-c", SMOKE], cwd=str(tmp_path), env=env, timeout=300)
  assert "wheel smoke test passed" in result.stdout
