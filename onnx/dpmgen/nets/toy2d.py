"""toy2d: the TimeLinear MLP of the 2-D exercise (docs/workflow.md, section 6).

    TimeLinear(x, t) = time_embedding(t) * fc(x)
    layers 2 -> 128 -> 128 -> 128 -> 2, ReLU after every layer but the last;
    time_embedding = Linear(256, h) -> SiLU -> Linear(h, h) on sinusoidal features of t.

All Linear layers use PyTorch's default initialisation, as the reference never overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import layers
from ..context import BuildContext
from ..graph import Graph, Value
from ..ops import elementwise as E
from . import Network


@dataclass
class Toy2DConfig:
    dims: list = field(default_factory=lambda: [2, 128, 128, 128, 2])
    temb_features: int = 256
    max_period: float = 10000.0
    seed: int = 20241


class Toy2D(Network):
    task = "eps"

    def __init__(self, config: Toy2DConfig, name: str = "toy2d"):
        self.config = config
        self.name = name
        self.seed = config.seed

    def infer_inputs(self, g: Graph) -> dict[str, Value]:
        d = self.config.dims[0]
        return {"x": g.input("x", ("batch", d)), "t": g.input("t", ("tb",))}

    def train_inputs(self, g: Graph) -> dict[str, Value]:
        d = self.config.dims[0]
        return {"x": g.input("x_t", ("batch", d)), "t": g.input("t", ("batch",)),
                "eps": g.input("eps", ("batch", d))}

    def forward(self, ctx: BuildContext, inputs: dict[str, Value]) -> dict[str, Value]:
        cfg = self.config
        # The sinusoidal features depend on t alone and are shared by all four layers.
        feats = layers.timestep_features(ctx, inputs["t"], cfg.temb_features, cfg.max_period)
        h = inputs["x"]
        n = len(cfg.dims) - 1
        for i, (a, b) in enumerate(zip(cfg.dims[:-1], cfg.dims[1:])):
            with ctx.g.scope(f"layers.{i}"):
                y = layers.linear(ctx, f"layers.{i}.fc", h, a, b, init="torch")
                alpha = layers.time_mlp(ctx, f"layers.{i}.time_embedding.mlp", feats, b,
                                        init="torch")
                h = E.mul(alpha, y)
                if i < n - 1:
                    h = E.relu(h)
        return {"out": h}
