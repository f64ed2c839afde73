"""The benchmark suite, installed as ``tnfast.benchmarks``; ``tnfast bench`` runs it (see suite.py).

One module per benchmark (``bench_gat``, ``bench_attention``, ``bench_train``, ``bench_infer``),
each with ``run_benchmark(scale, device, log) -> dict`` and a ``python -m`` entry point; the
shared timing and memory code is in ``harness``; results/ holds the committed JSON per device.
"""
