"""Dropout masks: deterministic in (seed, step, site), identical between ONNX Runtime and the
numpy reference evaluator (pure integer arithmetic), and statistically sound."""

from __future__ import annotations

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

from dpmgen.graph import Graph
from dpmgen.ops import nn as N
from helpers import ort_session, run_ort

SHAPE = (16, 64, 32, 32)  # 1M elements


def _mask_model(rate, salts=(1,)):
    g = Graph("dropout")
    x = g.input("x", ("batch",) + SHAPE[1:])
    seed = g.input("seed", (), np.int64)
    step = g.input("step", ())
    for i, salt in enumerate(salts):
        g.output(N.dropout(x, rate, N.dropout_key(seed, step, salt)), f"y{i}")
    return g.to_model()


def _masks(sess, seed, step, n=1):
    x = np.ones(SHAPE, np.float32)
    out = run_ort(sess, {"x": x, "seed": np.array(seed, np.int64),
                         "step": np.array(step, np.float32)})
    return [out[f"y{i}"] != 0 for i in range(n)]


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_mask_statistics(rate):
    sess = ort_session(_mask_model(rate, salts=(1, 2)))
    (a, b), (c, _) = _masks(sess, 42, 7, 2), _masks(sess, 42, 8, 2)
    (d, _) = _masks(sess, 43, 7, 2)
    n = a.size
    sigma = np.sqrt(rate * (1 - rate) / n)
    for m in (a, b, c, d):
        assert abs((1 - m.mean()) - rate) < 5 * sigma
    drop = ~a.reshape(-1)
    # Neighbours (along w, h, channel and batch) and triples: independent.
    for lag in (1, 2, 3, 32, 1024, 65536):
        joint = (drop[:-lag] & drop[lag:]).mean()
        assert abs(joint - rate ** 2) < 5 * np.sqrt(rate ** 2 / n) + 1e-4, lag
    triple = (drop[:-2] & drop[1:-1] & drop[2:]).mean()
    assert abs(triple - rate ** 3) < 5 * np.sqrt(rate ** 3 / n) + 1e-4
    # Another site, step or seed: unrelated masks.
    for other in (b, c, d):
        agree = (~other.reshape(-1) & drop).mean()
        assert abs(agree - rate ** 2) < 5 * np.sqrt(rate ** 2 / n) + 1e-4


def test_mask_is_deterministic_and_provider_independent():
    model = _mask_model(0.1)
    a = _masks(ort_session(model), 5, 3)[0]
    b = _masks(ort_session(model, threads=1), 5, 3)[0]
    assert np.array_equal(a, b)
    # The reference evaluator (numpy) reproduces the masks bit for bit: the scheme is pure
    # uint64 arithmetic, the same on every provider.
    x = np.ones((2,) + SHAPE[1:], np.float32)
    ref = ReferenceEvaluator(model).run(None, {"x": x, "seed": np.array(5, np.int64),
                                               "step": np.array(3.0, np.float32)})[0]
    assert np.array_equal(ref != 0, a[:2])
    # Rows depend only on their own index: a batch of 2 gives the first 2 rows of 16.
    small = run_ort(ort_session(model), {"x": x, "seed": np.array(5, np.int64),
                                         "step": np.array(3.0, np.float32)})["y0"]
    assert np.array_equal(small != 0, a[:2])


def test_kept_values_are_scaled():
    sess = ort_session(_mask_model(0.25))
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    y = run_ort(sess, {"x": x, "seed": np.array(1, np.int64),
                       "step": np.array(1.0, np.float32)})["y0"]
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
