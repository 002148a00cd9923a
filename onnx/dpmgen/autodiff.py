"""Reverse-mode differentiation over the tape recorded by the differentiable ops.

`backward(g, loss, wrt)` appends the gradient computation to the same graph and returns one
gradient Value per entry of `wrt`.  Only operations on a path from `wrt` to `loss` are
differentiated, and a rule is asked only for the input gradients that lead back to `wrt`
(so, e.g., no gradient is formed for the image input of the first convolution).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .graph import Graph, Value


def sum_to(grad: Value, shape: Sequence) -> Value:
    """Undo numpy broadcasting: sum `grad` down to `shape` (static knowledge of which axes were
    broadcast; a symbolic dim is only ever broadcast against itself in training graphs)."""
    g = grad.graph
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    lead = grad.rank - len(shape)
    if lead < 0:
        raise ValueError(f"cannot sum {grad.shape} to {shape}")
    keep_axes = []
    for i, d in enumerate(shape):
        gd = grad.shape[lead + i]
        if d == gd:
            continue
        if d == 1:
            keep_axes.append(lead + i)
        else:
            raise ValueError(f"cannot sum {grad.shape} to {shape} (dim {i}: {gd} vs {d})")
    out = grad
    if keep_axes:
        new_shape = tuple(1 if a in keep_axes else s for a, s in enumerate(out.shape))
        out = g.node1("ReduceSum", [out, g.ints(keep_axes)], new_shape, keepdims=1)
    if lead:
        out = g.node1("ReduceSum", [out, g.ints(range(lead))], out.shape[lead:], keepdims=0)
    return out


def _accumulate(g: Graph, a: Value | None, b: Value) -> Value:
    if a is None:
        return b
    return g.node1("Add", [a, b], a.shape)


def backward(g: Graph, loss: Value, wrt: Sequence[Value]) -> list[Value]:
    """Gradients of the scalar `loss` with respect to each Value in `wrt`."""
    if loss.rank != 0:
        raise ValueError("loss must be a scalar")
    # Forward sweep: which values depend on wrt.
    live = {v.name for v in wrt}
    for e in g.tape:
        if any(isinstance(i, Value) and i.name in live for i in e.inputs):
            for o in e.outputs:
                live.add(o.name)
    if loss.name not in live:
        raise ValueError("loss does not depend on the requested values")
    grads: dict[str, Value] = {}
    with g.no_grad(), g.scope("grad"):
        grads[loss.name] = g.scalar(1.0, loss.dtype)
        for e in reversed(g.tape):
            gouts = [grads.get(o.name) for o in e.outputs]
            if all(x is None for x in gouts):
                continue
            needs = [isinstance(i, Value) and i.name in live for i in e.inputs]
            if not any(needs):
                continue
            gins = e.backward(g, e, gouts, needs)
            for inp, need, gi in zip(e.inputs, needs, gins):
                if need and gi is not None:
                    if gi.shape != inp.shape:
                        raise AssertionError(
                            f"{e.backward.__qualname__}: grad shape {gi.shape} for {inp}")
                    grads[inp.name] = _accumulate(g, grads.get(inp.name), gi)
        out = []
        for v in wrt:
            gv = grads.get(v.name)
            if gv is None:
                # A parameter the loss does not reach: its gradient is zero.
                if v.numel_static() is None:
                    raise ValueError(f"no gradient reaches {v.name}")
                gv = g.const(np.zeros(v.shape, dtype=v.dtype))
            out.append(gv)
    return out
