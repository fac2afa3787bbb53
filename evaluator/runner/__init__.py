"""The model runner: runs INSIDE the sandbox, loads a TorchScript or ONNX model and applies it case
by case to ``/input``, writing predictions to ``/output`` in the formats of DESIGN.md.

This package is copied into each run (as ``scanbench_runner``) and executed by the evaluator image's
Python, so it imports only the standard library, NumPy, nibabel, Pillow, PyTorch and onnxruntime,
and only relative imports inside itself. Nothing here is ever used to load a model on the host.
"""
