"""Softmax, log-softmax, embedding lookup, one-hot and reproducible dropout."""

from __future__ import annotations

import numpy as np

from ..graph import Value, np_to_onnx_dtype
from .shape import shape_of


# ---- softmax ------------------------------------------------------------------------------------
def _softmax_bwd(g, e, gys, needs):
    (y,) = e.outputs
    axis = e.saved["axis"]
    gy = gys[0]
    red = tuple(1 if i == axis else d for i, d in enumerate(y.shape))
    s = g.node1("ReduceSum", [g.node1("Mul", [gy, y], y.shape), g.ints([axis])], red, keepdims=1)
    return [g.node1("Mul", [y, g.node1("Sub", [gy, s], y.shape)], y.shape)]


def softmax(x: Value, axis: int = -1) -> Value:
    g = x.graph
    axis = axis % x.rank
    y = g.node1("Softmax", [x], x.shape, axis=axis)
    g.record(_softmax_bwd, [x], [y], axis=axis)
    return y


def _log_softmax_bwd(g, e, gys, needs):
    (y,) = e.outputs
    axis = e.saved["axis"]
    gy = gys[0]
    red = tuple(1 if i == axis else d for i, d in enumerate(y.shape))
    s = g.node1("ReduceSum", [gy, g.ints([axis])], red, keepdims=1)
    p = g.node1("Exp", [y], y.shape)
    return [g.node1("Sub", [gy, g.node1("Mul", [p, s], y.shape)], y.shape)]


def log_softmax(x: Value, axis: int = -1) -> Value:
    g = x.graph
    axis = axis % x.rank
    y = g.node1("LogSoftmax", [x], x.shape, axis=axis)
    g.record(_log_softmax_bwd, [x], [y], axis=axis)
    return y


# ---- embedding ----------------------------------------------------------------------------------
def one_hot(idx: Value, n: int, dtype) -> Value:
    """[rows] int64 -> [rows, n] of 0/1 in `dtype` (not differentiated)."""
    g = idx.graph
    col = g.node1("Unsqueeze", [idx, g.ints([1])], idx.shape + (1,))
    eq = g.node1("Equal", [col, g.ints(range(n))], idx.shape + (n,), dtype=np.bool_)
    return g.node1("Cast", [eq], idx.shape + (n,), dtype=dtype, to=np_to_onnx_dtype(dtype))


def _embedding_bwd(g, e, gys, needs):
    table, idx = e.inputs
    # Scatter-add as a (tiny) matrix product, which every provider runs deterministically.
    oh = one_hot(idx, table.shape[0], table.dtype)
    return [g.node1("Gemm", [oh, gys[0]], table.shape, transA=1), None]


def embedding(table: Value, idx: Value) -> Value:
    """Rows of `table` [n, d] selected by int64 `idx` [rows] (PyTorch nn.Embedding)."""
    g = table.graph
    y = g.node1("Gather", [table, idx], idx.shape + table.shape[1:], axis=0)
    g.record(_embedding_bwd, [table, idx], [y])
    return y


# ---- dropout ------------------------------------------------------------------------------------
# Dropout masks come from a counter-based generator evaluated in the graph: Widynski's
# "Squares" (arXiv:2004.06278), two rounds, on uint64 with wrap-around Mul/Add and Div for the
# 32-bit rotation.  Only integer Add/Mul/Div/compare/Cast are used, which ONNX Runtime's CPU
# and CUDA providers both implement exactly (no bitwise operators: CUDA has none), so every
# provider produces the same masks.  Statistics are checked in tests/test_dropout.py.
_U64 = np.uint64
_TWO32 = 2 ** 32
_KEY_A = 0xC8E4FD154CE32F6D  # fixed odd constants with irregular bits
_KEY_B = 0x9E3779B97F4A7C15
_KEY_C = 0xD1B54A32D192ED03


def _u64(g, v: int) -> Value:
    return g.const(np.array(v, dtype=_U64))


def _squares_keep(g, y: Value, key: Value, threshold: int, shape) -> Value:
    """Squares (two rounds) on precomputed y = ctr * key: bool tensor `(out >= threshold)`
    where out = the generator's 32-bit output.  The final `>> 32` is folded into the compare
    (floor(v / 2^32) >= T  <=>  v >= T * 2^32), saving a division per element."""
    def op(name, a, b):
        return g.node1(name, [a, b], shape, dtype=_U64)

    def rot32(x):  # (x >> 32) | (x << 32): the halves do not overlap, so | is +
        return op("Add", op("Div", x, _u64(g, _TWO32)), op("Mul", x, _u64(g, _TWO32)))

    z = op("Add", y, key)
    x = rot32(op("Add", op("Mul", y, y), y))
    x = rot32(op("Add", op("Mul", x, x), z))
    v = op("Add", op("Mul", x, x), y)
    return g.node1("GreaterOrEqual", [v, _u64(g, threshold * _TWO32)], shape, dtype=np.bool_)


def _squares(g, ctr: Value, key: Value, shape) -> Value:
    """32-bit Squares output (two rounds, as uint64 in [0, 2^32)) for counters `ctr`."""
    def op(name, a, b):
        return g.node1(name, [a, b], shape, dtype=_U64)

    def rot32(x):
        return op("Add", op("Div", x, _u64(g, _TWO32)), op("Mul", x, _u64(g, _TWO32)))

    y = op("Mul", ctr, key)
    z = op("Add", y, key)
    x = rot32(op("Add", op("Mul", y, y), y))
    x = rot32(op("Add", op("Mul", x, x), z))
    return op("Div", op("Add", op("Mul", x, x), y), _u64(g, _TWO32))


