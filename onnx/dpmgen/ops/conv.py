"""2-D convolution (square kernels, symmetric padding, stride 1 or 2) and nearest x2 upsampling.

The gradient formulations were chosen by timing them in ONNX Runtime's CPU provider on
unet_small's shapes (batch 16):
- input gradient, stride 1: a Conv with the transposed, flipped kernel (0.9x the forward
  conv; ConvTranspose was ~25% slower);
- input gradient, stride 2: ConvTranspose with output_padding;
- weight gradient, stride 1: one Gemm per kernel tap over shifted views of the padded input
  (1.3x the forward conv, versus 2.8x for the textbook "convolve the input with the output
  gradient", whose GEMMs are only k*k columns wide, and 2.3x for an im2col built by a
  convolution with identity kernels);
- weight gradient, stride 2: that textbook dilated convolution, which wins there.
"""

from __future__ import annotations

from ..graph import Value

_BIG = 2 ** 62  # "to the end" for Slice


def _out_dim(d, k: int, s: int, p: int):
    if isinstance(d, int):
        return (d + 2 * p - k) // s + 1
    if s == 1 and 2 * p == k - 1:
        return d
    if s == 2 and 2 * p == k - 1:
        return f"{d}/2"
    raise ValueError(f"symbolic dim {d} with kernel {k} stride {s} pad {p}")


def _tr01(g, x: Value) -> Value:
    """Swap the first two axes (NCHW <-> CNHW)."""
    return g.node1("Transpose", [x], (x.shape[1], x.shape[0]) + x.shape[2:], perm=[1, 0, 2, 3])


def _grad_input(g, gy: Value, w: Value, x: Value, k: int, s: int, p: int) -> Value:
    if s == 1:
        wt = _tr01(g, w)  # [C, O, k, k]
        if k > 1:
            wt = g.node1("Slice", [wt, g.ints([-1, -1]), g.ints([-_BIG, -_BIG]), g.ints([2, 3]),
                                   g.ints([-1, -1])], wt.shape)
        q = k - 1 - p
        return g.node1("Conv", [gy, wt], x.shape, pads=[q] * 4, kernel_shape=[k, k])
    h, ho = x.shape[2], gy.shape[2]
    if isinstance(h, int) and isinstance(ho, int):
        op = h - ((ho - 1) * s - 2 * p + k)
    else:
        op = s + 2 * p - k  # assumes H == s * Ho (even sizes), checked by the networks
    if not 0 <= op < s:
        raise ValueError("unsupported conv geometry for the input gradient")
    return g.node1("ConvTranspose", [gy, w], x.shape, strides=[s, s], pads=[p] * 4,
                   output_padding=[op, op], kernel_shape=[k, k])


def _grad_weight(g, gy: Value, x: Value, w: Value, k: int, s: int, p: int) -> Value:
    o, c = w.shape[0], w.shape[1]
    gyt = _tr01(g, gy)  # [O, B, Ho, Wo]
    xt = _tr01(g, x)  # [C, B, H, W]
    if s == 1:
        gym = g.node1("Reshape", [gyt, g.ints([o, -1])], (o, "bhw"))
        if p:
            xt = g.node1("Pad", [xt, g.ints([0, 0, p, p, 0, 0, p, p])],
                         (c, x.shape[0], "hp", "wp"))
        taps = []
        for i in range(k):
            for j in range(k):
                if k == 1 and p == 0:
                    view = xt
                else:
                    ends = [(i - k + 1) or _BIG, (j - k + 1) or _BIG]
                    view = g.node1("Slice", [xt, g.ints([i, j]), g.ints(ends), g.ints([2, 3])],
                                   (c, x.shape[0], "ho", "wo"))
                vm = g.node1("Reshape", [view, g.ints([c, -1])], (c, "bhw"))
                taps.append(g.node1("Gemm", [gym, vm], (o, c), transB=1))
        if k == 1:
            return g.node1("Reshape", [taps[0], g.ints(list(w.shape))], w.shape)
        taps = [g.node1("Unsqueeze", [t, g.ints([2])], (o, c, 1)) for t in taps]
        cat = g.node1("Concat", taps, (o, c, k * k), axis=2)
        return g.node1("Reshape", [cat, g.ints(list(w.shape))], w.shape)
    # Stride s: correlate the input (batch as channels) with the dilated output gradient.
    h, ho = x.shape[2], gy.shape[2]
    if isinstance(h, int) and isinstance(ho, int):
        pb = k + s * (ho - 1) - h - p
    else:
        pb = k - s - p  # H == s * Ho
    if pb < 0:
        raise ValueError("unsupported conv geometry for the weight gradient")
    gwt = g.node1("Conv", [xt, gyt], (c, o, k, k), pads=[p, p, pb, pb], dilations=[s, s])
    return _tr01(g, gwt)


