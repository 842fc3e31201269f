"""Which convolutions of the TADA head are slow under XLA:CPU (JAX) vs TensorFlow (oneDNN).

    python benchmarks/conv_probe.py --out=benchmarks/conv_probe.md      # ~3 min

The throughput benchmark shows Keras-JAX's phase 1 (head trains) about twice its phase 2
(head frozen), while TensorFlow's phases differ by ~10 %: the extra work of phase 1 is the
head's weight gradients. This times each head layer alone, at the shapes of the benchmark
(16 images at 256², decoder 256, 41 classes), as three jitted functions per framework:
forward, gradient w.r.t. the input, gradient w.r.t. the kernel. TensorFlow runs its
``tf.function`` graph without XLA (oneDNN kernels, what Keras-TF uses on CPU) and with
``jit_compile=True`` (XLA:CPU, what Keras-TF jit uses); JAX runs ``jax.jit`` (XLA:CPU).
Median of ``--repeats`` calls after one warm-up call, in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, kind, kernel, stride, input HxW, in channels, out channels): the head's layers.
LAYERS = (
    ("up3_lateral (1x1 on C2)", "conv", 1, 1, 64, 256, 256),
    ("up3_conv (3x3)", "conv", 3, 1, 64, 256, 256),
    ("segmentation deconv (4x4 /2)", "deconv", 4, 2, 64, 256, 41),
    ("normals deconv (4x4 /2)", "deconv", 4, 2, 64, 256, 3),
    # The same two layers computed as sub-pixel convolutions (benchmarks/subpixel.py).
    ("segmentation, sub-pixel form", "subpixel", 4, 2, 64, 256, 41),
    ("normals, sub-pixel form", "subpixel", 4, 2, 64, 256, 3),
)


def _subpixel_layer(k, s, cin, cout):
    from subpixel import SubpixelConv2DTranspose  # benchmarks/ is the script's directory

    layer = SubpixelConv2DTranspose(cout, k, strides=s)
    layer.build((None, None, None, cin))
    return layer


def _median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return 1000 * times[len(times) // 2]


def run_tf(batch, repeats, jit):
    import numpy as np
    import tensorflow as tf

    rows = {}
    for name, kind, k, s, hw, cin, cout in LAYERS:
        rng = np.random.default_rng(0)
        x = tf.constant(rng.normal(size=(batch, hw, hw, cin)).astype("float32"))
        if kind == "subpixel":
            layer = _subpixel_layer(k, s, cin, cout)
            w = layer.kernel.value

            def f(x, layer=layer):
                return layer(x)
        elif kind == "conv":
            w = tf.Variable(rng.normal(size=(k, k, cin, cout)).astype("float32") * 0.05)

            def f(x, w=w):
                return tf.nn.conv2d(x, w, s, "SAME")
        else:
            w = tf.Variable(rng.normal(size=(k, k, cout, cin)).astype("float32") * 0.05)

            def f(x, w=w, cout=cout):
                shape = tf.stack([tf.shape(x)[0], hw * s, hw * s, cout])
                return tf.nn.conv2d_transpose(x, w, shape, s, "SAME")

        fwd = tf.function(lambda x, f=f: tf.reduce_sum(f(x)), jit_compile=jit)

        def grad_x(x, f=f):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.reduce_sum(f(x) ** 2)
            return tape.gradient(y, x)

        def grad_w(x, f=f, w=w):
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(f(x) ** 2)
            return tape.gradient(y, w)

        gx, gw = tf.function(grad_x, jit_compile=jit), tf.function(grad_w, jit_compile=jit)
        rows[name] = (_median_ms(lambda: fwd(x).numpy(), repeats),
                      _median_ms(lambda: gx(x).numpy(), repeats),
                      _median_ms(lambda: gw(x).numpy(), repeats))
    return rows


def run_jax(batch, repeats):
    import jax
    import jax.numpy as jnp
    import numpy as np

    rows = {}
    dn = ("NHWC", "HWIO", "NHWC")
    for name, kind, k, s, hw, cin, cout in LAYERS:
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(batch, hw, hw, cin)).astype("float32"))
        w = jnp.asarray(rng.normal(size=(k, k, cin, cout)).astype("float32") * 0.05)
        if kind == "subpixel":
            layer = _subpixel_layer(k, s, cin, cout)
            w = layer.kernel.value

            def f(x, w, layer=layer):
                return layer.stateless_call([w, layer.bias.value], [], x)[0]
        elif kind == "conv":
            def f(x, w, s=s):
                return jax.lax.conv_general_dilated(x, w, (s, s), "SAME",
                                                    dimension_numbers=dn)
        else:
            def f(x, w, s=s):  # what keras.ops.conv_transpose lowers to
                return jax.lax.conv_transpose(x, w, (s, s), "SAME", dimension_numbers=dn)

        def loss(x, w, f=f):
            return jnp.sum(f(x, w) ** 2)

        fwd = jax.jit(lambda x, w, f=f: jnp.sum(f(x, w)))
        gx, gw = jax.jit(jax.grad(loss, 0)), jax.jit(jax.grad(loss, 1))
        rows[name] = (_median_ms(lambda: fwd(x, w).block_until_ready(), repeats),
                      _median_ms(lambda: gx(x, w).block_until_ready(), repeats),
                      _median_ms(lambda: gw(x, w).block_until_ready(), repeats))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=("tf", "tf-xla", "jax"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        rows = (run_jax(args.batch, args.repeats) if args.child == "jax"
                else run_tf(args.batch, args.repeats, jit=args.child == "tf-xla"))
        print("RESULT " + json.dumps(rows))
        return 0
    start = time.time()
    results = {}
    for which in ("tf", "tf-xla", "jax"):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                   KERAS_BACKEND="jax" if which == "jax" else "tensorflow")
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), f"--child={which}",
                               f"--batch={args.batch}", f"--repeats={args.repeats}",
                               f"--out={args.out}"], capture_output=True, text=True, env=env)
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not found:
            print(proc.stderr[-3000:], file=sys.stderr)
            print(f"error: the {which} run failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        results[which] = json.loads(found[-1][len("RESULT "):])
        print(which, results[which], flush=True)
    header = ("| layer | pass | TF (oneDNN) ms | TF XLA ms | JAX (XLA) ms | JAX / TF |\n"
              "|---|---|---:|---:|---:|---:|")
    lines = [
        "# Head convolutions: TensorFlow (oneDNN) vs XLA:CPU (TF jit, JAX)", "",
        f"- Shapes of benchmarks/throughput.py: batch {args.batch}, 64² decoder maps "
        "(1/4 of 256²), 256 channels, 41 classes. Median of "
        f"{args.repeats} calls after a warm-up, float32.",
        f"- Machine: {platform.machine()}, {os.cpu_count()} logical CPUs.",
        f"- Command: `python benchmarks/conv_probe.py {' '.join(argv or sys.argv[1:])}` "
        f"({(time.time() - start) / 60:.1f} min).", "", header,
    ]
    for name, *_ in LAYERS:
        for i, label in enumerate(("forward", "grad input", "grad kernel")):
            tf_ms, xla_ms, jax_ms = (results[w][name][i] for w in ("tf", "tf-xla", "jax"))
            lines.append(f"| {name} | {label} | {tf_ms:.0f} | {xla_ms:.0f} | {jax_ms:.0f} | "
                         f"{jax_ms / tf_ms:.1f} |")
    text = "\n".join(lines) + "\n"
    # Imported here, not at the top: the children measure without tada_keras (and the
    # TensorFlow it brings) loaded in the JAX process.
    sys.path.insert(0, ROOT)  # run from a checkout without installing
    from tada_keras.atomic import write_text

    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
