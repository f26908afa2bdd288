"""Deploy a shift network to LiteRT: train, freeze, convert (float and int8), run.

For each mode the digits ShiftResNet of train_digits.py is trained, frozen
(`jaxshift.nn.freeze`: its shifts become constants, so every shift is plain
XLA: slices and pads, with constant bilinear weights for an active model),
converted with jax2tf and the TFLite converter into a float model and a
full-integer int8 model (calibrated on training images), and run in the
LiteRT interpreter. One table: accuracy of JAX, LiteRT float and LiteRT
int8; the largest logit difference of LiteRT float against JAX; model sizes;
the ops each model became (builtin ones only: no Flex, no custom op); time
per image against the JAX model. Then the online TSM block of video_tsm.py,
converted with its caches as explicit inputs and outputs, runs frame by
frame in LiteRT and must give the offline logits.

  pip install -e ".[deploy]"                  # TensorFlow (CPU) and LiteRT
  python examples/deploy_litert.py            # the three modes, ~2 min on 2 cores
  python examples/deploy_litert.py --modes sparse --epochs 1 --limit 64   # smoke run
"""

import argparse
import os
import pathlib
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import common  # noqa: E402
import train_digits  # noqa: E402
import video_tsm  # noqa: E402

import jaxshift.nn as jsnn  # noqa: E402


