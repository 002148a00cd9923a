"""Per-operator gradient checks.

For every differentiable operator the generator supports, a tiny graph computes
loss = sum(op(inputs) * r) (r fixed random) and its generated gradient graph.
1. float64, evaluated by onnx.reference: analytic gradients vs central finite differences
   (h = 1e-6 relative), tolerance |err| <= 1e-7 + 1e-6 * max|g| + 1e-5 * |g|
   (the 1e-7 floor is the finite-difference noise for gradients that are exactly zero).
2. float32, evaluated by ONNX Runtime CPU with full optimizations: gradients vs the float64
   analytic ones, tolerance |err| <= 1e-5 + 1e-4 * max|g| + 1e-3 * |g|.
"""

from __future__ import annotations

import numpy as np
import pytest

from dpmgen import layers
from dpmgen.context import BuildContext
from dpmgen.ops import conv as C
from dpmgen.ops import elementwise as E
from dpmgen.ops import linalg as L
from dpmgen.ops import nn as N
from dpmgen.ops import norm as G
from dpmgen.ops import reduce as R
from dpmgen.ops import shape as S
from helpers import assert_close, finite_differences, ort_session, run_ort, run_ref
from onnx.reference import ReferenceEvaluator

from dpmgen.autodiff import backward
from dpmgen.graph import Graph

F = None  # dtype None = the graph's float type

# name -> (specs {input: (shape, dtype|None=float)}, concrete feed shapes, wrt, build)
CASES = {}


def case(name, specs, wrt, feed_shapes=None, positive=()):
    def deco(fn):
        CASES[name] = (specs, wrt, fn, feed_shapes or {}, positive)
        return fn
    return deco


@case("add_broadcast", {"a": ((2, 3, 4), F), "b": ((3, 1), F)}, ["a", "b"])
def _(g, v):
    return E.add(v["a"], v["b"])


@case("sub_broadcast", {"a": ((3, 4), F), "b": ((4,), F)}, ["a", "b"])
def _(g, v):
    return E.add(E.sub(v["a"], v["b"]), E.sub(v["b"], v["a"]) * 0.5)


@case("mul_broadcast_symbolic", {"a": (("batch", 3, 2, 2), F), "b": ((3, 1, 1), F)}, ["a", "b"],
      {"a": (2, 3, 2, 2)})
def _(g, v):
    return E.mul(v["a"], v["b"])


@case("div_broadcast", {"a": ((3, 4), F), "b": ((4,), F)}, ["a", "b"], positive=("b",))
def _(g, v):
    return E.div(v["a"], v["b"])


@case("square_neg", {"a": ((3, 4), F)}, ["a"])
def _(g, v):
    return E.neg(E.square(v["a"]))


@case("relu", {"a": ((4, 5), F)}, ["a"])
def _(g, v):
    return E.relu(v["a"])


@case("sigmoid", {"a": ((4, 5), F)}, ["a"])
def _(g, v):
    return E.sigmoid(v["a"])


@case("silu", {"a": ((4, 5), F)}, ["a"])
def _(g, v):
    return E.silu(v["a"])


@case("matmul_batched", {"a": ((2, 3, 4), F), "b": ((2, 4, 5), F)}, ["a", "b"])
def _(g, v):
    return L.matmul(v["a"], v["b"])


@case("matmul_shared_weight", {"a": ((2, 3, 4), F), "b": ((4, 5), F)}, ["a", "b"])
def _(g, v):
    return L.matmul(v["a"], v["b"])


@case("matmul_broadcast_batch", {"a": ((2, 3, 4), F), "b": ((1, 4, 5), F)}, ["a", "b"])
def _(g, v):
    return L.matmul(v["a"], v["b"])


@case("gemm_linear", {"x": (("batch", 3), F), "w": ((4, 3), F), "b": ((4,), F)},
      ["x", "w", "b"], {"x": (5, 3)})