def _conv_bwd(g, e, gys, needs):
    x, w, b = e.inputs
    k, s, p = e.saved["k"], e.saved["s"], e.saved["p"]
    gy = gys[0]
    gx = _grad_input(g, gy, w, x, k, s, p) if needs[0] else None
    gw = _grad_weight(g, gy, x, w, k, s, p) if needs[1] else None
    gb = g.node1("ReduceSum", [gy, g.ints([0, 2, 3])], b.shape, keepdims=0) if needs[2] else None
    return [gx, gw, gb]


def conv2d(x: Value, w: Value, b: Value, stride: int = 1, pad: int = 0) -> Value:
    """NCHW convolution, weight [O, C, k, k] (PyTorch layout), bias [O]."""
    k = w.shape[2]
    if w.shape[3] != k or x.shape[1] != w.shape[1] or stride not in (1, 2):
        raise ValueError(f"conv2d: x{x.shape} w{w.shape} stride {stride}")
    g = x.graph
    shape = (x.shape[0], w.shape[0], _out_dim(x.shape[2], k, stride, pad),
             _out_dim(x.shape[3], k, stride, pad))
    y = g.node1("Conv", [x, w, b], shape, pads=[pad] * 4, strides=[stride, stride],
                kernel_shape=[k, k])
    g.record(_conv_bwd, [x, w, b], [y], k=k, s=stride, p=pad)
    return y


def _up_bwd(g, e, gys, needs):
    x = e.inputs[0]
    gy = gys[0]
    # Each input pixel fed a 2x2 block: its gradient is the block sum = 4 * block mean.
    pooled = g.node1("AveragePool", [gy], x.shape, kernel_shape=[2, 2], strides=[2, 2])
    return [g.node1("Mul", [pooled, g.scalar(4.0, x.dtype)], x.shape)]



def upsample_nearest2x(x: Value) -> Value:
    """Nearest-neighbour x2 upsampling of NCHW (PyTorch F.interpolate(scale_factor=2))."""
    g = x.graph

    def dbl(d):
        return 2 * d if isinstance(d, int) else f"2*{d}"

    b, c, h, w = x.shape
    shape = (b, c, dbl(h), dbl(w))
    if isinstance(c, int) and isinstance(h, int) and isinstance(w, int):
        # [B,C,H,1,W,1] expanded to [B,C,H,2,W,2], then merged: keeps the symbolic batch dim
        # through ONNX shape inference (Resize does not), at the same cost.
        u = g.node1("Unsqueeze", [x, g.ints([3, 5])], (b, c, h, 1, w, 1))
        u = g.node1("Expand", [u, g.ints([1, 1, 1, 2, 1, 2])], (b, c, h, 2, w, 2))
        y = g.node1("Reshape", [u, g.ints([0, c, 2 * h, 2 * w])], shape)
    else:
        scales = g.const([1.0, 1.0, 2.0, 2.0], dtype="float32")
        y = g.node1("Resize", [x, None, scales], shape, mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    g.record(_up_bwd, [x], [y])
    return y
