"""Model families."""

from .gain import LAMBDAS, GainUnit, quality_to_lambda
from .tcm import TCM, ModelStreams, TCMConfig

__all__ = ["TCM", "TCMConfig", "ModelStreams", "GainUnit", "LAMBDAS", "quality_to_lambda"]
