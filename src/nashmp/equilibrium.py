r"""Certified β-regularised Nash equilibrium π*_β: the ground truth every layer is measured against.

π*_β is the unique solution of the fixed-point equation
:math:`\pi^\star(y|x)\propto\pi_{\rm ref}(y|x)\exp(\mathcal P(y\succ\pi^\star|x)/\beta)`. We solve it in
log space, :math:`F(\ell)=\ell-\log\pi_{\rm ref}-P\,\mathrm{softmax}(\ell)/\beta\equiv\text{const}`, by

1. **continuation in β**: start at β₀ = max(β, ½), where the fixed-point map is a contraction and
   Newton converges from π_ref at once, then divide β by a factor (8, shrunk on failure) down to the
   target, warm-starting each level from the previous solution; the path β ↦ π*_β is smooth;
2. **damped Newton** at each level. The Jacobian :math:`J=I-PD/\beta` with
   :math:`D=\mathrm{diag}\,\pi-\pi\pi^\top` is always invertible: since :math:`D\mathbf 1=0`,
   :math:`PD=SD` with :math:`S=P-\tfrac12\mathbf 1\mathbf 1^\top` skew-symmetric, and the eigenvalues of
   :math:`SD` are purely imaginary, so those of J are :math:`1+i\lambda`. For n ≤ ``dense_max_n`` J is
   factorised densely (batched over contexts); above, each Newton system is solved by GMRES with
   matrix-free products (two matvecs with P each).

The **certificate** is ``residual = span_y(log π* − log softmax(log π_ref + P π*/β))`` on the support
of π_ref, recomputed from scratch at the end; :func:`solve_equilibrium` raises
:class:`~nashmp.errors.EquilibriumNotCertifiedError` if it is above ``tol`` (1e-10 by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla

from ._numerics import FloatArray, log_normalize, span
from .errors import EquilibriumNotCertifiedError
from .games.game import PreferenceGame, check_positive

__all__ = ["Equilibrium", "solve_equilibrium", "fixed_point_residual"]


@dataclass(frozen=True)
class Equilibrium:
    """The solved equilibrium of a game.

    Attributes:
        log_policy: log π*_β, batched shape ``(X, n)`` (``-inf`` off the support).
        residual: per-context certificate ``span(log π* − log BR(π*))``, shape ``(X,)``.
        newton_steps: total Newton iterations over all continuation levels.
        levels: number of β levels of the continuation.
    """

    game: PreferenceGame
    log_policy: FloatArray
    residual: FloatArray
    newton_steps: int
    levels: int

    @property
    def policy(self) -> FloatArray:
        """π*_β in the game's own shape: ``(n,)`` for a single game, ``(X, n)`` for a contextual one."""
        return self.game.unbatch(np.exp(self.log_policy))

    @property
    def certificate(self) -> float:
        """The worst per-context fixed-point residual."""
        return float(np.max(self.residual))


