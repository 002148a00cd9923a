"""Reductions: ReduceSum and ReduceMean over given axes (or all)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..graph import Value, np_to_onnx_dtype
from .shape import expand_target


def _norm_axes(x: Value, axes):
    if axes is None:
        return list(range(x.rank))
    return sorted(int(a) % x.rank for a in axes)


def _reduced_shape(x: Value, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _spread(g, gy: Value, x: Value, axes, keepdims) -> Value:
    """Broadcast the gradient of a reduction back over the reduced axes."""
    if not keepdims and axes:
        gy = g.node1("Unsqueeze", [gy, g.ints(axes)], _reduced_shape(x, axes, True))
    return g.node1("Expand", [gy, expand_target(gy, x)], x.shape)


def _count(g, x: Value, y: Value, axes) -> Value:
    """Number of elements averaged per output, as a float scalar (static when known)."""
    dims = [x.shape[a] for a in axes]
    if all(isinstance(d, int) for d in dims):
        return g.scalar(float(np.prod(dims)), x.dtype)
    nx = g.node1("Size", [x], (), dtype=np.int64)
    ny = g.node1("Size", [y], (), dtype=np.int64)
    return g.node1("Cast", [g.node1("Div", [nx, ny], (), dtype=np.int64)], (), dtype=x.dtype,
                   to=np_to_onnx_dtype(x.dtype))


def _sum_bwd(g, e, gys, needs):
    return [_spread(g, gys[0], e.inputs[0], e.saved["axes"], e.saved["keepdims"])]


def reduce_sum(x: Value, axes: Sequence[int] | None = None, keepdims: bool = False) -> Value:
    g = x.graph
    axes = _norm_axes(x, axes)
    y = g.node1("ReduceSum", [x, g.ints(axes)], _reduced_shape(x, axes, keepdims),
                keepdims=int(keepdims))
    g.record(_sum_bwd, [x], [y], axes=axes, keepdims=keepdims)
    return y


def _mean_bwd(g, e, gys, needs):
    x, (y,) = e.inputs[0], e.outputs
    axes = e.saved["axes"]
    gy = g.node1("Div", [gys[0], _count(g, x, y, axes)], gys[0].shape)
    return [_spread(g, gy, x, axes, e.saved["keepdims"])]


def reduce_mean(x: Value, axes: Sequence[int] | None = None, keepdims: bool = False) -> Value:
    g = x.graph
    axes = _norm_axes(x, axes)
    y = g.node1("ReduceMean", [x, g.ints(axes)], _reduced_shape(x, axes, keepdims),
                keepdims=int(keepdims))
    g.record(_mean_bwd, [x], [y], axes=axes, keepdims=keepdims)
    return y
