"""Cytokine and metabolite assay tables: parsing, units, censoring, inflammation strata, paired change.

Conventions (each decision is stated once, here, and stored with the results where it matters):

Tables
    Long (one row per subject-session-timepoint-analyte: ``analyte``, ``value``, optional ``unit``,
    optional ``replicate``/``well``) or wide (one row per subject-session-timepoint, one column per
    analyte). BIDS ``phenotype/`` TSV with a JSON sidecar, or CSV. Keys: ``participant_id``,
    ``session_id``, ``timepoint``. Rows are numbered from 1 after the header (row 1 is line 2).

Units
    Each analyte has one declared unit (sidecar ``{"analytes": {"IL6": {"unit": "pg/mL", "LLOQ": 0.7,
    "ULOQ": 5000}}}``, a BIDS column entry's ``Units`` for wide tables, or ``units=``), and every value is
    converted to it with :data:`UNIT_TABLE` (mass concentrations pg/mL, ng/mL, µg/mL, mg/L, mg/dL, ...;
    amount concentrations µmol/L, µM, nmol/mL, nM, ...). ``µ`` (micro sign or Greek mu), ``u`` and
    ``mcg`` spellings are accepted. Mass and amount concentrations are never converted into each other
    (that needs a molar mass): such a row is an :class:`~pipelines.core.errors.InputError`. LLOQ/ULOQ are in
    the declared unit. A row with a value but no unit, in a table that has a ``unit`` column, is an error.
    Conversion is exact: the decimal as written times the unit ratio as a fraction, rounded once to a
    float (:func:`convert_exact`), so "0.3" mg/dL and "3000" µg/L become the very float 3.0 mg/L, and
    thresholds (:func:`inflammation_strata`) are converted the same way.

Lab strings (:func:`parse_lab_value`)
    ``3.2`` observed; ``<0.7`` below (bound 0.7, as reported by the lab); ``<LLOQ``, ``< LLOQ``, ``ND``,
    ``n.d.``, ``not detected`` below (bound = the analyte's LLOQ, which must be declared); ``>5000``
    above; ``>ULOQ`` above (bound = ULOQ); ``NA``, ``n/a``, ``nan``, ``null``, ``none`` and empty cells
    missing. A *number* below the LLOQ (including 0) is censored below at the LLOQ, a number above the
    ULOQ is censored above at the ULOQ: extrapolated readings outside the validated range are not
    used as values. Zero without a declared LLOQ, negative numbers, ``<0``, ``<=``, inf and any other
    text are errors. Decimal commas: by default (``decimal="."``) a comma in a number is an error,
    because ``5,000`` (thousands) and ``3,2`` (decimal) cannot be told apart; pass ``decimal=","`` for
    European exports (then a period in a number is an error). A censored value is never stored as a
    number: ``value`` is NaN and ``limit`` holds the bound; only :func:`substitute_censored` produces
    numbers for it, and says how.

Replicates (duplicate wells)
    Declared by a ``replicate`` or ``well`` column, or ``replicates=True``. Wells of one
    subject-session-timepoint-analyte are combined: the mean of the observed wells (with
    ``replicate_cv_pct`` = 100·SD/mean, SD with ddof=1, when ≥ 2 wells are observed, and
    ``n_replicates_censored`` counting censored wells); if no well is observed, the result is censored at
    the loosest bound (the largest "<" or smallest ">"); wells both below and above are an error.
    Without declared replicates, identical duplicate rows are collapsed with a warning and conflicting
    ones are an error.

Censoring strategies
    ``lloq_half`` (bound/2) and ``lloq_sqrt2`` (bound/√2) substitute below-limit values; values above the
    ULOQ become the ULOQ itself (a lower bound, so increases are understated). ``censored_mle`` does not
    substitute: :func:`censored_normal_mle` maximises a normal likelihood on the natural-log scale in
    which a censored observation contributes the probability of its interval (Tobit-style). For the
    paired change it is applied to the per-pair ln-changes d = ln(post) − ln(baseline): a pair whose
    member is censored gives an interval for d bounded by the observed partner (e.g. baseline "<L",
    post y: d > ln y − ln L); a pair with both members censored on the same side carries no
    information and is dropped (counted in ``n_uninformative``). It estimates μ, the mean ln-change
    (so exp(μ) is the geometric-mean fold change), under the assumption that ln-changes are normal;
    treating the partner's observed value as fixed is exact only if the change is independent of
    that level, an approximation otherwise. CI: Wald, from the observed information; p: likelihood
    ratio test of μ = 0.

Strata and change (see :func:`define_strata`, :data:`CHANGE_SCALES`)
    Inflammation strata from a screening CRP draw (a subject-level row, ``session_id`` ``n/a``), else the
    geometric mean of repeated baselines, else the single baseline (biased by regression to the mean: warned);
    CRP ≥ 10 mg/L (probable acute infection) flagged and left out by a named rule. Changes are ln(post/baseline)
    or post − baseline. Units missing from a file can be declared per table in the manifest
    (``declared_units``); a unit in the file that disagrees is an error. Unknown columns are reported.

Derived values
    ``ln_value`` is the natural log. The kynurenine/tryptophan ratio is KYN[µmol/L] / TRP[µmol/L] × 1000,
    unit ``µmol/mmol`` (the commonly reported ×10³ scaling); censoring propagates (KYN "<L" gives the
    ratio "<L/TRP"; a ratio whose direction is undetermined is missing). Outliers: median ± k·MAD
    (MAD scaled by 1.4826) of observed ln values per analyte and time point; flagged with a reason,
    never deleted.

Where each part lives
    This module is the public face: every name is imported from here (``from pipelines.phenotype import
    cytokines as cy``). The code is in one sibling module per topic: :mod:`~pipelines.phenotype.cytokine_values`
    (units, lab strings), :mod:`~pipelines.phenotype.cytokine_tables` (reading and validating tables),
    :mod:`~pipelines.phenotype.cytokine_censoring` (limits of quantification: substitution, bounds, outliers,
    KYN/TRP, censored MLE), :mod:`~pipelines.phenotype.cytokine_change` (paired change),
    :mod:`~pipelines.phenotype.cytokine_strata` (inflammation strata) and
    :mod:`~pipelines.phenotype.cytokine_associations` (mixed model, change vs mood).
"""

