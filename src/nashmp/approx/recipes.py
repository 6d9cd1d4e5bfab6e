r"""Approximate Nash-MP and its sampled baselines: proximal steps solved by policy gradient.

Every recipe spends preference queries through a :class:`~nashmp.oracles.PreferenceOracle` (one
query per compared pair) and is measured with the *exact* metrics of the core (π_θ is a full
distribution over a finite response set, π*_β is certified).

Recipes (``ApproxConfig.recipe``) are the online family of :mod:`nashmp.online.recipes`, with the same
names and schedules as the LLM trainer (``nash-mp``, ``nash-mp-faithful``, ``nash-prox``, ``nash-md``,
``online-ipo``, ``egpo``; the former names ``practical``, ``faithful`` and ``nash-md-pg`` still work, with a
FutureWarning). One :meth:`ApproxLearner.step` is one gradient step of the recipe:

``nash-mp-faithful`` Approximate Nash-MP as in the paper: centre θ_k frozen; the half step runs ``inner_steps``
              PG steps on :math:`J_{k,\pi_k}` (opponent samples from the frozen centre), the result is
              frozen as θ_{k+½}; the full step runs ``inner_steps`` PG steps on :math:`J_{k,\pi_{k+½}}`,
              warm-started from θ_{k+½}, with a fresh optimiser per sub-problem.
``nash-mp``   One model, an EMA anchor θ̄ ← (1−κ)θ̄ + κθ as prox centre (weight β/η), opponent
              ``self`` (default: stop-gradient self-play), ``ema`` or ``half`` (a snapshot of θ refreshed
              every ``half_every`` steps). Defaults come from the study in docs/approx-study.md.
``nash-prox`` self-play PG with the prox centre hard-refreshed every ``prox_every`` steps.
``nash-md``   Nash-MD-PG: opponent the geometric mixture π_θ^{1−c} π_ref^{c} (``mixture_coef`` = c).
``online-ipo`` self-play squared loss [h_θ(y,y') − (o − ½)/β]², y, y' ∼ π_θ.
``egpo``      sampled extragradient on the online-IPO loss (EGPO): a look-ahead optimiser step to θ_{t+½}
              (same rule and state as the update), new pairs and targets from π_{θ_{t+½}}, the gradient
              there applied from θ_t.

The sub-problem (``prox_pg_loss``/``exact_prox_objective``) is
:math:`\max_\theta\ \mathbb E_{y\sim\pi_\theta}[\mathcal P(y\succ\mu)]-\beta\mathrm{KL}(\pi_\theta\|\pi_{\rm ref})-\tfrac\beta\eta\mathrm{KL}(\pi_\theta\|\pi_k)`.
``gradient="exact"`` replaces the samples by the exact expectation (tabular tests; one query per
(context, response) pair evaluated against the full opponent).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import InvalidParameterError
from ..games.game import PreferenceGame, check_positive, check_positive_int
from ..online.recipes import ALIASES, OPPONENTS, get_recipe
from ..online.recipes import RECIPES as FAMILY
from ..oracles import GameOracle, NoisyOracle, PreferenceOracle
from .losses import exact_prox_objective, ipo_loss, sampled_prox_loss
from .policies import Policy, make_policy, sample

__all__ = ["FORMER_NAMES", "RECIPES", "ApproxConfig", "ApproxLearner"]

RECIPES = tuple(FAMILY)
#: the approximate layer's former recipe names → today's (accepted with a ``FutureWarning``)
FORMER_NAMES = {"practical": "nash-mp", "faithful": "nash-mp-faithful", **ALIASES}
_CHOICES = {
    "optimizer": ("adam", "sgd"),
    "gradient": ("sampled", "exact"),
    "feedback": ("probability", "bernoulli"),
    "baseline": ("half", "learned"),
    "kl_estimator": ("sampled", "analytic"),
    "opponent": tuple(OPPONENTS),
    "policy": ("tabular", "mlp"),
}


@dataclass
class ApproxConfig:
    """Hyper-parameters of an approximate run (every field is a CLI ``--param``)."""

    recipe: str = "nash-mp"
    """The online recipe (:mod:`nashmp.online`) one gradient step runs; ``nashmp approx --recipe``."""
    eta: float | None = None
    """Nash-MP step η (prox weight β/η); None → 2β."""
    inner_steps: int = 20
    """M, PG steps per proximal sub-problem (faithful); docs/approx-study.md: 20 at 10⁴ queries, ≥ 50 at 10⁵."""
    batch_size: int = 32
    """Compared pairs per gradient step (each one preference query)."""
    lr: float = 0.03
    """Adam step: 0.03 was best for every recipe in docs/approx-study.md (0.1 diverges at β = 0.01)."""
    optimizer: str = "adam"
    """Optimiser of π_θ's parameters: ``adam`` or plain ``sgd`` (both with step ``lr``)."""
    gradient: str = "sampled"
    """``sampled``: REINFORCE on compared pairs (one query each); ``exact``: expectations over all responses
    (costs one query per supported response and context per step)."""
    feedback: str = "probability"
    """``probability``: the oracle's P(y≻y'); ``bernoulli``: a 0/1 label drawn from it."""
    baseline: str = "half"
    """REINFORCE baseline: ½ (by symmetry) or a learned per-context running mean of the reward."""
    kl_estimator: str = "sampled"
    """KL terms estimated on the sampled y (as for LLMs) or computed analytically over responses."""
    ema: float = 0.01
    """κ of the practical recipe's EMA anchor (0.01 for ≥ 10⁵ queries; 0.05–0.1 for budgets ≲ 2·10⁴)."""
    opponent: str = "self"
    """Practical recipe's opponent: ``self`` (best in the study; ``ema`` and ``half`` within noise)."""
    half_every: int = 10
    """Steps between refreshes of the frozen half-step copy (opponent ``half`` of the practical recipe)."""
    prox_every: int = 20
    """K of ``nash-prox``: steps between refreshes of the proximal centre."""
    mixture_coef: float = 0.5
    """Nash-MD-PG's geometric-mixture weight c of π_ref."""
    policy: str = "tabular"
    """Parametrisation of π_θ: ``tabular`` (one logit per context and response) or an ``mlp`` over one-hot inputs."""
    hidden: int = 64
    """Hidden width of the ``mlp`` policy."""
    seed: int = 0
    """Seed of the policy initialisation, the sampled pairs and the Bernoulli labels."""
    num_threads: int | None = 1
    """torch intra-op threads during the run (1 is fastest for these small tensors; None: leave torch's)."""

    def __post_init__(self) -> None:
        if self.recipe in FORMER_NAMES:
            import warnings

            new = FORMER_NAMES[self.recipe]
            warnings.warn(f"recipe {self.recipe!r} is now called {new!r}", FutureWarning, stacklevel=2)
            self.recipe = new
        if self.recipe not in RECIPES:
            raise InvalidParameterError(f"unknown recipe {self.recipe!r}; choose one of {list(RECIPES)}.")
        for name, options in _CHOICES.items():
            if getattr(self, name) not in options:
                raise InvalidParameterError(f"{name} must be one of {list(options)}, got {getattr(self, name)!r}.")
        if self.eta is not None:
            check_positive("eta", self.eta)
        check_positive("lr", self.lr)
        for name in ("inner_steps", "batch_size", "half_every", "prox_every", "hidden"):
            check_positive_int(name, getattr(self, name))
        if not 0 < self.ema <= 1:
            raise InvalidParameterError(f"ema must lie in (0, 1], got {self.ema!r}.")
        if self.num_threads is not None:
            check_positive_int("num_threads", self.num_threads)
        if not 0 <= self.mixture_coef <= 1:
            raise InvalidParameterError(f"mixture_coef must lie in [0, 1], got {self.mixture_coef!r}.")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


