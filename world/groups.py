"""Protected attributes of the world's entities, and an optional planted group bias.

Gender is drawn from a stream of its own (``SeedSequence([seed, GROUP_STREAM, ...])``), after
every other draw is settled, so adding it moved no existing draw: the rest of the world is the
same, value for value, as before the column existed. A consumer's gender is their own; a
merchant's is its principal owner's (what small-business lending rules such as the US Section
1071 collect). A few entities have none (not disclosed), as real books do.

:class:`GroupBias` plants a disparity for the fairness tests: the group's latent traits are
shifted towards risk *in ways the log shows* (lower income stability and discipline for
consumers, lower business health and discipline for merchants), so a model trained on the log
scores the group as riskier and approves fewer of its members, while gender itself is never a
feature. With no bias the traits are untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

GENDERS: tuple[str, ...] = ("female", "male")
NOT_DISCLOSED_SHARE = 0.03  # entities whose gender the lender does not hold
GROUP_STREAM = 7  # the SeedSequence branch of the group draws (0 and 1 are the world's own)
BIASABLE: tuple[str, ...] = ("gender",)
# Log-odds of default per unit shift of the two traits a bias moves: the trait index weights
# (world.risk) times the index's loadings on them (world.population).
CONSUMER_LOGIT_PER_SHIFT = 0.6 * (0.7 + 0.7)
MERCHANT_LOGIT_PER_SHIFT = 0.8 * (0.7 + 0.5)


@dataclass(frozen=True)
class GroupBias:
    """A planted disparity: members of ``group`` (of ``attribute``) are riskier, visibly.

    ``pd_multiplier`` sets the shift of the group's traits so that the additive trait part of
    its log-odds rises by ``ln(pd_multiplier)`` (about multiplying its PD by that where PDs are
    small; the interactions that turn on discipline add a little more).
    """

    attribute: str
    group: str
    pd_multiplier: float

    def __post_init__(self) -> None:
        if self.attribute not in BIASABLE:
            raise ValueError(f"expected a bias on one of {list(BIASABLE)}; got {self.attribute!r}")
        if self.group not in GENDERS:
            raise ValueError(f"expected a group in {list(GENDERS)}; got {self.group!r}")
        if not (math.isfinite(self.pd_multiplier) and self.pd_multiplier > 0):
            raise ValueError(f"expected a positive pd_multiplier; got {self.pd_multiplier!r}")

    @classmethod
    def of(cls, value: GroupBias | Mapping[str, object] | None) -> GroupBias | None:
        """A bias from its params mapping (``{attribute, group, pd_multiplier}``), or None."""
        if value is None or isinstance(value, GroupBias):
            return value
        return cls(
            attribute=str(value["attribute"]),
            group=str(value["group"]),
            pd_multiplier=float(value["pd_multiplier"]),  # type: ignore[arg-type]
        )

    def shift(self, gender: np.ndarray, logit_per_shift: float) -> np.ndarray:
        """The trait shift of each entity: ``ln(pd_multiplier) / logit_per_shift`` in the group."""
        return np.where(gender == self.group, math.log(self.pd_multiplier) / logit_per_shift, 0.0)


def draw_gender(seed: int, n: int, stream: int) -> np.ndarray:
    """``n`` genders (``None`` where not disclosed) from the group stream ``stream`` of ``seed``.

    ``stream`` tells merchants (0) from consumers (1), so the two draws are independent.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, GROUP_STREAM, stream]))
    gender = np.asarray(GENDERS, dtype=object)[rng.integers(0, len(GENDERS), n)]
    gender[rng.random(n) < NOT_DISCLOSED_SHARE] = None
    return gender
