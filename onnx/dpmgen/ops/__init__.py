"""Differentiable operators.  Each function emits the forward ONNX nodes and records a tape
entry whose backward rule emits the gradient nodes (see dpmgen.autodiff)."""
