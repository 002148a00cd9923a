"""Make `dpmgen` (in onnx/) and the test helpers importable, and keep ORT quiet."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import onnxruntime as ort  # noqa: E402

# Overridable-initializer notices are expected (see README): show errors only.
ort.set_default_logger_severity(3)
