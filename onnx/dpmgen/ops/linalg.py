"""Matrix products: batched MatMul and the Gemm-based fully connected layer."""

from __future__ import annotations

from ..autodiff import sum_to
from ..graph import Value, broadcast_shapes


def _swap_last(g, x: Value) -> Value:
    perm = list(range(x.rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    shape = tuple(x.shape[p] for p in perm)
    return g.node1("Transpose", [x], shape, perm=perm)


def _matmul_bwd(g, e, gys, needs):
    a, b = e.inputs
    gy = gys[0]
    ga = gb = None
    if needs[0]:
        # dA = dY B^T (batched), summed over broadcast batch dims
        full = g.node1("MatMul", [gy, _swap_last(g, b)], gy.shape[:-1] + (b.shape[-2],))
        ga = sum_to(full, a.shape)
    if needs[1]:
        if b.rank == 2 and a.rank > 2:
            # A shared weight: fold the batch dims into one Gemm, dB = A^T dY.
            k, n = b.shape
            a2 = g.node1("Reshape", [a, g.ints([-1, k])], ("rows", k))
            gy2 = g.node1("Reshape", [gy, g.ints([-1, n])], ("rows", n))
            gb = g.node1("Gemm", [a2, gy2], (k, n), transA=1)
        else:
            full = g.node1("MatMul", [_swap_last(g, a), gy], gy.shape[:-2] + b.shape[-2:])
            gb = sum_to(full, b.shape)
    return [ga, gb]


def matmul(a: Value, b: Value) -> Value:
    """numpy.matmul for operands of rank >= 2."""
    if a.rank < 2 or b.rank < 2:
        raise ValueError("matmul operands must have rank >= 2")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul shapes {a.shape} @ {b.shape}")
    g = a.graph
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    y = g.node1("MatMul", [a, b], batch + (a.shape[-2], b.shape[-1]))
    g.record(_matmul_bwd, [a, b], [y])
    return y


def _linear_bwd(g, e, gys, needs):
    x, w, b = e.inputs
    gy = gys[0]
    gx = gw = gb = None
    if needs[0]:
        gx = g.node1("Gemm", [gy, w], x.shape)  # [B,out] @ [out,in]
    if needs[1]:
        gw = g.node1("Gemm", [gy, x], w.shape, transA=1)  # [out,B] @ [B,in]
    if needs[2]:
        gb = g.node1("ReduceSum", [gy, g.ints([0])], b.shape, keepdims=0)
    return [gx, gw, gb]


def linear(x: Value, w: Value, b: Value) -> Value:
    """y = x W^T + b with PyTorch's layout (W is [out, in]); x is [rows, in]."""
    if x.rank != 2 or w.rank != 2 or x.shape[1] != w.shape[1] or b.shape != (w.shape[0],):
        raise ValueError(f"linear shapes x{x.shape} W{w.shape} b{b.shape}")
    g = x.graph
    y = g.node1("Gemm", [x, w, b], (x.shape[0], w.shape[0]), transB=1)
    g.record(_linear_bwd, [x, w, b], [y])
    return y