def _(g, v):
    return L.linear(v["x"], v["w"], v["b"])


@case("conv3x3_s1", {"x": ((2, 3, 5, 5), F), "w": ((4, 3, 3, 3), F), "b": ((4,), F)},
      ["x", "w", "b"])
def _(g, v):
    return C.conv2d(v["x"], v["w"], v["b"], stride=1, pad=1)


@case("conv3x3_s2", {"x": ((2, 3, 6, 6), F), "w": ((4, 3, 3, 3), F), "b": ((4,), F)},
      ["x", "w", "b"])
def _(g, v):
    return C.conv2d(v["x"], v["w"], v["b"], stride=2, pad=1)


@case("conv1x1", {"x": ((2, 3, 4, 4), F), "w": ((5, 3, 1, 1), F), "b": ((5,), F)},
      ["x", "w", "b"])
def _(g, v):
    return C.conv2d(v["x"], v["w"], v["b"], stride=1, pad=0)


@case("conv_dynamic_hw", {"x": (("batch", 2, "h", "w"), F), "w1": ((3, 2, 3, 3), F),
                          "b1": ((3,), F), "w2": ((2, 3, 3, 3), F), "b2": ((2,), F)},
      ["x", "w1", "b1", "w2", "b2"], {"x": (2, 2, 6, 4)})
def _(g, v):
    h = C.conv2d(v["x"], v["w1"], v["b1"], stride=2, pad=1)
    return C.conv2d(h, v["w2"], v["b2"], stride=1, pad=1)


@case("upsample_nearest2x", {"x": ((2, 3, 3, 2), F)}, ["x"])
def _(g, v):
    return C.upsample_nearest2x(v["x"])


@case("group_norm", {"x": ((2, 4, 3, 3), F), "gamma": ((4,), F), "beta": ((4,), F)},
      ["x", "gamma", "beta"])
def _(g, v):
    return G.group_norm(v["x"], v["gamma"], v["beta"], 2)


@case("group_norm_dynamic_hw", {"x": (("batch", 4, "h", "w"), F), "gamma": ((4,), F),
                                "beta": ((4,), F)}, ["x", "gamma", "beta"], {"x": (2, 4, 3, 2)})
def _(g, v):
    return G.group_norm(v["x"], v["gamma"], v["beta"], 4)


@case("softmax", {"x": ((2, 3, 5), F)}, ["x"])
def _(g, v):
    return N.softmax(v["x"], axis=-1)


@case("log_softmax", {"x": ((3, 4), F)}, ["x"])
def _(g, v):
    return N.log_softmax(v["x"], axis=1)


@case("concat_split_reshape_transpose_unsqueeze",
      {"a": ((2, 3, 4), F), "b": ((2, 1, 4), F)}, ["a", "b"])
def _(g, v):
    c = S.concat([v["a"], v["b"]], axis=1)  # [2, 4, 4]
    r = S.reshape(c, [0, 2, -1])  # [2, 2, 8]
    t = S.transpose(r, [2, 0, 1])  # [8, 2, 2]
    p, q = S.split(t, [3, 5], axis=0)
    u = S.unsqueeze(E.mul(p, p), [1])  # [3, 1, 2, 2]
    return E.add(u, S.unsqueeze(R.reduce_sum(q, [0]), [0, 1]))  # + [1, 1, 2, 2]


@case("split_unused_piece", {"a": ((4, 3), F)}, ["a"])
def _(g, v):
    p, q = S.split(v["a"], [1, 3], axis=0)
    return E.mul(q, 2.0)


@case("embedding", {"table": ((4, 3), F), "idx": ((5,), "int64")}, ["table"])
def _(g, v):
    return N.embedding(v["table"], v["idx"])


@case("reductions", {"x": ((2, 3, 4), F)}, ["x"])
def _(g, v):
    a = R.reduce_sum(v["x"], [1])  # [2, 4]
    b = R.reduce_mean(v["x"], [0, 2], keepdims=True)  # [1, 3, 1]
    c = R.reduce_mean(E.square(v["x"]))  # []
    return E.add(E.add(S.unsqueeze(a, [1]), b), c)


