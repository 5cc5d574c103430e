"""Statistics, by family (as pingouin): every routine takes a tidy DataFrame and returns a tidy table.

Two kinds live here:

- Descriptive and row-level building blocks — :mod:`.formatting` (``format_p``, the one p-value formatter),
  :mod:`.multiple_comparisons` (BH-FDR), :mod:`.correlation` (correlation tables, repeated-measures correlation),
  :mod:`.models` (mixed models), :mod:`.descriptive` (means with t CIs), :mod:`.paired` (paired contrasts),
  :mod:`.pooled_mediation` (the old row-resampled mediation, kept as the calibration comparator).
- Subject-level inference for repeated-measures (crossover) studies (issue 11). These routines know nothing of
  EEG, BIDS or files: one row per subject-session goes in, result rows come out, each carrying ``estimate``,
  ``ci_low``, ``ci_high``, ``p``, ``n_subjects``, ``n_obs``, ``method`` and a ``convention`` string. The subject
  is the unit of inference: every interval and p-value comes from resampling subjects (or from a test whose
  reference distribution has subject-level degrees of freedom), never from treating sessions as independent.
  Modules: :mod:`.resampling` (subject-cluster bootstrap machinery), :mod:`.association` (within/between-subject
  correlations), :mod:`.mediation` (1-1-1 within-subject mediation), :mod:`.interaction` (placebo-controlled
  stratum x treatment interaction), :mod:`.dose_models` (random-slope dose-response mixed model; two-lines test),
  :mod:`.crossover` (period, sequence and carry-over terms), :mod:`.effects` (within/between effects with a wild
  cluster bootstrap), :mod:`.groups` (between-arm comparisons), :mod:`.calibration` (simulation suite:
  ``python -m pipelines.stats.calibration``). See docs/statistics.md.
"""

from .association import within_between_correlation, within_subject_partial_correlation
from .correlation import CORRELATION_COLUMNS, correlation_table, rm_correlation
from .descriptive import mean_t_ci
from .dose_models import dose_response_mixed, two_lines_test
from .formatting import P_FLOOR, format_p
from .interaction import stratum_by_treatment_interaction
from .mediation import within_subject_mediation
from .models import mixed_model
from .multiple_comparisons import fdr_bh
from .paired import PAIRED_CONVENTION, paired_contrast

__all__ = [
    "CORRELATION_COLUMNS",
    "P_FLOOR",
    "PAIRED_CONVENTION",
    "correlation_table",
    "dose_response_mixed",
    "fdr_bh",
    "format_p",
    "mean_t_ci",
    "mixed_model",
    "paired_contrast",
    "rm_correlation",
    "stratum_by_treatment_interaction",
    "two_lines_test",
    "within_between_correlation",
    "within_subject_mediation",
    "within_subject_partial_correlation",
]
