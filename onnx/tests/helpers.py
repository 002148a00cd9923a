"""Shared test machinery: running graphs (ONNX reference evaluator in float64, ONNX Runtime
in float32) and finite-difference gradient checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx.reference import ReferenceEvaluator

from dpmgen.autodiff import backward
from dpmgen.graph import Graph
from dpmgen.ops import elementwise as E
from dpmgen.ops import reduce as R

MODELS = Path(__file__).resolve().parent.parent / "models"


def ort_session(model, threads: int = 2) -> ort.InferenceSession:
    """CPU session with full graph optimizations (what libdpm uses)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    src = model if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
    return ort.InferenceSession(str(src) if isinstance(src, os.PathLike) else src, so,
                                providers=["CPUExecutionProvider"])


def run_ort(sess: ort.InferenceSession, feeds: dict) -> dict:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def run_ref(model, feeds: dict) -> dict:
    """Evaluate with onnx.reference (pure numpy; handles float64 for every operator, which
    ONNX Runtime's CPU provider does not for Conv, Resize, AveragePool)."""
    ev = model if isinstance(model, ReferenceEvaluator) else ReferenceEvaluator(model)
    names = [o.name for o in ev.proto_.graph.output] if hasattr(ev, "proto_") else None
    outs = ev.run(None, feeds)
    names = names or [o for o in ev.output_names]
    return dict(zip(names, outs))


def build_op_graph(build, specs: dict, wrt: list[str], dtype, with_grads: bool) -> Graph:
    """Graph with inputs `specs` {name: (shape, dtype or None)}, an output weighting input `r`
    and loss = sum(build(...) * r); with gradients g.<name> for the names in `wrt`."""
    g = Graph("op", dtype)
    vals = {n: g.input(n, shape, dt) for n, (shape, dt) in specs.items()}
    out = build(g, vals)
    r = g.input("r", out.shape)
    loss = R.reduce_sum(E.mul(out, r))
    g.output(loss, "loss")
    if with_grads:
        grads = backward(g, loss, [vals[n] for n in wrt])
        for n, gr in zip(wrt, grads):
            g.output(gr, f"g.{n}")
    return g


def finite_differences(f, arrays: dict, names: list[str], h: float = 1e-6) -> dict:
    """Central differences of scalar f(arrays) w.r.t. every element of arrays[n]."""
    out = {}
    for n in names:
        base = arrays[n]
        grad = np.zeros_like(base, dtype=np.float64)
        flat = grad.reshape(-1)
        for i in range(base.size):
            step = h * max(1.0, abs(float(base.reshape(-1)[i])))
            plus = base.copy()
            plus.reshape(-1)[i] += step
            minus = base.copy()
            minus.reshape(-1)[i] -= step
            flat[i] = (f({**arrays, n: plus}) - f({**arrays, n: minus})) / (2 * step)
        out[n] = grad
    return out


def assert_close(actual, expected, rtol, atol_rel, what="", atol_abs=0.0):
    """|a - e| <= atol_abs + atol_rel * max|e| + rtol * |e| elementwise."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} vs {expected.shape}"
    scale = max(float(np.abs(expected).max()), 1e-30)
    err = np.abs(actual - expected)
    bound = atol_abs + atol_rel * scale + rtol * np.abs(expected)
    worst = float((err - bound).max())
    assert worst <= 0, (f"{what}: max err {err.max():.3e} (scale {scale:.3e}, "
                        f"rtol {rtol}, atol {atol_rel}*scale)")
