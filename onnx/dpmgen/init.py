"""Parameter declarations, the reference initialisations, and the weights-file layout.

Parameters are initialised in declaration (= manifest) order from ONE numpy Generator
(PCG64) seeded per network, so the initial weights are a pure function of (network, seed).
Draws are made in float64 and rounded to float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Init:
    """How one parameter tensor is initialised.

    kind: "zeros" | "ones" | "normal" (std=arg) | "uniform" (bound=arg) |
          "xavier_uniform" (gain=arg; fans from the tensor's shape as in PyTorch)."""

    kind: str
    arg: float = 1.0

    def describe(self) -> str:
        if self.kind in ("zeros", "ones"):
            return self.kind
        name = {"normal": "std", "uniform": "bound", "xavier_uniform": "gain"}[self.kind]
        return f"{self.kind}({name}={self.arg:g})"


def zeros() -> Init:
    return Init("zeros")


def ones() -> Init:
    return Init("ones")


def normal(std: float = 1.0) -> Init:
    """PyTorch nn.Embedding's default N(0, 1)."""
    return Init("normal", std)


def xavier_uniform(gain: float = 1.0) -> Init:
    return Init("xavier_uniform", gain)


def torch_linear_default(fan_in: int) -> Init:
    """PyTorch nn.Linear's default for weight and bias alike: kaiming_uniform(a=sqrt(5)) on the
    weight reduces to U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the bias uses the same bound."""
    return Init("uniform", 1.0 / math.sqrt(fan_in))


@dataclass(frozen=True)
class ParamSpec:
    name: str
    shape: tuple
    init: Init

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return 4 * self.numel


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    receptive = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def draw(spec: ParamSpec, rng: np.random.Generator) -> np.ndarray:
    """One tensor's initial value (float32), consuming `rng` as its init requires."""
    kind, arg, shape = spec.init.kind, spec.init.arg, spec.shape
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "ones":
        return np.ones(shape, np.float32)
    if kind == "normal":
        return (rng.standard_normal(shape) * arg).astype(np.float32)
    if kind == "uniform":
        return rng.uniform(-arg, arg, shape).astype(np.float32)
    if kind == "xavier_uniform":
        fan_in, fan_out = _fans(shape)
        bound = arg * math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, shape).astype(np.float32)
    raise ValueError(f"unknown init {kind}")


def layout(specs: Sequence[ParamSpec]) -> list[dict]:
    """Byte offsets of each parameter in the weights file (concatenated, no padding)."""
    out, off = [], 0
    for s in specs:
        out.append({"name": s.name, "shape": list(s.shape), "offset": off, "length": s.nbytes,
                    "init": s.init.describe()})
        off += s.nbytes
    return out


def init_params(specs: Sequence[ParamSpec], seed: int):
    """Yield (spec, float32 array) in order; a generator so that huge networks stream."""
    rng = np.random.Generator(np.random.PCG64(seed))
    for s in specs:
        yield s, draw(s, rng)


def write_weights(path, specs: Sequence[ParamSpec], seed: int) -> int:
    """Write the initial parameters as little-endian float32, concatenated in order, atomically.
    Returns the number of bytes written."""
    import os

    tmp = f"{path}.tmp"
    n = 0
    with open(tmp, "wb") as f:
        for _, arr in init_params(specs, seed):
            data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
            f.write(data)
            n += len(data)
    os.replace(tmp, path)
    return n


def weights_sha256(specs: Sequence[ParamSpec], seed: int) -> str:
    """SHA-256 of the weights file `write_weights` would produce (without writing it)."""
    import hashlib

    h = hashlib.sha256()
    for _, arr in init_params(specs, seed):
        h.update(np.ascontiguousarray(arr, dtype="<f4").tobytes())
    return h.hexdigest()


def read_weights(path, specs: Sequence[ParamSpec]) -> dict[str, np.ndarray]:
    """Read a weights file written in `layout(specs)`."""
    raw = np.fromfile(path, dtype="<f4")
    out, off = {}, 0
    for s in specs:
        out[s.name] = raw[off:off + s.numel].reshape(s.shape).astype(np.float32)
        off += s.numel
    if off != raw.size:
        raise ValueError(f"{path}: {raw.size} floats, expected {off}")
    return out
