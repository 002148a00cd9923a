"""dpmgen: generator of libdpm's ONNX graphs (inference, training step) and initial parameters.

Depends only on `onnx` and `numpy`.  See onnx/README.md.
"""
