"""Independent PyTorch (functional) versions of libdpm's networks, for the parity checks.

Written from docs/workflow.md (section 6) and PyTorch's own layers (F.linear, F.conv2d, F.group_norm, ...), not
from the graph generator, so that agreeing with them means something. Parameters are a dict
name -> tensor with the manifest's names, so a libdpm weights file loads directly.

`Dropout` reproduces the training graph's in-graph dropout masks (dpmgen/ops/nn.py: the
Squares counter-based generator keyed by (dropout_seed, step, site)) in numpy, so that a
PyTorch training step with dropout can be compared with libdpm's element for element.
PyTorch is imported lazily by the callers (it is not a dependency of the generator).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dpmgen.layers import sinusoidal_frequencies

F = torch.nn.functional


def timestep(t, dim, max_period=10000.0):
    """cat[cos(t f), sin(t f)] with the generator's float32 frequencies (see parity.py for how
    far they are from PyTorch's own: 1 ulp in some entries, different exp implementations)."""
    freqs = torch.from_numpy(sinusoidal_frequencies(dim, max_period)).to(t.dtype)
    args = t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def lin(P, name, x):
    return F.linear(x, P[f"{name}.weight"], P[f"{name}.bias"])


def conv(P, name, x, stride=1):
    w = P[f"{name}.weight"]
    return F.conv2d(x, w, P[f"{name}.bias"], stride=stride, padding=w.shape[-1] // 2)


def gn(P, name, x, groups):
    return F.group_norm(x, groups, P[f"{name}.weight"], P[f"{name}.bias"], eps=1e-5)


def toy2d_out(cfg, P, x, t):
    feats = timestep(t, cfg.temb_features, cfg.max_period)
    h = x
    n = len(cfg.dims) - 1
    for i in range(n):
        y = lin(P, f"layers.{i}.fc", h)
        a = lin(P, f"layers.{i}.time_embedding.mlp.2",
                F.silu(lin(P, f"layers.{i}.time_embedding.mlp.0", feats)))
        h = a * y
        if i < n - 1:
            h = F.relu(h)
    return h


def attention(P, name, x, groups):
    b, c, hh, ww = x.shape
    h = gn(P, f"{name}.group_norm", x, groups)
    q = conv(P, f"{name}.proj_q", h).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
    k = conv(P, f"{name}.proj_k", h).reshape(b, c, hh * ww)
    v = conv(P, f"{name}.proj_v", h).permute(0, 2, 3, 1).reshape(b, hh * ww, c)
    w = F.softmax(torch.bmm(q, k) * (c ** -0.5), dim=-1)
    h = torch.bmm(w, v).reshape(b, hh, ww, c).permute(0, 3, 1, 2)
    return x + conv(P, f"{name}.proj", h)


def resblock(cfg, P, name, x, temb_act, cin, cout, attn, drop=None):
    G = cfg.norm_groups
    h = conv(P, f"{name}.block1.2", F.silu(gn(P, f"{name}.block1.0", x, G)))
    h = h + lin(P, f"{name}.temb_proj.1", temb_act)[:, :, None, None]
    h = F.silu(gn(P, f"{name}.block2.0", h, G))
    h = conv(P, f"{name}.block2.3", drop(h) if drop else h)
    h = h + (conv(P, f"{name}.shortcut", x) if cin != cout else x)
    return attention(P, f"{name}.attn", h, G) if attn else h


def unet_out(cfg, P, x, t, labels, drop=None):
    """The U-Net's output; `drop(h)`, when given, is applied where the ResBlocks drop out
    (after block2's SiLU), once per ResBlock in forward order (see `Dropout`)."""
    temb = lin(P, "time_embedding.mlp.2",
               F.silu(lin(P, "time_embedding.mlp.0", timestep(t, cfg.temb_features))))
    if cfg.num_classes:
        temb = temb + P["class_embedding.weight"][labels]
    ta = F.silu(temb)
    h = conv(P, "head", x)
    hs, chs, now, i = [h], [cfg.ch], cfg.ch, 0
    for level, mult in enumerate(cfg.ch_mult):
        out = cfg.ch * mult
        for _ in range(cfg.num_res_blocks):
            h = resblock(cfg, P, f"downblocks.{i}", h, ta, now, out, level in cfg.attn,
                         drop)
            now = out
            hs.append(h)
            chs.append(now)
            i += 1
        if level != len(cfg.ch_mult) - 1:
            h = conv(P, f"downblocks.{i}.main", h, stride=2)
            hs.append(h)
            chs.append(now)
            i += 1
    h = resblock(cfg, P, "middleblocks.0", h, ta, now, now, True, drop)
    h = resblock(cfg, P, "middleblocks.1", h, ta, now, now, False, drop)
    i = 0
    for level, mult in reversed(list(enumerate(cfg.ch_mult))):
        out = cfg.ch * mult
        for _ in range(cfg.num_res_blocks + 1):
            c_skip = chs.pop()
            h = resblock(cfg, P, f"upblocks.{i}", torch.cat([h, hs.pop()], dim=1), ta,
                         now + c_skip, out, level in cfg.attn, drop)
            now = out
            i += 1
        if level != 0:
            h = conv(P, f"upblocks.{i}.main", F.interpolate(h, scale_factor=2, mode="nearest"))
            i += 1
    return conv(P, "tail.2", F.silu(gn(P, "tail.0", h, cfg.norm_groups)))


def classifier_logits(cfg, P, x):
    G = cfg.norm_groups
    h = F.silu(gn(P, "stem.norm", conv(P, "stem.conv", x), G))
    for i in range(len(cfg.widths) - 1):
        h = F.silu(gn(P, f"stages.{i}.norm1", conv(P, f"stages.{i}.down", h, stride=2), G))
        h = F.silu(gn(P, f"stages.{i}.norm2", conv(P, f"stages.{i}.conv", h), G))
    return lin(P, "head", h.mean(dim=(2, 3)))


# ---- dropout masks of the training graph ------------------------------------------------------
_M64 = (1 << 64) - 1
_KEY_A = 0xC8E4FD154CE32F6D
_KEY_B = 0x9E3779B97F4A7C15
_KEY_C = 0xD1B54A32D192ED03


def _rot32(x):
    return ((x >> np.uint64(32)) | (x << np.uint64(32)))


def _squares_out(y: np.ndarray, key: np.uint64) -> np.ndarray:
    """Squares, two rounds, from y = ctr * key (uint64 arrays, wrapping): 32-bit outputs."""
    with np.errstate(over="ignore"):
        z = y + key
        x = _rot32(y * y + y)
        x = _rot32(x * x + z)
        return (x * x + y) >> np.uint64(32)


def dropout_key(seed: int, step: int, salt: int) -> np.uint64:
    """The key of dropout site `salt` (1-based, forward order) at 1-based `step`."""
    ctr = np.array([((seed << 48) + (step << 16) + salt) & _M64], np.uint64)
    with np.errstate(over="ignore"):
        hi = int(_squares_out(ctr * np.uint64(_KEY_A), np.uint64(_KEY_A))[0])
        lo = int(_squares_out(ctr * np.uint64(_KEY_B), np.uint64(_KEY_B))[0])
    return np.uint64(((hi << 32) + lo + _KEY_C) & _M64)


def keep_mask(shape, rate: float, key: np.uint64) -> np.ndarray:
    """The graph's keep mask for a tensor of `shape`: Squares of the row-major element index."""
    n = int(np.prod(shape))
    with np.errstate(over="ignore"):
        y = np.arange(n, dtype=np.uint64) * key
    out = _squares_out(y, key)
    return (out >= np.uint64(int(round(rate * 2 ** 32)))).reshape(shape)


class Dropout:
    """Inverted dropout with the training graph's masks: call once per ResBlock in forward
    order (site 1, 2, ...), as the graph numbers its dropout sites."""

    def __init__(self, rate: float, seed: int, step: int):
        self.rate, self.seed, self.step, self.site = rate, seed, step, 0
        self.masks = []

    def __call__(self, h):
        self.site += 1
        key = dropout_key(self.seed, self.step, self.site)
        keep = torch.from_numpy(keep_mask(tuple(h.shape), self.rate, key))
        self.masks.append(keep)
        return torch.where(keep, h * (1.0 / (1.0 - self.rate)), torch.zeros((), dtype=h.dtype))
