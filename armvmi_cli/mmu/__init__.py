"""AArch64 VMSAv8-64 translation: stage-1 and stage-2 layers that stack, walk traces, TLB.

``Stage2(lower, vttbr, vtcr)`` turns guest-physical addresses into ``lower``'s;
``Stage1(lower, ttbr0, ttbr1, tcr)`` turns virtual addresses into ``lower``'s.
Both read their tables through ``lower`` only.  See :mod:`.walk` for the walk itself.
"""

from ..errors import TranslationFault
from .descriptor import Attrs
from .geometry import Geometry, Granule, stage1_geometry, stage2_geometry
from .layers import Mapping, RegisterError, Stage1, Stage2, TranslationLayer, bottom_mappings, resolve_chain
from .walk import WalkStep, WalkTrace

__all__ = [
    "Attrs",
    "Geometry",
    "Granule",
    "Mapping",
    "RegisterError",
    "Stage1",
    "Stage2",
    "TranslationFault",
    "TranslationLayer",
    "WalkStep",
    "WalkTrace",
    "bottom_mappings",
    "resolve_chain",
    "stage1_geometry",
    "stage2_geometry",
]