LogProbFn = Callable[[Tensor], Tensor]


def _frozen(module: Policy) -> Policy:
    clone = copy.deepcopy(module)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


class ApproxLearner:
    """State of one approximate run: policy, anchors, optimiser, oracle and random streams."""

    def __init__(self, game: PreferenceGame, config: ApproxConfig, oracle: PreferenceOracle | None = None) -> None:
        self.game, self.cfg = game, config
        self.oracle = oracle if oracle is not None else GameOracle(game)
        if config.feedback == "bernoulli":
            self.oracle = NoisyOracle(self.oracle, seed=config.seed)
        self.policy = make_policy(config.policy, game, hidden=config.hidden, seed=config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.beta = game.beta
        self.eta = 2 * game.beta if config.eta is None else config.eta
        self.log_ref = torch.as_tensor(game.log_ref)
        self.P = torch.as_tensor(game.P)
        self.weights = torch.as_tensor(game.weights)
        self.value = torch.full((game.num_contexts,), 0.5, dtype=torch.float64)  # learned baseline
        self.exact_queries = 0
        self.optimizer = self._new_optimizer()
        self.anchor = _frozen(self.policy)  # EMA anchor / faithful centre
        self.half = _frozen(self.policy)
        self.steps = 0

    # ------------------------------------------------------------------ plumbing
    @property
    def queries(self) -> int:
        """Preference queries spent: pairs compared by the oracle (+ exact-mode evaluations)."""
        return self.oracle.queries + self.exact_queries

    @property
    def step_cost(self) -> int:
        """Preference queries one :meth:`step` spends (a batch of pairs; two for EGPO's look-ahead)."""
        recipe = get_recipe(self.cfg.recipe)
        if recipe.loss == "ipo":
            return self.cfg.batch_size * (2 if recipe.extragradient else 1)
        return int(self.game.support.sum()) if self.cfg.gradient == "exact" else self.cfg.batch_size

    def _new_optimizer(self) -> torch.optim.Optimizer:
        params = self.policy.parameters()
        if self.cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.cfg.lr)
        return torch.optim.SGD(params, lr=self.cfg.lr)

    def _contexts(self) -> Tensor:
        return torch.multinomial(self.weights, self.cfg.batch_size, replacement=True, generator=self.generator)

    def _feedback(self, x: Tensor, y: Tensor, y2: Tensor) -> Tensor:
        p = self.oracle.probability(x.tolist(), y.tolist(), y2.tolist())
        return torch.as_tensor(p)

    def all_log_probs(self) -> np.ndarray:
        """log π_θ for every context, ``(X, n)`` (for the exact metrics)."""
        with torch.no_grad():
            return self.policy.log_probs(torch.arange(self.game.num_contexts)).numpy()

    # ------------------------------------------------------------------ the proximal PG step
    def prox_step(self, opponent: LogProbFn, center: LogProbFn | None, center_weight: float) -> None:
        """One optimiser step on the KL-regularised bandit against ``opponent`` (anchors π_ref, centre)."""
        cfg = self.cfg
        self.optimizer.zero_grad()
        if cfg.gradient == "exact":
            x = torch.arange(self.game.num_contexts)
            logp = self.policy.log_probs(x)
            with torch.no_grad():
                mu = opponent(x).exp()
                payoff = torch.einsum("xij,xj->xi", self.P, mu)
            self.exact_queries += int(self.game.support.sum())
            anchors = [(self.beta, self.log_ref)]
            if center is not None:
                with torch.no_grad():
                    anchors.append((center_weight, center(x)))
            loss = -exact_prox_objective(logp, payoff, anchors, self.weights)
        else:
            x = self._contexts()
            logp_all = self.policy.log_probs(x)
            with torch.no_grad():
                y = sample(logp_all, self.generator)
                y2 = sample(opponent(x), self.generator)
            reward = self._feedback(x, y, y2)
            baseline: Tensor | float = 0.5
            if cfg.baseline == "learned":
                baseline = self.value[x]
                # running mean of the reward per context (step ≈ 0.1 per batch for each context)
                self.value.index_add_(0, x, 0.1 * (reward - self.value[x]) / cfg.batch_size * self.game.num_contexts)
            anchor_logps: list[tuple[float, Tensor]] = [(self.beta, self.log_ref[x])]
            if center is not None:
                with torch.no_grad():
                    anchor_logps.append((center_weight, center(x)))
            loss = sampled_prox_loss(logp_all, y, reward, baseline, anchor_logps, cfg.kl_estimator)
        loss.backward()
        self.optimizer.step()
        self.steps += 1

    # ------------------------------------------------------------------ recipes
    def step(self) -> None:
        """One gradient step of the recipe (:class:`~nashmp.online.Recipe`: opponent, loss, events)."""
        recipe = get_recipe(self.cfg.recipe)
        self._run_events(recipe.before(self.cfg, self.steps))
        if recipe.loss == "ipo":
            self._egpo() if recipe.extragradient else self._online_ipo()
        else:
            opponent = self._opponent(recipe.opponent_at(self.cfg, self.steps))
            center = self.anchor.log_probs if recipe.anchor_kl else None
            self.prox_step(opponent, center, self.beta / self.eta if recipe.anchor_kl else 0.0)
        self._run_events(recipe.after(self.cfg, self.steps))

    def _run_events(self, events: tuple[str, ...]) -> None:
        for event in events:
            if event == "ema":  # θ̄ ← (1−κ) θ̄ + κ θ
                with torch.no_grad():
                    for pa, p in zip(self.anchor.parameters(), self.policy.parameters(), strict=True):
                        pa.lerp_(p, self.cfg.ema)
            elif event == "anchor<-theta":
                self.anchor = _frozen(self.policy)
            elif event == "half<-theta":
                self.half = _frozen(self.policy)
            elif event == "reset-optimizer":
                self.optimizer = self._new_optimizer()
            else:  # pragma: no cover - a recipe names an event this learner does not know
                raise InvalidParameterError(f"unknown recipe event {event!r}")

    def _opponent(self, who: str) -> LogProbFn:
        """log μ for the recipe's opponent: sg π_θ, a frozen snapshot, or Nash-MD's geometric mixture."""
        c = self.cfg.mixture_coef

        def self_play(x: Tensor) -> Tensor:
            with torch.no_grad():
                return self.policy.log_probs(x)

        def mixture(x: Tensor) -> Tensor:
            with torch.no_grad():
                own, ref = self.policy.log_probs(x), self.log_ref[x]
                if c == 0.0 or c == 1.0:  # avoid 0·(−inf) off the support
                    return own if c == 0.0 else ref
                return torch.log_softmax((1 - c) * own + c * ref, dim=-1)

        table = {"self": self_play, "anchor": self.anchor.log_probs, "half": self.half.log_probs, "mixture": mixture}
        return table[who]

    def _ipo_loss_on(self, module: Policy) -> Tensor:
        """Self-play IPO loss of ``module`` on a fresh batch of pairs sampled from it (counts queries)."""
        x = self._contexts()
        logp = module.log_probs(x)
        with torch.no_grad():
            y, y2 = sample(logp, self.generator), sample(logp, self.generator)
        o = self._feedback(x, y, y2)
        ref = self.log_ref[x]
        pick = lambda t, i: t.gather(1, i[:, None])[:, 0]  # noqa: E731
        return ipo_loss(pick(logp, y), pick(logp, y2), pick(ref, y), pick(ref, y2), o, self.beta)

    def _online_ipo(self) -> None:
        self.optimizer.zero_grad()
        self._ipo_loss_on(self.policy).backward()
        self.optimizer.step()
        self.steps += 1

    def _egpo(self) -> None:
        # The look-ahead θ_{t+½} takes the *same* optimiser step as the real update (a copy of its state),
        # so its size does not depend on the gradient scale (~1/β) when the optimiser is Adam.
        look = copy.deepcopy(self.policy)
        look_opt = type(self.optimizer)(look.parameters(), **self.optimizer.defaults)
        look_opt.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))
        look_opt.zero_grad()
        self._ipo_loss_on(look).backward()
        look_opt.step()
        grads = torch.autograd.grad(self._ipo_loss_on(look), list(look.parameters()))
        self.optimizer.zero_grad()
        for p, g in zip(self.policy.parameters(), grads, strict=True):  # applied from θ_t
            p.grad = g.clone()
        self.optimizer.step()
        self.steps += 1
