"""tnfast: predicted L1000 signatures of RNAi, CRISPR and OE perturbations for every gene."""

__version__ = "0.1.0"
