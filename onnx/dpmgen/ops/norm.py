"""GroupNorm with a per-channel affine transform (PyTorch nn.GroupNorm semantics)."""

from __future__ import annotations

import numpy as np

from ..graph import Value, np_to_onnx_dtype
from .shape import reshape_target


def _per_channel(g, s: Value, groups: int, c: int) -> Value:
    """[B, G, 1] per-group statistic -> [B, C, 1, 1] (each channel gets its group's value)."""
    b = s.shape[0]
    e = g.node1("Expand", [s, g.ints([1, groups, c // groups])], (b, groups, c // groups))
    return g.node1("Reshape", [e, g.ints([0, c, 1, 1])], (b, c, 1, 1))


def _gn_bwd(g, e, gys, needs):
    x, gamma, beta = e.inputs
    xn, rstd, groups = e.saved["xn"], e.saved["rstd"], e.saved["groups"]
    gy = gys[0]
    b, c = x.shape[0], x.shape[1]
    cg = c // groups
    bc = (b, c, 1, 1)
    # Per (sample, channel) sums; everything else is derived from these small tensors.
    q = g.node1("ReduceSum", [gy, g.ints([2, 3])], bc, keepdims=1)  # sum gy
    p = g.node1("ReduceSum", [g.node1("Mul", [gy, xn], x.shape), g.ints([2, 3])], bc,
                keepdims=1)  # sum gy * xhat
    gbeta = g.node1("ReduceSum", [q, g.ints([0, 2, 3])], (c,), keepdims=0) if needs[2] else None
    ggamma = g.node1("ReduceSum", [p, g.ints([0, 2, 3])], (c,), keepdims=0) if needs[1] else None
    gx = None
    if needs[0]:
        # xhat = (x - mean) * r per group of n elements, d = dL/dxhat = gy * gamma:
        #   dL/dx = r * (d - mean_g(d) - xhat * mean_g(d * xhat))
        #         = gy * (gamma r) - xhat * (r m2) - r m1,
        # with m1 = mean_g(d) = sum_{c in g} gamma_c q_c / n, m2 = mean_g(d xhat) likewise
        # with p: four full-size passes, the rest on [B, C] tensors.
        gam = g.node1("Unsqueeze", [gamma, g.ints([1, 2])], (c, 1, 1))
        count = e.saved["n"]

        def group_mean(v):
            v = g.node1("Mul", [v, gam], bc)
            v = g.node1("Reshape", [v, g.ints([0, groups, cg])], (b, groups, cg))
            v = g.node1("ReduceSum", [v, g.ints([2])], (b, groups, 1), keepdims=1)
            return g.node1("Div", [v, count], (b, groups, 1))

        r = _per_channel(g, rstd, groups, c)
        rm1 = g.node1("Mul", [_per_channel(g, group_mean(q), groups, c), r], bc)
        rm2 = g.node1("Mul", [_per_channel(g, group_mean(p), groups, c), r], bc)
        coef = g.node1("Mul", [gam, r], bc)
        t = g.node1("Mul", [gy, coef], x.shape)
        t = g.node1("Sub", [t, g.node1("Mul", [xn, rm2], x.shape)], x.shape)
        gx = g.node1("Sub", [t, rm1], x.shape)
    return [gx, ggamma, gbeta]


def group_norm(x: Value, gamma: Value, beta: Value, groups: int, eps: float = 1e-5) -> Value:
    """y = (x - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c], statistics per sample and
    group of channels (biased variance), x in NCHW.  Recorded as one operation with the
    closed-form backward above.

    The statistics come from ONNX LayerNormalization over the last axis of x viewed as
    [B, G, n] (one fused kernel that also returns 1/std), when n is static; otherwise from
    explicit reductions."""
    g = x.graph
    c = x.shape[1]
    if c % groups:
        raise ValueError(f"{c} channels not divisible into {groups} groups")
    per = c // groups
    h, w = x.shape[2], x.shape[3]
    static = isinstance(h, int) and isinstance(w, int)
    n = per * h * w if static else f"{per}*{h}*{w}"
    xr = g.node1("Reshape", [x, g.ints([0, groups, -1])], (x.shape[0], groups, n))
    stat = (x.shape[0], groups, 1)
    if static:
        ones = g.const(np.ones(n, dtype=x.dtype))
        xhat, _, rstd = g.node(
            "LayerNormalization", [xr, ones], [xr.shape, stat, stat],
            [x.dtype, x.dtype, x.dtype], axis=-1, epsilon=eps)
        count = g.scalar(float(n), x.dtype)
    else:
        mean = g.node1("ReduceMean", [xr, g.ints([2])], stat, keepdims=1)
        xc = g.node1("Sub", [xr, mean], xr.shape)
        var = g.node1("ReduceMean", [g.node1("Mul", [xc, xc], xr.shape), g.ints([2])], stat,
                      keepdims=1)
        std = g.node1("Sqrt", [g.node1("Add", [var, g.scalar(eps, x.dtype)], stat)], stat)
        rstd = g.node1("Reciprocal", [std], stat)
        xhat = g.node1("Mul", [xc, rstd], xr.shape)
        # group size as a float scalar: Size(xr) / Size(stat)
        nx = g.node1("Size", [xr], (), dtype=np.int64)
        ns = g.node1("Size", [rstd], (), dtype=np.int64)
        count = g.node1("Cast", [g.node1("Div", [nx, ns], (), dtype=np.int64)], (),
                        dtype=x.dtype, to=np_to_onnx_dtype(x.dtype))
    xn = g.node1("Reshape", [xhat, reshape_target(xhat, x)], x.shape)
    gam = g.node1("Unsqueeze", [gamma, g.ints([1, 2])], (c, 1, 1))
    bet = g.node1("Unsqueeze", [beta, g.ints([1, 2])], (c, 1, 1))
    y = g.node1("Add", [g.node1("Mul", [xn, gam], x.shape), bet], x.shape)
    g.record(_gn_bwd, [x, gamma, beta], [y], xn=xn, rstd=rstd, groups=groups, n=count)
    return y
