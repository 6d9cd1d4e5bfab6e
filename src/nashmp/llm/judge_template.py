r"""The pairwise judge instruction and the position debiasing shared by :class:`~nashmp.llm.lm_judge.LMJudge` and
:class:`~nashmp.llm.http_judge.HTTPJudge`.

A judge shown ``(first, second)`` answers :math:`q_A(x, \text{first}, \text{second})`, the probability that it
names the first answer. LLM judges prefer one position, so both judges ask both orders and answer

.. math:: \mathcal P(a \succ b \mid x) = \tfrac12\,[\,q_A(x,a,b) + 1 - q_A(x,b,a)\,],

which satisfies :math:`\mathcal P(a\succ b)+\mathcal P(b\succ a)=1` exactly and gives ½ for identical answers,
whatever the bias.
"""

from __future__ import annotations

import string

from .._numerics import FloatArray
from ..errors import InvalidParameterError

__all__ = ["DEFAULT_JUDGE_TEMPLATE", "render_judge_prompt"]

#: The pairwise judge instruction; ``{question}``, ``{answer_a}`` and ``{answer_b}`` are filled in.
DEFAULT_JUDGE_TEMPLATE = (
    "You are judging two answers to the same question.\n\n"
    "Question:\n{question}\n\n"
    "Answer A:\n{answer_a}\n\n"
    "Answer B:\n{answer_b}\n\n"
    "Which answer is better? Reply with A or B."
)
_TEMPLATE_FIELDS = frozenset({"question", "answer_a", "answer_b"})


def _check_template(template: str | None) -> str:
    if template is None:
        return DEFAULT_JUDGE_TEMPLATE
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise InvalidParameterError(f"judge template is not a valid format string: {exc}.") from None
    if fields != _TEMPLATE_FIELDS:
        raise InvalidParameterError(
            f"judge template must use exactly the fields {{question}}, {{answer_a}} and {{answer_b}}, got "
            f"{sorted(fields)}; escape literal braces as {{{{ and }}}}."
        )
    return template


def render_judge_prompt(question: str, first: str, second: str, template: str | None = None) -> str:
    """The judge instruction for one ordered pair (``first`` is shown as answer A).

    >>> print(render_judge_prompt("2+2?", "4", "5").splitlines()[-1])
    Which answer is better? Reply with A or B.
    """
    return _check_template(template).format(question=question, answer_a=first, answer_b=second)


def _debias(first: FloatArray, second: FloatArray) -> FloatArray:
    r"""½[q_A(a first) + q_B(b first)], with ``first``/``second`` holding (q_A, q_B) per row.

    Uses q_B of the swapped order rather than 1 − q_A, which is the same in exact arithmetic but keeps
    precision when q_A is within rounding of 1.
    """
    return 0.5 * (first[:, 0] + second[:, 1])
