"""Triton kernels with pure-PyTorch references, installed as ``tnfast.kernels``.

CUDA tensors dispatch to Triton; everything else runs the reference in ``reference.py``.
"""