def _residual_vec(
    P: FloatArray, log_ref: FloatArray, support: np.ndarray, beta: float, lp: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """F(ℓ) masked to the support (0 elsewhere) and π = softmax(ℓ)."""
    pi = np.exp(lp)
    g = np.matmul(P, pi[..., None])[..., 0]
    with np.errstate(invalid="ignore"):
        F = np.where(support, lp - log_ref - g / beta, 0.0)
    return F, pi


def fixed_point_residual(game: PreferenceGame, log_pi: FloatArray) -> FloatArray:
    """Per-context ``span(log π − log softmax(log π_ref + Pπ/β))`` on the support (0 iff π = π*_β)."""
    g = game.payoff(np.exp(log_pi))
    br = log_normalize(game.log_ref + g / game.beta)
    with np.errstate(invalid="ignore"):
        return span(log_pi - br, game.support)


def _merit(F: FloatArray, support: np.ndarray) -> FloatArray:
    return span(F, support)


def _newton_direction(
    P: FloatArray, support: np.ndarray, beta: float, pi: FloatArray, F: FloatArray, dense_max_n: int
) -> FloatArray:
    X, n = pi.shape
    # J·1 = 1, so removing the constant part of F changes the step by a constant only (invisible after
    # normalisation) -- and F carries a constant offset ≈ logsumexp(...) ~ 1/β that would otherwise cost
    # cond(J)·eps·(1/β) of accuracy in the step.
    mean = np.sum(np.where(support, F, 0.0), -1, keepdims=True) / support.sum(-1, keepdims=True)
    F = np.where(support, F - mean, 0.0)
    if n <= dense_max_n:
        out = np.empty_like(F)
        chunk = max(1, int(2**25 // (n * n)))  # bound the (chunk, n, n) Jacobian to ~256 MB
        eye = np.eye(n)
        for s in range(0, X, chunk):
            sl = slice(s, s + chunk)
            p, Pc, sup = pi[sl], P[sl], support[sl]
            Pp = np.matmul(Pc, p[..., None])  # (c, n, 1)
            J = eye - (Pc * p[:, None, :] - Pp * p[:, None, :]) / beta
            J = np.where(sup[:, :, None], J, eye)  # off-support rows: δ = 0
            out[sl] = np.linalg.solve(J, -F[sl][..., None])[..., 0]
        return out
    out = np.zeros_like(F)
    for x in range(X):
        p, Px, sup = pi[x], P[x], support[x]

        def matvec(v: FloatArray, p: FloatArray = p, Px: FloatArray = Px, sup: np.ndarray = sup) -> FloatArray:
            v = np.ravel(v)
            Dv = p * v - p * (p @ v)
            return np.where(sup, v - (Px @ Dv) / beta, v)

        op = spla.LinearOperator((n, n), matvec=matvec, dtype=np.float64)
        sol, _ = spla.gmres(op, -F[x], rtol=1e-12, atol=0.0, restart=min(n, 200), maxiter=20)
        out[x] = sol
    return out


def _newton(
    P: FloatArray,
    log_ref: FloatArray,
    support: np.ndarray,
    beta: float,
    lp: FloatArray,
    tol: float,
    max_iter: int,
    dense_max_n: int,
) -> tuple[FloatArray, FloatArray, int]:
    """Damped Newton at a fixed β. Returns (log π, merit per context, iterations used)."""
    F, pi = _residual_vec(P, log_ref, support, beta, lp)
    merit = _merit(F, support)
    it = 0
    while it < max_iter and np.max(merit) > tol:
        it += 1
        active = merit > tol
        delta = _newton_direction(P, support, beta, pi, F, dense_max_n)
        t = np.ones(lp.shape[0])
        accepted = ~active
        new_lp, new_F, new_pi, new_merit = lp.copy(), F.copy(), pi.copy(), merit.copy()
        for _ in range(12):  # backtracking on the span of the residual, per context
            trial = log_normalize(np.where(support, lp + t[:, None] * delta, -np.inf))
            tF, tpi = _residual_vec(P, log_ref, support, beta, trial)
            tm = _merit(tF, support)
            ok = ~accepted & np.isfinite(tm) & (tm <= (1 - 1e-4 * t) * merit)
            new_lp[ok], new_F[ok], new_pi[ok], new_merit[ok] = trial[ok], tF[ok], tpi[ok], tm[ok]
            accepted |= ok
            if accepted.all():
                break
            t = np.where(accepted, t, t / 2)
        if not accepted.any() or np.array_equal(accepted, ~active):
            break  # no progress anywhere: let the caller shrink the continuation step
        lp, F, pi, merit = new_lp, new_F, new_pi, new_merit
    return lp, merit, it


def solve_equilibrium(
    game: PreferenceGame,
    *,
    tol: float = 1e-10,
    max_newton: int = 30,
    dense_max_n: int = 2048,
    raise_on_failure: bool = True,
) -> Equilibrium:
    """Solve for π*_β of every context and certify it (see the module docstring for the method).

    Args:
        game: the preference game.
        tol: certificate tolerance on ``span(log π* − log BR(π*))`` (per context).
        max_newton: Newton iterations allowed per continuation level.
        dense_max_n: largest n solved with a dense Jacobian; larger games use GMRES.
        raise_on_failure: raise :class:`EquilibriumNotCertifiedError` if the certificate exceeds ``tol``.

    Example:
        >>> import numpy as np, nashmp
        >>> P = np.array([[.5, .9, .2], [.1, .5, .7], [.8, .3, .5]])
        >>> eq = nashmp.solve_equilibrium(nashmp.PreferenceGame(P, [.5, .3, .2], beta=0.1))
        >>> np.round(eq.policy, 6)
        array([0.351925, 0.206245, 0.44183 ])
    """
    check_positive("tol", tol)
    beta = game.beta
    P, log_ref, support = game.P, game.log_ref, game.support
    lp = log_normalize(log_ref.copy())
    b, b_done = max(beta, 0.5), None  # current level; last level solved (None: none yet)
    factor = 8.0  # β divisor between levels, shrunk on failure
    total, levels = 0, 0
    while levels < 200:
        level_tol = tol * 0.1 if b == beta else 1e-6  # intermediate levels only need a warm start
        new_lp, merit, it = _newton(P, log_ref, support, b, lp, level_tol, max_newton, dense_max_n)
        total += it
        levels += 1
        if np.max(merit) <= level_tol or (b == beta and np.max(merit) <= tol):
            lp, b_done = new_lp, b
            if b == beta:
                break
            b = max(beta, b / factor)
        elif b_done is None or factor <= 1.001:
            lp = new_lp  # nothing left to back off to: report what we have (the certificate says how good)
            break
        else:  # a smaller continuation step from the last solved level
            factor = factor**0.5
            b = max(beta, b_done / factor)
    residual = fixed_point_residual(game, lp)
    eq = Equilibrium(game=game, log_policy=lp, residual=residual, newton_steps=total, levels=levels)
    if raise_on_failure and eq.certificate > tol:
        raise EquilibriumNotCertifiedError(
            f"equilibrium certificate {eq.certificate:.3g} > tol {tol:g} after {total} Newton steps "
            f"({levels} continuation levels); try a larger max_newton or tol."
        )
    return eq
