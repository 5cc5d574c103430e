"""Subject-level inference for repeated-measures (crossover) ketamine studies (issue 11).

Foundation rule: these routines know nothing of EEG, BIDS or files. A tidy DataFrame (one row per
subject-session) goes in; a tidy DataFrame of result rows comes out, every row carrying ``estimate``,
``ci_low``, ``ci_high``, ``p``, ``n_subjects``, ``n_obs``, ``method`` and a ``convention`` string that
states the definition used. The subject is the unit of inference: every interval and p-value comes
from resampling subjects (or from a test whose reference distribution has subject-level degrees of
freedom), never from treating subject-sessions as independent rows.

Modules: :mod:`.resampling` (subject-cluster bootstrap machinery), :mod:`.association`
(within/between-subject correlations), :mod:`.mediation` (1-1-1 within-subject mediation),
(:mod:`.interaction` placebo-controlled stratum × treatment interaction),
:mod:`.dose_models` (random-slope dose-response mixed model with crossover terms; two-lines test),
:mod:`.calibration` (simulation suite: ``python -m pipelines.inference.calibration``).
See docs/statistics.md.
"""

from .association import within_between_correlation, within_subject_partial_correlation
from .dose_models import dose_response_mixed, two_lines_test
from .interaction import stratum_by_treatment_interaction
from .mediation import within_subject_mediation

__all__ = [
    "dose_response_mixed",
    "stratum_by_treatment_interaction",
    "two_lines_test",
    "within_between_correlation",
    "within_subject_mediation",
    "within_subject_partial_correlation",
]
