"""Exact (tabular) algorithms, all built on :func:`~nashmp.algorithms.prox.prox_step`."""

from .adaptive import adaptive_nash_mp, mirror_prox_gap
from .base import Algorithm, Query, State
from .mirror_descent import egpo, nash_md, omd, onpo, sppo
from .mpo import mpo
from .nash_mp import nash_mp
from .online_ipo import online_ipo
from .prox import md_center_weight, md_step_from_nash_mp, nash_mp_step_from_md, prox_step, regularized_prox
from .proximal_point import proximal_point
from .registry import ALGORITHMS, make_algorithm

__all__ = [
    "Algorithm",
    "State",
    "Query",
    "ALGORITHMS",
    "make_algorithm",
    "prox_step",
    "regularized_prox",
    "md_center_weight",
    "md_step_from_nash_mp",
    "nash_mp_step_from_md",
    "nash_mp",
    "adaptive_nash_mp",
    "mirror_prox_gap",
    "proximal_point",
    "nash_md",
    "omd",
    "egpo",
    "mpo",
    "sppo",
    "onpo",
    "online_ipo",
]
