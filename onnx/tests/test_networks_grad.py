"""Whole-network gradient checks of the training graphs (tiny sizes).

For each network, the training graph's own gradients (the g.<param> outputs of a test build)
are checked against central finite differences of its loss, in float64 with onnx.reference:
one random direction per parameter tensor plus one over all parameters at once,
tolerance |fd - <g, d>| <= 1e-6 * |<g, d>| + 1e-8 * ||g|| (h = 1e-5).
Then the float32 graph under ONNX Runtime (CPU, full optimizations) must reproduce the
float64 gradients to |err| <= 2e-4 * max|g| + 2e-3 |g| per tensor.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from dpmgen.train_step import build_train_graph
from helpers import assert_close, ort_session, run_ort, run_ref
from nets_util import tiny_nets, train_feeds

NETS = tiny_nets()


@pytest.mark.parametrize("name", sorted(NETS))
def test_network_gradients_match_finite_differences(name):
    net = NETS[name]
    g_loss, ctx = build_train_graph(net, np.float64, loss_only=True)
    g_step, _ = build_train_graph(net, np.float64, expose_grads=True)
    rng = np.random.default_rng(123)
    feeds = train_feeds(net, g_step, ctx.specs, rng)
    loss_feeds = {v.name: feeds[v.name] for v in g_loss.inputs if v.name in feeds}
    out = run_ref(g_step.to_model(), feeds)
    grads = {s.name: out[f"g.{s.name}"] for s in ctx.specs}
    ev = ReferenceEvaluator(g_loss.to_model())

    def loss_at(delta: dict, h: float) -> float:
        f = dict(loss_feeds)
        for k, d in delta.items():
            f[f"p.{k}"] = loss_feeds[f"p.{k}"] + h * d
        return float(ev.run(["loss"], f)[0])

    assert abs(loss_at({}, 0.0) - float(out["loss"])) <= 1e-12 * max(1.0, abs(out["loss"]))
    gnorm = float(np.sqrt(sum((g ** 2).sum() for g in grads.values())))
    assert gnorm > 0
    directions = [{s.name: rng.standard_normal(s.shape)} for s in ctx.specs]
    directions.append({s.name: rng.standard_normal(s.shape) for s in ctx.specs})
    h = 1e-5
    for d in directions:
        fd = (loss_at(d, h) - loss_at(d, -h)) / (2 * h)
        an = float(sum((grads[k] * v).sum() for k, v in d.items()))
        dnorm = float(np.sqrt(sum((v ** 2).sum() for v in d.values())))
        tol = 1e-6 * abs(an) + 1e-8 * gnorm * dnorm
        assert abs(fd - an) <= tol, (f"{name}: direction over {list(d)[:3]}...: finite "
                                     f"difference {fd:.10e} vs gradient {an:.10e}")


@pytest.mark.parametrize("name", sorted(NETS))
def test_network_gradients_ort_float32(name):
    net = NETS[name]
    g64, ctx = build_train_graph(net, np.float64, expose_grads=True)
    g32, _ = build_train_graph(net, np.float32, expose_grads=True)
    feeds = train_feeds(net, g64, ctx.specs, np.random.default_rng(7))
    ref = run_ref(g64.to_model(), feeds)
    feeds32 = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in feeds.items()}
    got = run_ort(ort_session(g32.to_model()), feeds32)
    assert abs(got["loss"] - ref["loss"]) <= 1e-5 * abs(ref["loss"]) + 1e-6
    for s in ctx.specs:
        assert_close(got[f"g.{s.name}"], ref[f"g.{s.name}"], rtol=2e-3, atol_rel=2e-4,
                     atol_abs=1e-7, what=f"{name} g.{s.name}")
