"""classifier: a small CNN image classifier; its globally pooled features serve FID.

    stem        conv3x3(in -> w0) -> GroupNorm -> SiLU
    stages.i    conv3x3 stride 2 (w[i] -> w[i+1]) -> GN -> SiLU -> conv3x3 -> GN -> SiLU
    features    global average pool -> [batch, w[-1]]
    head        Linear(w[-1], num_classes) -> logits
Fully convolutional: the graphs take any H, W divisible by 2^len(stages) (dims "height",
"width"), so one classifier serves 32x32 and 64x64 data alike.  Xavier-uniform weights, zero
biases.  Trained with softmax cross-entropy on labels 1..K (logit j is label j+1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import layers
from ..context import BuildContext
from ..graph import Graph, Value
from ..ops import elementwise as E
from ..ops import reduce as R
from . import Network


@dataclass
class ClassifierConfig:
    name: str = "classifier"
    in_channels: int = 3
    widths: list = field(default_factory=lambda: [32, 64, 128, 256])
    norm_groups: int = 8
    num_classes: int = 3
    seed: int = 4242


CLASSIFIER = ClassifierConfig()


def tiny(**kw) -> ClassifierConfig:
    base = ClassifierConfig(name="classifier_tiny", in_channels=2, widths=[4, 6], norm_groups=2,
                            num_classes=3, seed=5)
    for k, v in kw.items():
        setattr(base, k, v)
    return base


class Classifier(Network):
    task = "classify"

    def __init__(self, config: ClassifierConfig):
        self.config = config
        self.name = config.name
        self.seed = config.seed

    def config_dict(self) -> dict:
        d = super().config_dict()
        d["features"] = self.config.widths[-1]
        d["size_multiple"] = 2 ** (len(self.config.widths) - 1)
        return d

    def metadata(self) -> dict[str, str]:
        c = self.config
        return {"dpm.num_classes": str(c.num_classes), "dpm.channels": str(c.in_channels),
                "dpm.features": str(c.widths[-1])}

    def _image(self):
        return ("batch", self.config.in_channels, "height", "width")

    def infer_inputs(self, g: Graph) -> dict[str, Value]:
        return {"x": g.input("x", self._image())}

    def train_inputs(self, g: Graph) -> dict[str, Value]:
        return {"x": g.input("x_t", self._image()),
                "labels": g.input("labels", ("batch",), "int64")}

    def forward(self, ctx: BuildContext, inputs: dict[str, Value]) -> dict[str, Value]:
        cfg = self.config
        G = cfg.norm_groups
        w = cfg.widths
        with ctx.g.scope("stem"):
            h = layers.conv2d(ctx, "stem.conv", inputs["x"], cfg.in_channels, w[0], 3)
            h = E.silu(layers.group_norm(ctx, "stem.norm", h, G))
        for i in range(len(w) - 1):
            name = f"stages.{i}"
            with ctx.g.scope(name):
                h = layers.conv2d(ctx, f"{name}.down", h, w[i], w[i + 1], 3, stride=2)
                h = E.silu(layers.group_norm(ctx, f"{name}.norm1", h, G))
                h = layers.conv2d(ctx, f"{name}.conv", h, w[i + 1], w[i + 1], 3)
                h = E.silu(layers.group_norm(ctx, f"{name}.norm2", h, G))
        feats = R.reduce_mean(h, axes=[2, 3])
        logits = layers.linear(ctx, "head", feats, w[-1], cfg.num_classes)
        return {"logits": logits, "features": feats}
