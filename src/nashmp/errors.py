"""Named exceptions raised at nashmp's public entry points.

Every validation failure is a subclass of :class:`ValueError` whose message says what is wrong and
how to fix it, so that callers can catch either the precise class or plain ``ValueError``.
"""

from __future__ import annotations

__all__ = [
    "NashMPValueError",
    "InvalidPreferenceError",
    "InvalidReferenceError",
    "InvalidParameterError",
    "InvalidPolicyError",
    "EquilibriumNotCertifiedError",
    "InvalidOracleOutputError",
    "JudgeError",
    "CheckpointError",
]


class NashMPValueError(ValueError):
    """Base class of every input-validation error raised by nashmp."""


class InvalidPreferenceError(NashMPValueError):
    """The preference array P is not a valid preference model (shape, range, P + Pᵀ = 1, finiteness)."""


class InvalidReferenceError(NashMPValueError):
    """The reference policy is not a probability distribution of the right shape."""


class InvalidParameterError(NashMPValueError):
    """A scalar hyper-parameter (β, η, a query budget, ...) is out of its admissible range."""


class InvalidPolicyError(NashMPValueError):
    """A policy handed to a metric or an algorithm is not a distribution of the game's shape."""


class EquilibriumNotCertifiedError(RuntimeError):
    """The equilibrium solver could not push its fixed-point certificate below the tolerance."""


class InvalidOracleOutputError(NashMPValueError):
    """A preference oracle answered something that is not one probability in [0, 1] per pair."""


class JudgeError(RuntimeError):
    """A judge failed after its retries (timeouts, server errors, unparsable answers); never scored as a tie."""


class CheckpointError(NashMPValueError):
    """A checkpoint is missing, truncated, not nashmp's, or holds something other than plain data."""