def _tensorflow():
  """TensorFlow, jax2tf and LiteRT's interpreter, or a clear error."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      from ai_edge_litert import interpreter  # pylint: disable=import-outside-toplevel
      from jax.experimental import jax2tf  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise SystemExit(f"deploy_litert.py needs TensorFlow and LiteRT ({e}): "
                     'pip install -e ".[deploy]"') from None
  return tf, jax2tf, interpreter


def convert(fn, specs, representative=None) -> bytes:
  """`fn` (JAX, arrays -> array or tuple) as a LiteRT flatbuffer.

  Args:
    fn: a JAX function of float32 arrays with no custom call (a frozen model).
    specs: ``[(shape, name)]`` of its inputs (fixed shapes).
    representative: sample inputs; given, the model is full-integer int8
      (every op int8; float input and output, quantized at the ends).
  """
  tf, jax2tf, _ = _tensorflow()
  signature = [tf.TensorSpec(shape, tf.float32, name=name) for shape, name in specs]
  tf_fn = tf.function(jax2tf.convert(fn, with_gradient=False), autograph=False,
                      input_signature=signature)
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [tf_fn.get_concrete_function()], tf_fn)
  if representative is not None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x] for x in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Statistics for quantized inputs ..."
    return converter.convert()


def interpreter(model: bytes):
  _, _, litert = _tensorflow()
  it = litert.Interpreter(model_content=model, num_threads=1)
  it.allocate_tensors()
  return it


def op_names(it) -> list[str]:
  """The distinct ops of an interpreter's graph (XNNPACK's DELEGATE aside)."""
  return sorted({o["op_name"] for o in it._get_ops_details()} - {"DELEGATE"})  # pylint: disable=protected-access


def builtin_only(ops) -> bool:
  return not any(o.startswith("Flex") or o == "CUSTOM" for o in ops)


def logits(it, images) -> np.ndarray:
  """Runs the one-image model on each image; ``[N, classes]``."""
  inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
  rows = []
  for image in images:
    it.set_tensor(inp, image[None])
    it.invoke()
    rows.append(it.get_tensor(out)[0].copy())
  return np.stack(rows)


def per_image_us(fn, image, repeats=200) -> float:
  """Median wall time of `fn(image)` in microseconds, after a warm-up."""
  fn(image)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn(image)
    times.append(time.perf_counter() - t0)
  return 1e6 * float(np.median(times))


def deploy_digits(mode, data, args) -> dict:
  """Trains, freezes, converts and runs one mode; returns its table row."""
  x_train, y_train, x_test, y_test = data
  model = common.build_model(mode, args.depth, expansion=3, num_classes=10, in_features=1,
                             width=args.width, rngs=nnx.Rngs(args.seed))
  steps = args.epochs * common.steps_per_epoch(len(x_train), 64)
  opt = train_digits.optimizer(model, argparse.Namespace(lr=3e-3, shift_lr=3e-2), steps)
  common.fit(model, opt, x_train, y_train, epochs=args.epochs, batch_size=64,
             seed=args.seed, l1=1e-3 if mode == "sparse" else 0.0, desc=mode)
  model.eval()
  frozen, moving = jsnn.freeze(model)
  graphdef, state = nnx.split(frozen)
  one = lambda x: nnx.merge(graphdef, state)(x)   # noqa: E731  (frozen: plain XLA)
  jax_logits = np.asarray(nnx.jit(lambda m, x: m(x))(frozen, jnp.asarray(x_test)))
  models = {"float": convert(one, [((1, 8, 8, 1), "image")])}
  models["int8"] = convert(one, [((1, 8, 8, 1), "image")],
                           representative=[x[None] for x in x_train[:200]])
  row = {"mode": mode, "jax": float(np.mean(jax_logits.argmax(1) == y_test)),
         "moving": sum(m for m, _ in moving.values()),
         "channels": sum(c for _, c in moving.values())}
  jitted = jax.jit(one)
  row["us_jax"] = per_image_us(lambda v: jitted(v).block_until_ready(), jnp.asarray(x_test[:1]))
  for kind, blob in models.items():
    it = interpreter(blob)
    out = logits(it, x_test)
    row[kind] = float(np.mean(out.argmax(1) == y_test))
    row[f"kb_{kind}"] = len(blob) / 1024
    row[f"ops_{kind}"] = op_names(it)
    inp = it.get_input_details()[0]["index"]

    def invoke(image, it=it, inp=inp):
      it.set_tensor(inp, image)
      it.invoke()
    row[f"us_{kind}"] = per_image_us(invoke, x_test[:1])
    if kind == "float":
      row["max_diff"] = float(np.abs(out - jax_logits).max())
  return row


def deploy_tsm(args) -> float:
  """The online TSM network of video_tsm.py, one frame per call with the
  caches as inputs and outputs, in LiteRT; the largest difference of its
  logits from the offline (whole-clip) logits in JAX."""
  clips, _ = video_tsm.make_clips(4, seed=args.seed)
  model = video_tsm.VideoNet(rngs=nnx.Rngs(args.seed))
  graphdef, state = nnx.split(model)
  width = model.stem.out_features // 8
  frame_shape = (1,) + clips.shape[2:]
  cache_shape = (1,) + clips.shape[2:4] + (width,)
  n_blocks = len(model.blocks)

  def step(frame, *caches):  # the streaming step: features and new caches
    features, new = nnx.merge(graphdef, state).step(frame, list(caches))
    return (features, *new)

  blob = convert(step, [(frame_shape, "frame")] +
                 [(cache_shape, f"cache{i}") for i in range(n_blocks)])
  it = interpreter(blob)
  assert builtin_only(op_names(it)), op_names(it)
  inputs = {d["name"]: d["index"] for d in it.get_input_details()}
  # Outputs in the function's order: Identity, Identity_1, ...
  outputs = [d["index"] for d in sorted(
      it.get_output_details(), key=lambda d: int(d["name"].partition("_")[2] or 0))]
  offline = np.asarray(model(jnp.asarray(clips)))
  worst = 0.0
  for n in range(len(clips)):
    caches = [np.zeros(cache_shape, np.float32) for _ in range(n_blocks)]
    total = 0.0
    for t in range(clips.shape[1]):
      it.set_tensor(inputs["frame"], clips[n:n + 1, t])
      for i, cache in enumerate(caches):
        it.set_tensor(inputs[f"cache{i}"], cache)
      it.invoke()
      total = total + it.get_tensor(outputs[0])
      caches = [it.get_tensor(k).copy() for k in outputs[1:]]
    online = np.asarray(model.head(jnp.asarray(total / clips.shape[1])))
    worst = max(worst, float(np.abs(online - offline[n:n + 1]).max()))
  return worst


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--modes", nargs="+", default=["integer", "sparse", "active"],
                 choices=["integer", "sparse", "active"])
  p.add_argument("--epochs", type=int, default=10)
  p.add_argument("--depth", type=int, default=8)
  p.add_argument("--width", type=int, default=16)
  p.add_argument("--limit", type=int, default=None,
                 help="use only this many training and test images")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  _tensorflow()  # a clear error before training when TensorFlow is missing

  data = train_digits.load(args.seed)
  if args.limit:
    data = tuple(a[:args.limit] for a in data)
  rows = [deploy_digits(mode, data, args) for mode in args.modes]
  table = common.markdown_table(
      ["mode", "moving channels", "JAX acc", "LiteRT float acc", "LiteRT int8 acc",
       "max |logit diff| float", "KB float / int8", "us/image JAX / float / int8",
       "ops (float)", "ops (int8)"],
      [[r["mode"], f"{r['moving']}/{r['channels']}", f"{r['jax']:.1%}", f"{r['float']:.1%}",
        f"{r['int8']:.1%}", f"{r['max_diff']:.1e}", f"{r['kb_float']:.0f} / {r['kb_int8']:.0f}",
        f"{r['us_jax']:.0f} / {r['us_float']:.0f} / {r['us_int8']:.0f}",
        " ".join(r["ops_float"]), " ".join(r["ops_int8"])] for r in rows])
  print(f"\nShiftResNet-{args.depth} (width {args.width}) on sklearn digits, "
        f"{args.epochs} epochs, frozen and converted (jax2tf -> TFLite; "
        f"{len(data[3])} test images, one at a time, 1 thread):\n")
  print(table)
  for r in rows:
    if not (builtin_only(r["ops_float"]) and builtin_only(r["ops_int8"])):
      raise SystemExit(f"{r['mode']}: a Flex or custom op in the converted model")
  tsm = deploy_tsm(args)
  print(f"\nOnline TSM (video_tsm.py's network, caches as inputs/outputs), frame by "
        f"frame in LiteRT: largest logit difference from the offline JAX logits {tsm:.1e}")
  return {"rows": rows, "tsm": tsm}


if __name__ == "__main__":
  main()