@case("reduce_mean_dynamic", {"x": (("batch", 3, "h"), F)}, ["x"], {"x": (2, 3, 5)})
def _(g, v):
    return R.reduce_mean(E.square(v["x"]), [0, 2])


@case("dropout", {"x": (("batch", 3, 4, 4), F), "seed": ((), "int64"), "step": ((), F)}, ["x"],
      {"x": (2, 3, 4, 4)})
def _(g, v):
    key = N.dropout_key(v["seed"], v["step"], 3)
    return N.dropout(E.mul(v["x"], v["x"]), 0.3, key)


@case("attention_block", {"x": ((2, 4, 3, 3), F)}, ["x"] + [
    f"p.attn.{m}.{k}" for m in ("group_norm", "proj_q", "proj_k", "proj_v", "proj")
    for k in ("weight", "bias")])
def _(g, v):
    ctx = BuildContext(g, "train")
    out = layers.attention(ctx, "attn", v["x"], 2, proj_gain=1.0)
    for name, val in ctx.params.items():
        v[f"p.{name}"] = val  # expose the parameters created inside for differentiation
    return out


def _build(name, dtype, mode):
    """mode "probe": output = op result; "loss": loss only; "grad": loss and gradients."""
    specs, wrt, fn, _, _ = CASES[name]
    g = Graph("op", dtype)
    vals = {n: g.input(n, s, dt) for n, (s, dt) in specs.items()}
    out = fn(g, vals)  # may add parameters it created to vals
    if mode == "probe":
        g.output(out, "out")
        return g
    r = g.input("r", out.shape)
    loss = R.reduce_sum(E.mul(out, r))
    g.output(loss, "loss")
    if mode == "grad":
        for n, gr in zip(wrt, backward(g, loss, [vals[n] for n in wrt])):
            g.output(gr, f"g.{n}")
    return g


def _feeds(name, rng):
    specs, _, _, feed_shapes, positive = CASES[name]
    g = _build(name, np.float64, "probe")
    feeds = {}
    for v in g.inputs:
        shape = feed_shapes.get(v.name, v.shape)
        if v.dtype == np.int64:
            feeds[v.name] = rng.integers(0, 4, size=shape) if shape else np.array(12345)
        elif v.name == "step":
            feeds[v.name] = np.array(7.0)
        else:
            a = rng.standard_normal(shape)
            feeds[v.name] = 1.0 + np.abs(a) if v.name in positive else a
    feeds["r"] = rng.standard_normal(run_ref(g.to_model(), feeds)["out"].shape)
    return feeds


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_gradient(name):
    wrt = CASES[name][1]
    rng = np.random.default_rng(sum(map(ord, name)))
    feeds = _feeds(name, rng)
    ev_loss = ReferenceEvaluator(_build(name, np.float64, "loss").to_model())
    analytic = run_ref(_build(name, np.float64, "grad").to_model(), feeds)

    def f(arrs):
        return float(ev_loss.run(["loss"], arrs)[0])

    numeric = finite_differences(f, feeds, wrt)
    for n in wrt:
        assert_close(analytic[f"g.{n}"], numeric[n], rtol=1e-5, atol_rel=1e-6, atol_abs=1e-7,
                     what=f"{name} d/d{n} (f64 vs finite differences)")

    # The same graph in float32 under ONNX Runtime (full optimizations).
    sess = ort_session(_build(name, np.float32, "grad").to_model())
    feeds32 = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in feeds.items()}
    got = run_ort(sess, feeds32)
    for n in wrt:
        assert_close(got[f"g.{n}"], analytic[f"g.{n}"], rtol=1e-3, atol_rel=1e-4, atol_abs=1e-5,
                     what=f"{name} d/d{n} (ORT f32 vs f64)")
