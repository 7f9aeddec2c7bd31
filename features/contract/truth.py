"""The optional truth table (``data/truth/loans.parquet``) a synthetic world writes beside its log.

A lender's own data has no truth; when the file exists, evaluation reads the true PD as the
ceiling a model could reach, and the knowable part of the true log-odds as what the log could
reveal at issue. Production code reads these column names from here, never from the world that
writes them.
"""

from __future__ import annotations

TRUTH_LOANS = "loans.parquet"
LOAN_ID = "loan_id"
TRUE_PD = "true_pd"
#: The parts of a loan's true log-odds of default saved in the truth table (they sum to it).
LOGIT_PARTS: tuple[str, ...] = (
    "logit_loan",
    "logit_traits",
    "logit_state",
    "logit_interactions",
    "logit_hidden",
    "logit_macro",
)
#: The parts a log could reveal at issue: all but the hidden part and the macro path after issue.
KNOWABLE_PARTS: tuple[str, ...] = (
    "logit_loan",
    "logit_traits",
    "logit_state",
    "logit_interactions",
)
