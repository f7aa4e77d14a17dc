"""The ridge-regression baseline's solver; it lives in :mod:`llm4brain.models.ridge` (Stage I's
voxel read-out is fitted with it too) and is re-exported here for the evaluation code."""
from __future__ import annotations

from ..models.ridge import RidgeCV, ridge_fit

__all__ = ["RidgeCV", "ridge_fit"]
