"""Broadcasting arithmetic and pointwise activations."""

from __future__ import annotations

import numpy as np

from ..autodiff import sum_to
from ..graph import Value, broadcast_shapes


def _graph(*xs):
    for x in xs:
        if isinstance(x, Value):
            return x.graph
    raise TypeError("at least one operand must be a Value")


def as_value(x, like: Value) -> Value:
    """Python/numpy numbers become constants of `like`'s dtype."""
    if isinstance(x, Value):
        return x
    return like.graph.const(np.asarray(x, dtype=like.dtype))


def _binary(op, a, b, backward):
    g = _graph(a, b)
    ref = a if isinstance(a, Value) else b
    a, b = as_value(a, ref), as_value(b, ref)
    y = g.node1(op, [a, b], broadcast_shapes(a.shape, b.shape))
    g.record(backward, [a, b], [y])
    return y


# ---- arithmetic ---------------------------------------------------------------------------------
def _add_bwd(g, e, gys, needs):
    a, b = e.inputs
    gy = gys[0]
    return [sum_to(gy, a.shape) if needs[0] else None, sum_to(gy, b.shape) if needs[1] else None]


def add(a, b) -> Value:
    return _binary("Add", a, b, _add_bwd)


def _sub_bwd(g, e, gys, needs):
    a, b = e.inputs
    gy = gys[0]
    gb = None
    if needs[1]:
        gb = sum_to(g.node1("Neg", [gy], gy.shape), b.shape)
    return [sum_to(gy, a.shape) if needs[0] else None, gb]


def sub(a, b) -> Value:
    return _binary("Sub", a, b, _sub_bwd)


def _mul_bwd(g, e, gys, needs):
    a, b = e.inputs
    gy = gys[0]
    ga = gb = None
    if needs[0]:
        ga = sum_to(g.node1("Mul", [gy, b], gy.shape), a.shape)
    if needs[1]:
        gb = sum_to(g.node1("Mul", [gy, a], gy.shape), b.shape)
    return [ga, gb]


def mul(a, b) -> Value:
    return _binary("Mul", a, b, _mul_bwd)


def _div_bwd(g, e, gys, needs):
    a, b = e.inputs
    (y,) = e.outputs
    gy = gys[0]
    ga = gb = None
    q = g.node1("Div", [gy, b], gy.shape)  # gy / b, shared by both gradients
    if needs[0]:
        ga = sum_to(q, a.shape)
    if needs[1]:
        # d(a/b)/db = -a/b^2 = -y/b
        gb = sum_to(g.node1("Neg", [g.node1("Mul", [q, y], gy.shape)], gy.shape), b.shape)
    return [ga, gb]


def div(a, b) -> Value:
    return _binary("Div", a, b, _div_bwd)


def _neg_bwd(g, e, gys, needs):
    return [g.node1("Neg", [gys[0]], gys[0].shape)]


def neg(x: Value) -> Value:
    y = x.graph.node1("Neg", [x], x.shape)
    x.graph.record(_neg_bwd, [x], [y])
    return y


def _square_bwd(g, e, gys, needs):
    (x,) = e.inputs
    gy = gys[0]
    return [g.node1("Mul", [g.node1("Mul", [gy, x], x.shape), g.scalar(2.0, x.dtype)], x.shape)]


def square(x: Value) -> Value:
    """x * x with a single-term gradient 2 x gy."""
    y = x.graph.node1("Mul", [x, x], x.shape)
    x.graph.record(_square_bwd, [x], [y])
    return y


# ---- activations --------------------------------------------------------------------------------
def _relu_bwd(g, e, gys, needs):
    (y,) = e.outputs
    gy = gys[0]
    pos = g.node1("Greater", [y, g.scalar(0.0, y.dtype)], y.shape, dtype=np.bool_)
    return [g.node1("Where", [pos, gy, g.scalar(0.0, y.dtype)], y.shape)]


def relu(x: Value) -> Value:
    y = x.graph.node1("Relu", [x], x.shape)
    x.graph.record(_relu_bwd, [x], [y])
    return y


def _sigmoid_bwd(g, e, gys, needs):
    (y,) = e.outputs
    gy = gys[0]
    one_minus = g.node1("Sub", [g.scalar(1.0, y.dtype), y], y.shape)
    return [g.node1("Mul", [g.node1("Mul", [gy, y], y.shape), one_minus], y.shape)]


def sigmoid(x: Value) -> Value:
    y = x.graph.node1("Sigmoid", [x], x.shape)
    x.graph.record(_sigmoid_bwd, [x], [y])
    return y


def _silu_bwd(g, e, gys, needs):
    (x,) = e.inputs
    (y,) = e.outputs
    s = e.saved["s"]
    gy = gys[0]
    # d/dx x s(x) = s (1 + x (1 - s)) = s + y (1 - s) with y = x s: four passes
    t = g.node1("Sub", [g.scalar(1.0, x.dtype), s], x.shape)
    t = g.node1("Add", [g.node1("Mul", [y, t], x.shape), s], x.shape)
    return [g.node1("Mul", [gy, t], x.shape)]


def silu(x: Value) -> Value:
    """x * sigmoid(x) (a.k.a. Swish).  Recorded as one operation so that the backward pass
    uses the saved sigmoid rather than differentiating the product."""
    g = x.graph
    s = g.node1("Sigmoid", [x], x.shape)
    y = g.node1("Mul", [x, s], x.shape)
    g.record(_silu_bwd, [x], [y], s=s)
    return y


# ---- non-differentiable helpers (inputs that need no gradient, optimizer arithmetic) -----------
def raw(op: str, *xs, shape=None, dtype=None, **attrs) -> Value:
    """Emit one node without recording it.  Shape defaults to the broadcast of the inputs."""
    g = _graph(*xs)
    ref = next(x for x in xs if isinstance(x, Value))
    vals = [as_value(x, ref) if x is not None else None for x in xs]
    if shape is None:
        shape = ()
        for v in vals:
            if v is not None:
                shape = broadcast_shapes(shape, v.shape)
    return g.node1(op, vals, shape, dtype=dtype, **attrs)
