"""Shape manipulation: Reshape, Transpose, Concat, Split, Unsqueeze."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..graph import Value


def shape_of(x: Value) -> Value:
    """x's shape as an int64 tensor: static when possible (constant-folds), else a Shape node."""
    g = x.graph
    if all(isinstance(d, int) for d in x.shape):
        return g.ints(x.shape)
    return g.node1("Shape", [x], (x.rank,), dtype=np.int64)


def reshape_target(v: Value, like: Value) -> Value:
    """Shape operand for Reshape(v) -> like.shape.  A constant, with 0 ("copy v's dim") for
    symbolic dims that v has at the same position, whenever possible: a Shape-fed Reshape
    leaves ORT's shape inference with fresh unknown dims, which made session creation of the
    training graphs several times slower.  Falls back to Shape(like)."""
    spec = []
    for i, d in enumerate(like.shape):
        if isinstance(d, int):
            spec.append(d)
        elif i < v.rank and v.shape[i] == d:
            spec.append(0)
        else:
            return shape_of(like)
    return v.graph.ints(spec)


def expand_target(v: Value, like: Value) -> Value:
    """Shape operand for Expand(v) -> like.shape (v has like's rank): constant where possible,
    with 1 (keep v's dim) for symbolic dims v already has."""
    spec = []
    for i, d in enumerate(like.shape):
        if isinstance(d, int):
            spec.append(d)
        elif v.shape[i] == d:
            spec.append(1)
        else:
            return shape_of(like)
    return v.graph.ints(spec)


def _reshape_to(g, v: Value, like: Value) -> Value:
    return g.node1("Reshape", [v, reshape_target(v, like)], like.shape)


def _reshape_bwd(g, e, gys, needs):
    return [_reshape_to(g, gys[0], e.inputs[0])]


def reshape(x: Value, spec: Sequence[int], out_shape: Sequence | None = None) -> Value:
    """ONNX Reshape (0 copies the input dim, -1 is inferred).  `out_shape` names the result's
    symbolic dims where they cannot be derived."""
    g = x.graph
    if out_shape is None:
        out = []
        for i, s in enumerate(spec):
            out.append(x.shape[i] if s == 0 else s)
        if -1 in out:
            known = [d for d in out if d != -1]
            n = x.numel_static()
            if n is None or not all(isinstance(d, int) for d in known):
                # symbolic leading dims copied with 0 are fine as long as the rest is static
                sym_in = [d for d in x.shape if not isinstance(d, int)]
                sym_out = [d for d in known if not isinstance(d, int)]
                if sym_in != sym_out:
                    raise ValueError(f"cannot infer reshape {x.shape} -> {spec}")
                n = int(np.prod([d for d in x.shape if isinstance(d, int)]))
                known = [d for d in known if isinstance(d, int)]
            out[out.index(-1)] = n // int(np.prod(known))
        out_shape = tuple(out)
    y = g.node1("Reshape", [x, g.ints(spec)], tuple(out_shape))
    g.record(_reshape_bwd, [x], [y])
    return y


def _transpose_bwd(g, e, gys, needs):
    perm = e.saved["perm"]
    inv = list(np.argsort(perm))
    x = e.inputs[0]
    return [g.node1("Transpose", [gys[0]], x.shape, perm=[int(p) for p in inv])]


def transpose(x: Value, perm: Sequence[int]) -> Value:
    g = x.graph
    perm = [int(p) for p in perm]
    y = g.node1("Transpose", [x], tuple(x.shape[p] for p in perm), perm=perm)
    g.record(_transpose_bwd, [x], [y], perm=perm)
    return y


def _concat_bwd(g, e, gys, needs):
    axis = e.saved["axis"]
    sizes = [x.shape[axis] for x in e.inputs]
    gy = gys[0]
    if not all(isinstance(s, int) for s in sizes):
        raise ValueError("concat backward needs static sizes along the axis")
    shapes = [x.shape for x in e.inputs]
    return g.node("Split", [gy, g.ints(sizes)], shapes, axis=axis)


def concat(xs: Sequence[Value], axis: int) -> Value:
    g = xs[0].graph
    axis = axis % xs[0].rank
    shape = list(xs[0].shape)
    total = 0
    for x in xs:
        total = total + x.shape[axis] if isinstance(x.shape[axis], int) else "cat"
    shape[axis] = total
    y = g.node1("Concat", list(xs), tuple(shape), axis=axis)
    g.record(_concat_bwd, list(xs), [y], axis=axis)
    return y


def _split_bwd(g, e, gys, needs):
    axis = e.saved["axis"]
    parts = []
    for o, gy in zip(e.outputs, gys):
        if gy is None:
            # An unused piece contributes zeros.
            if o.numel_static() is None:
                zero = g.scalar(0.0, o.dtype)
                gy = g.node1("Expand", [zero, shape_of(o)], o.shape)
            else:
                gy = g.const(np.zeros(o.shape, dtype=o.dtype))
        parts.append(gy)
    return [g.node1("Concat", parts, e.inputs[0].shape, axis=axis)]


def split(x: Value, sizes: Sequence[int], axis: int) -> list[Value]:
    g = x.graph
    axis = axis % x.rank
    shapes = []
    for s in sizes:
        sh = list(x.shape)
        sh[axis] = int(s)
        shapes.append(tuple(sh))
    ys = g.node("Split", [x, g.ints(sizes)], shapes, axis=axis)
    g.record(_split_bwd, [x], ys, axis=axis)
    return ys


def unsqueeze(x: Value, axes: Sequence[int]) -> Value:
    """Insert size-1 axes (axes refer to the output, as in ONNX)."""
    g = x.graph
    n = x.rank + len(axes)
    axes = sorted(a % n for a in axes)
    shape, src = [], iter(x.shape)
    for i in range(n):
        shape.append(1 if i in axes else next(src))
    y = g.node1("Unsqueeze", [x, g.ints(axes)], tuple(shape))
    g.record(_reshape_bwd, [x], [y])
    return y
