"""Neural network layers of the TCM family."""

from .attention import SwinBlock, WindowAttention
from .blocks import (
    ChannelsLast,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    ResidualUnit,
    conv1x1,
    conv3x3,
    subpel_conv3x3,
)
from .gdn import GDN
from .haar import HaarDown, HaarUp, WithShortcuts
from .swatten import SWAtten, SwinPair
from .tcm_block import TCMBlock, tcm_stage

__all__ = [
    "ChannelsLast",
    "GDN",
    "HaarDown",
    "HaarUp",
    "ResidualBlock",
    "ResidualBlockUpsample",
    "ResidualBlockWithStride",
    "ResidualUnit",
    "SWAtten",
    "SwinBlock",
    "SwinPair",
    "TCMBlock",
    "WindowAttention",
    "WithShortcuts",
    "conv1x1",
    "conv3x3",
    "subpel_conv3x3",
    "tcm_stage",
]
