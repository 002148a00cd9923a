"""unet: the class-conditional DDPM U-Net of the AFHQ exercise (docs/workflow.md, section 6).

Structure (module names as the reference code, so state_dict keys match):
    time_embedding.mlp   sinusoidal(256) -> Linear(256, tdim) -> SiLU -> Linear(tdim, tdim)
    class_embedding      Embedding(num_classes + 1, tdim), added to the time embedding
    head                 conv3x3(in_channels -> ch)
    downblocks           per level: num_res_blocks ResBlocks (attention at `attn` levels),
                         then (except at the last level) DownSample = stride-2 conv3x3 (.main)
    middleblocks         ResBlock with attention, ResBlock without
    upblocks             per level (reversed): num_res_blocks + 1 ResBlocks on the channel
                         concatenation with the skip, then (except at level 0) UpSample =
                         nearest x2 + conv3x3 (.main)
    tail                 GroupNorm -> SiLU -> conv3x3(ch -> in_channels), gain 1e-5
ResBlock: block1 = GN -> SiLU -> conv3x3; + temb_proj = SiLU -> Linear(tdim, out);
          block2 = GN -> SiLU -> Dropout -> conv3x3 (gain 1e-5); + shortcut (1x1 conv when the
          channel count changes); then attn (AttnBlock, output projection gain 1e-5).
Initialisation: Xavier-uniform weights and zero biases everywhere, gain 1e-5 on the last conv
of each ResBlock, on the attention output projection and on the output conv; GroupNorm
weight 1, bias 0; class embedding N(0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .. import init as I
from .. import layers
from ..context import BuildContext
from ..graph import Graph, Value
from ..ops import conv as C
from ..ops import elementwise as E
from ..ops import nn as N
from ..ops import shape as S
from . import Network


@dataclass
class UNetConfig:
    name: str = "unet"
    resolution: int = 64
    in_channels: int = 3
    ch: int = 128
    ch_mult: list = field(default_factory=lambda: [1, 2, 2, 2])
    attn: list = field(default_factory=lambda: [1])  # level indices with attention
    num_res_blocks: int = 4
    dropout: float = 0.1
    num_classes: int = 3  # real classes, labels 1..K; 0 is the null class
    norm_groups: int = 32
    tdim: int = 0  # time-embedding width; 0 means 4 * ch
    temb_features: int = 256
    max_period: float = 10000.0
    seed: int = 0

    @property
    def time_dim(self) -> int:
        return self.tdim or 4 * self.ch


AFHQ64 = UNetConfig(name="afhq64", seed=64064)

# Small enough to train on 2 CPU cores: 32x32, two levels, attention at 16x16.
UNET_SMALL = UNetConfig(name="unet_small", resolution=32, ch=32, ch_mult=[1, 2, 2], attn=[1],
                        num_res_blocks=1, dropout=0.1, num_classes=3, norm_groups=8,
                        seed=32032)


def tiny(**kw) -> UNetConfig:
    """A minimal configuration for gradient checks."""
    base = UNetConfig(name="unet_tiny", resolution=8, in_channels=2, ch=4, ch_mult=[1, 2],
                      attn=[1], num_res_blocks=1, dropout=0.1, num_classes=2, norm_groups=2,
                      temb_features=8, seed=7)
    return replace(base, **kw)


class UNet(Network):
    task = "eps"

    def __init__(self, config: UNetConfig):
        self.config = config
        self.name = config.name
        self.seed = config.seed
        levels = len(config.ch_mult)
        if config.resolution % (2 ** (levels - 1)):
            raise ValueError("resolution must be divisible by 2^(levels-1)")

    def config_dict(self) -> dict:
        d = super().config_dict()
        d["tdim"] = self.config.time_dim
        return d

    def metadata(self) -> dict[str, str]:
        c = self.config
        return {"dpm.num_classes": str(c.num_classes), "dpm.channels": str(c.in_channels),
                "dpm.resolution": str(c.resolution)}

    def _image(self):
        c = self.config
        return ("batch", c.in_channels, c.resolution, c.resolution)

    def infer_inputs(self, g: Graph) -> dict[str, Value]:
        ins = {"x": g.input("x", self._image()), "t": g.input("t", ("tb",))}
        if self.config.num_classes:
            ins["labels"] = g.input("labels", ("batch",), "int64")
        return ins

    def train_inputs(self, g: Graph) -> dict[str, Value]:
        ins = {"x": g.input("x_t", self._image()), "t": g.input("t", ("batch",))}
        if self.config.num_classes:
            ins["labels"] = g.input("labels", ("batch",), "int64")
        ins["eps"] = g.input("eps", self._image())
        return ins

    # ---- blocks ---------------------------------------------------------------------------------
    def _resblock(self, ctx, name, x, temb_act, c_in, c_out, attn):
        cfg = self.config
        G = cfg.norm_groups
        with ctx.g.scope(name):
            h = layers.group_norm(ctx, f"{name}.block1.0", x, G)
            h = layers.conv2d(ctx, f"{name}.block1.2", E.silu(h), c_in, c_out, 3)
            tp = layers.linear(ctx, f"{name}.temb_proj.1", temb_act, cfg.time_dim, c_out)
            h = E.add(h, S.unsqueeze(tp, [2, 3]))
            h = layers.group_norm(ctx, f"{name}.block2.0", h, G)
            h = ctx.dropout(E.silu(h), cfg.dropout)
            h = layers.conv2d(ctx, f"{name}.block2.3", h, c_out, c_out, 3, gain=1e-5)
            sc = layers.conv2d(ctx, f"{name}.shortcut", x, c_in, c_out, 1) if c_in != c_out else x
            h = E.add(h, sc)
            if attn:
                h = layers.attention(ctx, f"{name}.attn", h, G)
        return h

    def forward(self, ctx: BuildContext, inputs: dict[str, Value]) -> dict[str, Value]:
        cfg = self.config
        g = ctx.g
        tdim = cfg.time_dim
        with g.scope("time_embedding"):
            feats = layers.timestep_features(ctx, inputs["t"], cfg.temb_features, cfg.max_period)
            temb = layers.time_mlp(ctx, "time_embedding.mlp", feats, tdim, init="xavier")
        if cfg.num_classes:
            table = ctx.param("class_embedding.weight", (cfg.num_classes + 1, tdim), I.normal(1.0))
            temb = E.add(temb, N.embedding(table, inputs["labels"]))
        # Every ResBlock starts its time projection with SiLU(temb): computed once, shared.
        temb_act = E.silu(temb)

        h = layers.conv2d(ctx, "head", inputs["x"], cfg.in_channels, cfg.ch, 3)
        hs = [h]
        chs = [cfg.ch]
        now = cfg.ch
        i = 0
        levels = len(cfg.ch_mult)
        for level, mult in enumerate(cfg.ch_mult):
            out = cfg.ch * mult
            for _ in range(cfg.num_res_blocks):
                h = self._resblock(ctx, f"downblocks.{i}", h, temb_act, now, out, level in cfg.attn)
                now = out
                hs.append(h)
                chs.append(now)
                i += 1
            if level != levels - 1:
                h = layers.conv2d(ctx, f"downblocks.{i}.main", h, now, now, 3, stride=2)
                hs.append(h)
                chs.append(now)
                i += 1
        h = self._resblock(ctx, "middleblocks.0", h, temb_act, now, now, True)
        h = self._resblock(ctx, "middleblocks.1", h, temb_act, now, now, False)
        i = 0
        for level, mult in reversed(list(enumerate(cfg.ch_mult))):
            out = cfg.ch * mult
            for _ in range(cfg.num_res_blocks + 1):
                skip, c_skip = hs.pop(), chs.pop()
                h = S.concat([h, skip], axis=1)
                h = self._resblock(ctx, f"upblocks.{i}", h, temb_act, now + c_skip, out,
                                   level in cfg.attn)
                now = out
                i += 1
            if level != 0:
                h = C.upsample_nearest2x(h)
                h = layers.conv2d(ctx, f"upblocks.{i}.main", h, now, now, 3)
                i += 1
        assert not hs
        with g.scope("tail"):
            h = layers.group_norm(ctx, "tail.0", h, cfg.norm_groups)
            h = layers.conv2d(ctx, "tail.2", E.silu(h), now, cfg.in_channels, 3, gain=1e-5)
        return {"out": h}
