"""Layers shared by the networks.  Parameter names follow PyTorch state_dict conventions
(`<module>.weight`, `<module>.bias`) and the reference code's module names, so a PyTorch
checkpoint maps onto the weights file by name."""

from __future__ import annotations

import math

import numpy as np

from . import init as I
from .context import BuildContext
from .graph import Value
from .ops import conv as C
from .ops import elementwise as E
from .ops import linalg as L
from .ops import nn as N
from .ops import norm as G
from .ops import shape as S


def linear(ctx: BuildContext, name: str, x: Value, n_in: int, n_out: int,
           init: str = "xavier", gain: float = 1.0) -> Value:
    """nn.Linear.  init "xavier": Xavier-uniform weight, zero bias; "torch": PyTorch default."""
    if init == "xavier":
        wi, bi = I.xavier_uniform(gain), I.zeros()
    elif init == "torch":
        wi = bi = I.torch_linear_default(n_in)
    else:
        raise ValueError(init)
    w = ctx.param(f"{name}.weight", (n_out, n_in), wi)
    b = ctx.param(f"{name}.bias", (n_out,), bi)
    return L.linear(x, w, b)


def conv2d(ctx: BuildContext, name: str, x: Value, c_in: int, c_out: int, k: int,
           stride: int = 1, gain: float = 1.0) -> Value:
    """nn.Conv2d(c_in, c_out, k, stride, padding=k//2): Xavier-uniform weight, zero bias."""
    w = ctx.param(f"{name}.weight", (c_out, c_in, k, k), I.xavier_uniform(gain))
    b = ctx.param(f"{name}.bias", (c_out,), I.zeros())
    return C.conv2d(x, w, b, stride=stride, pad=k // 2)


def group_norm(ctx: BuildContext, name: str, x: Value, groups: int, eps: float = 1e-5) -> Value:
    c = x.shape[1]
    gamma = ctx.param(f"{name}.weight", (c,), I.ones())
    beta = ctx.param(f"{name}.bias", (c,), I.zeros())
    return G.group_norm(x, gamma, beta, groups, eps)


def sinusoidal_frequencies(dim: int, max_period: float = 10000.0) -> np.ndarray:
    """exp(-ln(max_period) * arange(half) / half) with the reference's float32 arithmetic."""
    half = dim // 2
    a = np.arange(half, dtype=np.float32) / np.float32(half)
    return np.exp(np.float32(-math.log(max_period)) * a).astype(np.float32)


def timestep_features(ctx: BuildContext, t: Value, dim: int = 256,
                      max_period: float = 10000.0) -> Value:
    """cat[cos(t f), sin(t f)] for t [n] -> [n, dim].  Depends on t only, so it is not
    differentiated (and with t of shape [1] it is computed once per batch)."""
    if dim % 2:
        raise ValueError("odd embedding sizes are not supported")
    g = ctx.g
    freqs = g.const(sinusoidal_frequencies(dim, max_period).astype(g.fdt)[None, :])
    n = t.shape[0]
    col = g.node1("Unsqueeze", [t, g.ints([1])], (n, 1))
    args = g.node1("Mul", [col, freqs], (n, dim // 2))
    cos = g.node1("Cos", [args], (n, dim // 2))
    sin = g.node1("Sin", [args], (n, dim // 2))
    return g.node1("Concat", [cos, sin], (n, dim), axis=1)


def time_mlp(ctx: BuildContext, name: str, feats: Value, hidden: int, init: str) -> Value:
    """TimeEmbedding.mlp: Linear(256, hidden) -> SiLU -> Linear(hidden, hidden)."""
    h = linear(ctx, f"{name}.0", feats, feats.shape[1], hidden, init=init)
    h = E.silu(h)
    return linear(ctx, f"{name}.2", h, hidden, hidden, init=init)


def attention(ctx: BuildContext, name: str, x: Value, groups: int,
              proj_gain: float = 1e-5) -> Value:
    """AttnBlock: x + proj(softmax(q^T k / sqrt(C)) v) with q, k, v 1x1 convs of GroupNorm(x),
    single head over the H*W positions."""
    b, c, hh, ww = x.shape
    h = group_norm(ctx, f"{name}.group_norm", x, groups)
    q = conv2d(ctx, f"{name}.proj_q", h, c, c, 1)
    k = conv2d(ctx, f"{name}.proj_k", h, c, c, 1)
    v = conv2d(ctx, f"{name}.proj_v", h, c, c, 1)
    if not (isinstance(hh, int) and isinstance(ww, int)):
        raise ValueError("attention needs a static resolution")
    n = hh * ww
    q = S.transpose(S.reshape(q, [0, c, -1], (b, c, n)), [0, 2, 1])  # [B, N, C]
    k = S.reshape(k, [0, c, -1], (b, c, n))  # [B, C, N]
    v = S.transpose(S.reshape(v, [0, c, -1], (b, c, n)), [0, 2, 1])  # [B, N, C]
    w = E.mul(L.matmul(q, k), float(c) ** -0.5)
    w = N.softmax(w, axis=-1)
    o = L.matmul(w, v)  # [B, N, C]
    o = S.reshape(S.transpose(o, [0, 2, 1]), [0, c, hh, ww])
    o = conv2d(ctx, f"{name}.proj", o, c, c, 1, gain=proj_gain)
    return E.add(x, o)
