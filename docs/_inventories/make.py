"""Write the offline intersphinx inventories (``jax.inv``, ``flax.inv``, ``numpy.inv``).

The docs try each project's online inventory first (``docs/conf.py``); these
small files, listing only the jax, flax and numpy names jaxshift's pages and
docstrings cite, are the fallback where there is no network (CI). The URIs are
the projects' documented page scheme; an online build uses the real
inventories instead. Run ``python docs/_inventories/make.py`` after citing a
new name.
"""

import os
import zlib

# (name, role, uri relative to the project's root, "$" = the name)
INVENTORIES = {
    "jax": [
        ("jax.Array", "class", "_autosummary/jax.Array.html#$"),
        ("jax.jit", "function", "_autosummary/jax.jit.html#$"),
        ("jax.grad", "function", "_autosummary/jax.grad.html#$"),
        ("jax.vjp", "function", "_autosummary/jax.vjp.html#$"),
        ("jax.vmap", "function", "_autosummary/jax.vmap.html#$"),
        ("jax.custom_vjp", "class", "_autosummary/jax.custom_vjp.html#$"),
        ("jax.make_mesh", "function", "_autosummary/jax.make_mesh.html#$"),
        ("jax.shard_map", "function", "_autosummary/jax.shard_map.html#$"),
        ("jax.sharding.NamedSharding", "class", "jax.sharding.html#$"),
        ("jax.sharding.PartitionSpec", "class", "jax.sharding.html#$"),
        ("jax.export.export", "function", "_autosummary/jax.export.export.html#$"),
        ("jax.ffi.ffi_call", "function", "_autosummary/jax.ffi.ffi_call.html#$"),
        ("jax.numpy.roll", "function", "_autosummary/jax.numpy.roll.html#$"),
        ("jax.typing.ArrayLike", "data", "jax.typing.html#$"),
        ("jax.typing.DTypeLike", "data", "jax.typing.html#$"),
    ],
    "flax": [
        ("flax.nnx.Module", "class", "api_reference/flax.nnx/module.html#$"),
        ("flax.nnx.Param", "class", "api_reference/flax.nnx/variables.html#$"),
        ("flax.nnx.Variable", "class", "api_reference/flax.nnx/variables.html#$"),
        ("flax.nnx.Rngs", "class", "api_reference/flax.nnx/rnglib.html#$"),
        ("flax.nnx.Conv", "class", "api_reference/flax.nnx/nn/linear.html#$"),
        ("flax.nnx.jit", "function", "api_reference/flax.nnx/transforms.html#$"),
        ("flax.linen.Module", "class", "api_reference/flax.linen/module.html#$"),
    ],
    "numpy": [
        ("numpy.ndarray", "class", "reference/generated/numpy.ndarray.html#$"),
        ("numpy.pad", "function", "reference/generated/numpy.pad.html#$"),
    ],
}


def write(path, project, entries):
  header = (f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
            "# The remainder of this file is compressed using zlib.\n")
  body = "".join(f"{name} py:{role} 1 {uri} -\n" for name, role, uri in entries)
  with open(path, "wb") as f:
    f.write(header.encode() + zlib.compress(body.encode()))


if __name__ == "__main__":
  here = os.path.dirname(os.path.abspath(__file__))
  for project, entries in INVENTORIES.items():
    write(os.path.join(here, f"{project}.inv"), project, entries)
