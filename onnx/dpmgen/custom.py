"""Networks for the user's own data: a U-Net or a 2D MLP of any class count, resolution,
channel count, width and depth, described by a small JSON spec.

libdpm (src/train/custom.rs) writes the spec, calls `gen.py custom --spec JSON --out DIR` in the
set-up's Python environment and caches the result by a hash of the spec, so one configuration
is generated once. The graphs are generated per configuration rather than made shape-generic:
the class count sets the shape of the class-embedding table, the channel count those of the
first and last convolutions, width and depth every other parameter, so none of them can be a
runtime dimension of a parameter tensor; the resolution could be, but libdpm samples only
models with a static sample shape (and the builder's static shapes are what keeps ORT's
session creation fast), so it is fixed too.

Spec keys (every key is required, the Rust side writes them all, so that the hash names the
whole architecture):

    unet: {"network": "unet", "name", "resolution", "channels", "classes", "width", "depth",
           "attention": [levels], "res_blocks", "dropout", "seed"}
    mlp:  {"network": "mlp", "name", "dim", "width", "depth", "seed"}

U-Net: base width W = ch, depth D = number of resolution levels with channel multipliers
[1, 2, 2, ...] (as unet_small and afhq64), GroupNorm groups = the largest of 32, 16, 8, 4, 2, 1
that divides W and is at most W / 4 (8 for W = 32 as unet_small, 32 for W = 128 as afhq64),
time-embedding width 4 W, classes K (0 = unconditional: no labels input).
MLP: the TimeLinear network of toy2d with D hidden layers of width W (toy2d: W 128, D 3).
"""

from __future__ import annotations

from .nets.toy2d import Toy2D, Toy2DConfig
from .nets.unet import UNet, UNetConfig

UNET_KEYS = ("network", "name", "resolution", "channels", "classes", "width", "depth",
             "attention", "res_blocks", "dropout", "seed")
MLP_KEYS = ("network", "name", "dim", "width", "depth", "seed")


def norm_groups(width: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if width % g == 0 and g <= max(1, width // 4):
            return g
    return 1


def ch_mult(depth: int) -> list[int]:
    return [1] + [2] * (depth - 1)


def _check_keys(spec: dict, keys) -> None:
    missing = [k for k in keys if k not in spec]
    extra = [k for k in spec if k not in keys]
    if missing or extra:
        raise ValueError(f"spec keys: missing {missing}, unknown {extra}")


def _positive(spec: dict, *keys) -> None:
    for k in keys:
        v = spec[k]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k} must be a positive integer, got {v!r}")


def unet_config(spec: dict) -> UNetConfig:
    _check_keys(spec, UNET_KEYS)
    _positive(spec, "resolution", "width", "depth", "res_blocks")
    if spec["channels"] not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {spec['channels']!r}")
    k = spec["classes"]
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"classes must be >= 0, got {k!r}")
    d, r = spec["depth"], spec["resolution"]
    if r % (2 ** (d - 1)):
        raise ValueError(f"resolution {r} is not divisible by 2^(depth-1) = {2 ** (d - 1)}")
    attn = list(spec["attention"])
    if any(not isinstance(a, int) or not 0 <= a < d for a in attn):
        raise ValueError(f"attention levels must be in 0..{d - 1}, got {attn}")
    p = float(spec["dropout"])
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    w = spec["width"]
    return UNetConfig(name=spec["name"], resolution=r, in_channels=spec["channels"], ch=w,
                      ch_mult=ch_mult(d), attn=sorted(set(attn)), num_res_blocks=spec["res_blocks"],
                      dropout=p, num_classes=k, norm_groups=norm_groups(w), seed=spec["seed"])


def network(spec: dict):
    """The Network a spec describes."""
    kind = spec.get("network")
    if kind == "unet":
        return UNet(unet_config(spec))
    if kind == "mlp":
        _check_keys(spec, MLP_KEYS)
        _positive(spec, "dim", "width", "depth")
        dims = [spec["dim"]] + [spec["width"]] * spec["depth"] + [spec["dim"]]
        return Toy2D(Toy2DConfig(dims=dims, seed=spec["seed"]), name=spec["name"])
    raise ValueError(f"unknown network kind {kind!r} (unet, mlp)")


def param_count(spec: dict) -> int:
    """The parameter count in closed form (checked against the built graphs by the tests;
    src/train/custom.rs has the same formula for the size report before generation)."""
    if spec["network"] == "mlp":
        dims = [spec["dim"]] + [spec["width"]] * spec["depth"] + [spec["dim"]]
        f = 256  # sinusoidal features
        n = 0
        for a, b in zip(dims[:-1], dims[1:]):
            n += a * b + b  # fc
            n += f * b + b + b * b + b  # time MLP
        return n
    c = unet_config(spec)
    w, td, f = c.ch, c.time_dim, c.temb_features
    conv = lambda i, o, k: i * o * k * k + o  # noqa: E731
    gn = lambda ch: 2 * ch  # noqa: E731

    def res(i, o, attn):
        n = gn(i) + conv(i, o, 3) + td * o + o + gn(o) + conv(o, o, 3)
        if i != o:
            n += conv(i, o, 1)
        if attn:
            n += gn(o) + 4 * conv(o, o, 1)
        return n

    n = f * td + td + td * td + td  # time MLP
    if c.num_classes:
        n += (c.num_classes + 1) * td
    n += conv(c.in_channels, w, 3)
    chs, now = [w], w
    levels = len(c.ch_mult)
    for lv, m in enumerate(c.ch_mult):
        for _ in range(c.num_res_blocks):
            n += res(now, w * m, lv in c.attn)
            now = w * m
            chs.append(now)
        if lv != levels - 1:
            n += conv(now, now, 3)
            chs.append(now)
    n += res(now, now, True) + res(now, now, False)
    for lv, m in reversed(list(enumerate(c.ch_mult))):
        for _ in range(c.num_res_blocks + 1):
            n += res(now + chs.pop(), w * m, lv in c.attn)
            now = w * m
        if lv != 0:
            n += conv(now, now, 3)
    n += gn(now) + conv(now, c.in_channels, 3)
    return n
