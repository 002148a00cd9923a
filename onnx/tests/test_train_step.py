"""The optimizer step: one training step in ONNX Runtime equals an independent numpy Adam/AdamW
update computed from the graph's own gradients (the g.<param> outputs of a test build), with
default and overridden hyperparameters, global-norm clipping and EMA.  Tolerances (float32
graph vs float64 numpy): m, v, p_out, e_out |err| <= 1e-6 * max|x| + 1e-5 * |x|; the update
p_out - p |err| <= ulp(max|p|) + 1e-5 * max|d| + 1e-4 * |d|."""

from __future__ import annotations

import numpy as np
import pytest

from dpmgen.train_step import AdamDefaults, build_train_graph
from helpers import assert_close, ort_session, run_ort
from nets_util import tiny_nets, train_feeds

NETS = tiny_nets()


def adam_reference(p, g, m, v, lr, step, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, clip=1.0):
    """Adam(W) as torch.optim.AdamW computes it, in float64; `clip` scales the gradient."""
    p, g, m, v = (np.asarray(a, np.float64) for a in (p, g, m, v))
    g = g * clip
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mhat = m / (1 - b1 ** step)
    vhat = v / (1 - b2 ** step)
    p = p * (1 - lr * wd) - lr * mhat / (np.sqrt(vhat) + eps)
    return p, m, v


def _check_step(name, overrides, ema=False, step=3.0, chunk_threshold=None):
    net = NETS[name]
    kw = {} if chunk_threshold is None else {"chunk_threshold": chunk_threshold}
    g, ctx = build_train_graph(net, np.float32, ema=ema, expose_grads=True, **kw)
    feeds = train_feeds(net, g, ctx.specs, np.random.default_rng(11), dtype=np.float32)
    feeds["step"] = np.array(step, np.float32)
    feeds["lr"] = np.array(2e-3, np.float32)
    for k, val in overrides.items():
        feeds[k] = np.array(val, np.float32)
    out = run_ort(ort_session(g.to_model()), feeds)
    hp = {**AdamDefaults().as_dict(ema=True), **overrides}
    grads = {s.name: out[f"g.{s.name}"].astype(np.float64) for s in ctx.specs}
    norm = np.sqrt(sum((x ** 2).sum() for x in grads.values()))
    assert abs(out["grad_norm"] - norm) <= 1e-5 * norm
    clip = min(1.0, hp["clip_norm"] / (norm + 1e-6)) if hp["clip_norm"] > 0 else 1.0
    for s in ctx.specs:
        n = s.name
        p, m, v = adam_reference(feeds[f"p.{n}"], grads[n], feeds[f"m.{n}"], feeds[f"v.{n}"],
                                 2e-3, step, hp["beta1"], hp["beta2"], hp["adam_eps"],
                                 hp["weight_decay"], clip)
        assert_close(out[f"m_out.{n}"], m, 1e-5, 1e-6, f"{name} m_out.{n}")
        assert_close(out[f"v_out.{n}"], v, 1e-5, 1e-6, f"{name} v_out.{n}")
        # The update itself (p_out - p) to 1e-4 relative: it amplifies float32 rounding of v
        # by m / sqrt(v); p_out to float32 resolution.
        delta = out[f"p_out.{n}"].astype(np.float64) - feeds[f"p.{n}"]
        ulp = 2.0 ** -23 * float(np.abs(p).max())  # p_out's own float32 rounding
        assert_close(delta, p - feeds[f"p.{n}"], 1e-4, 1e-5, f"{name} p_out.{n} - p.{n}",
                     atol_abs=ulp)
        assert_close(out[f"p_out.{n}"], p, 1e-5, 1e-6, f"{name} p_out.{n}")
        if ema:
            d = hp["ema_decay"]
            e = d * feeds[f"e.{n}"].astype(np.float64) + (1 - d) * out[f"p_out.{n}"]
            assert_close(out[f"e_out.{n}"], e, 1e-5, 1e-6, f"{name} e_out.{n}")
    return clip


@pytest.mark.parametrize("name", ["toy2d", "unet_tiny", "classifier_tiny"])
def test_adam_defaults_match_reference(name):
    _check_step(name, {})


def test_adamw_clipping_overrides_match_reference():
    clip = _check_step("toy2d", {"weight_decay": 0.05, "clip_norm": 0.01, "beta1": 0.8,
                                 "beta2": 0.99, "adam_eps": 1e-6}, step=1.0)
    assert clip < 1.0, "the clipping branch must be exercised"


def test_ema_variant_matches_reference():
    _check_step("unet_tiny", {"ema_decay": 0.9}, ema=True, step=5.0)


def test_per_tensor_update_layout_matches_reference():
    """The optimizer's alternative layout (large tensors updated separately) is exact too."""
    _check_step("toy2d", {"weight_decay": 0.01}, ema=True, chunk_threshold=1000)


def test_bundled_train_graph_equals_test_build():
    """The committed graph computes the same step as the build with exposed gradients."""
    from helpers import MODELS
    from dpmgen import nets

    net = nets.get("toy2d")
    g, ctx = build_train_graph(net, np.float32, expose_grads=True)
    feeds = train_feeds(net, g, ctx.specs, np.random.default_rng(5), batch=128,
                        dtype=np.float32)
    a = run_ort(ort_session(g.to_model()), feeds)
    b = run_ort(ort_session(MODELS / "toy2d.train.onnx"), feeds)
    for k, val in b.items():
        np.testing.assert_allclose(val, a[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_dropout_step_is_reproducible():
    """Same (seed, step) -> bit-identical step, also in a fresh session; another step or seed
    -> different masks (different loss)."""
    net = NETS["unet_tiny"]
    g, ctx = build_train_graph(net, np.float32)
    model = g.to_model()
    feeds = train_feeds(net, g, ctx.specs, np.random.default_rng(3), dtype=np.float32)
    s1, s2 = ort_session(model), ort_session(model, threads=1)
    a, b = run_ort(s1, feeds), run_ort(s2, feeds)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    other_step = run_ort(s1, {**feeds, "step": np.array(4.0, np.float32)})
    other_seed = run_ort(s1, {**feeds, "dropout_seed": np.array(43, np.int64)})
    assert other_step["loss"] != a["loss"]
    assert other_seed["loss"] != a["loss"]
