"""Entropy models and the entropy coder.

- :mod:`~tcmcodec.entropy.tables`: integer CDF tables (:class:`CdfTables`).
- :mod:`~tcmcodec.entropy.coder`: the range coder with escapes (:class:`SymbolEncoder`,
  :class:`SymbolDecoder`).
- :mod:`~tcmcodec.entropy.factorized`: :class:`EntropyBottleneck` (factorized prior for z).
- :mod:`~tcmcodec.entropy.gaussian`: :class:`GaussianConditional` (conditional prior for y).
"""

from tcmcodec.entropy.coder import SymbolDecoder, SymbolEncoder, decode_symbols, encode_symbols
from tcmcodec.entropy.factorized import EntropyBottleneck
from tcmcodec.entropy.gaussian import GaussianConditional
from tcmcodec.entropy.tables import CdfTables

__all__ = [
    "CdfTables",
    "SymbolEncoder",
    "SymbolDecoder",
    "encode_symbols",
    "decode_symbols",
    "EntropyBottleneck",
    "GaussianConditional",
]