from __future__ import annotations

from pipelines.core.units import UNIT_TABLE, canonical_unit
from pipelines.phenotype.cytokine_associations import _safe_name as _safe_name
from pipelines.phenotype.cytokine_associations import (
    change_vs_mood,
    stratum_mixed_model,
)
from pipelines.phenotype.cytokine_censoring import (
    CENSORING_LEVELS,
    KYN_TRP_UNIT,
    MAD_TO_SD,
    STRATEGIES,
    STRATEGY_DESCRIPTIONS,
    SUBSTITUTION_STRATEGIES,
    add_kyn_trp_ratio,
    censored_normal_mle,
    censoring_summary,
    flag_outliers,
    ln_bounds,
    ln_transform,
    substitute_censored,
    value_bounds,
)
from pipelines.phenotype.cytokine_change import (
    CHANGE_SCALE_TEXT,
    CHANGE_SCALES,
    hedges_g_av,
    log_change_table,
    paired_change,
    rank_biserial,
    sensitivity_comparison,
    wilcoxon_p,
)
from pipelines.phenotype.cytokine_change import _mle_stats as _mle_stats
from pipelines.phenotype.cytokine_change import _pairs as _pairs
from pipelines.phenotype.cytokine_strata import (
    ACUTE_RULES,
    RTM_WARNING,
    STRATA_SOURCE_TEXT,
    STRATA_SOURCES,
    THRESHOLD_REL_TOL,
    acute_rule_text,
    define_strata,
    inflammation_strata,
)
from pipelines.phenotype.cytokine_tables import (
    KEYS,
    LONG_COLUMNS,
    NO_SESSION,
    REPLICATE_COLUMNS,
    UNIT_OUTLIER_FOLD,
    UnitConversionWarning,
    UnknownColumnWarning,
    analyte_metadata,
    declared_unit,
    load_cytokines,
)
from pipelines.phenotype.cytokine_values import (
    MISSING_STRINGS,
    NOT_DETECTED_STRINGS,
    LabValue,
    convert_exact,
    parse_lab_value,
    unit_conversion_factor,
    unit_conversion_ratio,
)

# Also imported above as `x as x`: _pairs, _mle_stats and _safe_name, private helpers that the cytokine report
# and the tests reach through this module.
__all__ = [
    "UNIT_TABLE",
    "canonical_unit",
    "MISSING_STRINGS",
    "NOT_DETECTED_STRINGS",
    "unit_conversion_ratio",
    "unit_conversion_factor",
    "convert_exact",
    "LabValue",
    "parse_lab_value",
    "KEYS",
    "REPLICATE_COLUMNS",
    "LONG_COLUMNS",
    "NO_SESSION",
    "UnknownColumnWarning",
    "declared_unit",
    "analyte_metadata",
    "load_cytokines",
    "UnitConversionWarning",
    "UNIT_OUTLIER_FOLD",
    "CENSORING_LEVELS",
    "SUBSTITUTION_STRATEGIES",
    "STRATEGIES",
    "STRATEGY_DESCRIPTIONS",
    "KYN_TRP_UNIT",
    "MAD_TO_SD",
    "censoring_summary",
    "substitute_censored",
    "ln_transform",
    "value_bounds",
    "ln_bounds",
    "flag_outliers",
    "add_kyn_trp_ratio",
    "censored_normal_mle",
    "CHANGE_SCALES",
    "CHANGE_SCALE_TEXT",
    "log_change_table",
    "hedges_g_av",
    "rank_biserial",
    "wilcoxon_p",
    "paired_change",
    "sensitivity_comparison",
    "THRESHOLD_REL_TOL",
    "inflammation_strata",
    "STRATA_SOURCES",
    "ACUTE_RULES",
    "STRATA_SOURCE_TEXT",
    "RTM_WARNING",
    "acute_rule_text",
    "define_strata",
    "stratum_mixed_model",
    "change_vs_mood",
]
