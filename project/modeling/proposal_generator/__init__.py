"""Proposal generators; importing this package registers the RPN and its standard head."""

from ..registry import PROPOSAL_GENERATOR_REGISTRY, RPN_HEAD_REGISTRY
from .build import build_proposal_generator
from .proposal_utils import find_top_rpn_proposals
from .rpn import RPN, StandardRPNHead, build_rpn_head

__all__ = [
    "PROPOSAL_GENERATOR_REGISTRY",
    "RPN",
    "RPN_HEAD_REGISTRY",
    "StandardRPNHead",
    "build_proposal_generator",
    "build_rpn_head",
    "find_top_rpn_proposals",
]
