"""Dataset bundles, real-format importers and the synthetic default."""

from .bundle import PERT_TYPE_CODES, TYPES, Bundle, Features, Signatures, load_bundle
from .csr import CSR, build_csr

__all__ = [
    "CSR",
    "PERT_TYPE_CODES",
    "TYPES",
    "Bundle",
    "Features",
    "Signatures",
    "build_csr",
    "load_bundle",
]