def dropout_key(seed: Value, step: Value, salt: int) -> Value:
    """uint64 scalar key of one dropout site from the int64 seed, the float step (integral,
    1-based) and the site's salt.  Distinct (seed, step, salt) give unrelated keys."""
    g = seed.graph
    to64 = np_to_onnx_dtype(_U64)
    s = g.node1("Cast", [seed], (), dtype=_U64, to=to64)
    st = g.node1("Cast", [step], (), dtype=_U64, to=to64)
    # A unique counter per (seed, step, salt) (salt < 2^16, step < 2^32), then mixed twice.
    ctr = g.node1("Add", [g.node1("Mul", [s, _u64(g, 2 ** 48)], (), dtype=_U64),
                          g.node1("Add", [g.node1("Mul", [st, _u64(g, 2 ** 16)], (), dtype=_U64),
                                          _u64(g, salt)], (), dtype=_U64)], (), dtype=_U64)
    hi = _squares(g, ctr, _u64(g, _KEY_A), ())
    lo = _squares(g, ctr, _u64(g, _KEY_B), ())
    key = g.node1("Add", [g.node1("Mul", [hi, _u64(g, _TWO32)], (), dtype=_U64), lo], (),
                  dtype=_U64)
    # Squares wants keys with irregular bits; adding a fixed odd constant avoids a zero key.
    return g.node1("Add", [key, _u64(g, _KEY_C)], (), dtype=_U64)


def _counter_times_key(g, like: Value, key: Value) -> Value:
    """ctr * key (mod 2^64) where ctr is the row-major element index of `like`.  With a
    static per-sample shape this is (b * n) * key + c * key for b in batch and c in [0, n):
    the per-sample counter is a constant (folded by ORT at load) and only one full-size Add
    remains, instead of materialising a full-size index every step."""
    to64 = np_to_onnx_dtype(_U64)
    per = like.shape[1:]
    i64 = lambda v: g.const(np.array(v, np.int64))  # noqa: E731
    if all(isinstance(d, int) for d in per):
        n = int(np.prod(per))
        cache = g.cache.setdefault("dropout_counter", {})
        if per not in cache:
            c = g.node1("Range", [i64(0), i64(n), i64(1)], (n,), dtype=np.int64)
            c = g.node1("Reshape", [c, g.ints((1,) + per)], (1,) + per, dtype=np.int64)
            cache[per] = g.node1("Cast", [c], (1,) + per, dtype=_U64, to=to64)
        # Row index b as a [batch, 1, ...] tensor derived from x (a cumulative sum of ones over
        # a reduction of each row) rather than a Range over the batch size: shape inference
        # then keeps the symbolic batch dim, where a Range (or Slice) output gets an unknown
        # one that spreads through the graph and made ORT's session creation several times
        # slower.  Cast-then-multiply-by-0 ignores x's values (even NaN/Inf).  Shared by all
        # dropout sites with the same batch dim and rank.
        rank = like.rank
        col = (like.shape[0],) + (1,) * (rank - 1)
        rows = g.cache.setdefault("dropout_rows", {})
        if col not in rows:
            head = g.node1("ReduceMax", [like, g.ints(range(1, rank))], col, keepdims=1)
            zero = g.node1("Mul", [g.node1("Cast", [head], col, dtype=np.int64,
                                           to=np_to_onnx_dtype(np.int64)), i64(0)], col,
                           dtype=np.int64)
            ones = g.node1("Add", [zero, i64(1)], col, dtype=np.int64)
            b = g.node1("Sub", [g.node1("CumSum", [ones, i64(0)], col, dtype=np.int64), i64(1)],
                        col, dtype=np.int64)
            rows[col] = g.node1("Cast", [b], col, dtype=_U64, to=to64)
        b = rows[col]
        bk = g.node1("Mul", [b, g.node1("Mul", [key, _u64(g, n)], (), dtype=_U64)], col,
                     dtype=_U64)
        ck = g.node1("Mul", [cache[per], key], (1,) + per, dtype=_U64)
        return g.node1("Add", [bk, ck], like.shape, dtype=_U64)
    n = g.node1("Size", [like], (), dtype=np.int64)
    idx = g.node1("Range", [i64(0), n, i64(1)], ("n",), dtype=np.int64)
    idx = g.node1("Reshape", [idx, shape_of(like)], like.shape, dtype=np.int64)
    idx = g.node1("Cast", [idx], like.shape, dtype=_U64, to=to64)
    return g.node1("Mul", [idx, key], like.shape, dtype=_U64)


def _dropout_bwd(g, e, gys, needs):
    keep, scale = e.saved["keep"], e.saved["scale"]
    x = e.inputs[0]
    gy = g.node1("Mul", [gys[0], g.scalar(scale, x.dtype)], x.shape)
    return [g.node1("Where", [keep, gy, g.scalar(0.0, x.dtype)], x.shape)]


def dropout(x: Value, rate: float, key: Value) -> Value:
    """Inverted dropout: zero each element with probability `rate` (to 2^-32), scale the rest
    by 1/(1-rate).  The mask is a deterministic function of (key, element index)."""
    g = x.graph
    if rate <= 0.0:
        return x
    threshold = int(round(rate * _TWO32))
    keep = _squares_keep(g, _counter_times_key(g, x, key), key, threshold, x.shape)
    scale = 1.0 / (1.0 - rate)
    y = g.node1("Where", [keep, g.node1("Mul", [x, g.scalar(scale, x.dtype)], x.shape),
                          g.scalar(0.0, x.dtype)], x.shape)
    g.record(_dropout_bwd, [x], [y], keep=keep, scale=scale)
    return y
