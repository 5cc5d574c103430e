"""Cytokines set against the design and mood: the stratum x time x dose mixed model and change-vs-mood
correlations.  Conventions: :mod:`pipelines.phenotype.cytokines`."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from pipelines.core.errors import InputError
from pipelines.phenotype.cytokine_censoring import SUBSTITUTION_STRATEGIES, ln_transform, substitute_censored
from pipelines.phenotype.cytokine_change import _attach_strata, _fdr_within, log_change_table


def _safe_name(label: str) -> str:
    return re.sub(r"\W", "_", str(label))


def stratum_mixed_model(
    parsed: pd.DataFrame,
    sessions: pd.DataFrame,
    strata: pd.DataFrame,
    *,
    analytes: Sequence[str] | None = None,
    timepoints: Sequence[str] = ("baseline", "24h"),
    strategy: str = "lloq_half",
    inflamed: str = "inflamed",
    reml: bool = True,
    fdr_alpha: float = 0.05,
    scale: str = "ln_ratio",
) -> pd.DataFrame:
    """Per analyte, ``ln_value ~ time × inflamed × dose_mg_per_kg + (1 | participant_id)`` via
    (``scale="difference"``: ``value ~ ...`` on the analyte's unit, so time terms are absolute differences)
    :func:`pipelines.stats.mixed_model`.

    ``time_<tp>`` are 0/1 indicators for each time point after the first (the reference);
    ``inflamed`` is 1 for stratum == ``inflamed`` and 0 for the other determined stratum (rows with
    ``undetermined``/``discordant``/unassigned strata are left out). ``sessions``: ``participant_id,
    session_id, dose_mg_per_kg``. Substitution strategies only. ``p_fdr`` adjusts each term across analytes.
    With ``analytes=None``, analytes not measured at every time point (e.g. CRP at baseline only) are skipped.
    """
    from pipelines.stats import mixed_model

    if strategy not in SUBSTITUTION_STRATEGIES:
        raise ValueError(f"the mixed model needs a substitution strategy {SUBSTITUTION_STRATEGIES}, not {strategy!r}")
    need = {"participant_id", "session_id", "dose_mg_per_kg"}
    if not need <= set(sessions.columns):
        raise ValueError(f"sessions needs columns {sorted(need)}")
    if sessions.duplicated(["participant_id", "session_id"]).any():
        raise ValueError("sessions has duplicate participant_id/session_id rows")
    timepoints = list(timepoints)
    data = parsed[parsed["timepoint"].isin(timepoints) & (parsed["censoring"] != "missing")]
    if analytes is not None:
        data = data[data["analyte"].isin(list(analytes))]
    data = ln_transform(substitute_censored(data, strategy))
    data = _attach_strata(data, strata)
    other = set(strata["stratum"]) - {inflamed, "undetermined", "discordant", "excluded"}
    data = data[data["stratum"].isin({inflamed, *other})]
    # The dose comes from ``sessions``; a dose column already in the table would otherwise be suffixed away.
    data = data.drop(columns=["dose_mg_per_kg"], errors="ignore").merge(
        sessions[["participant_id", "session_id", "dose_mg_per_kg"]], on=["participant_id", "session_id"], how="left"
    )
    no_dose = data["dose_mg_per_kg"].isna()
    if no_dose.any():
        r = data[no_dose].iloc[0]
        raise InputError(f"sessions: subject {r['participant_id']}, session {r['session_id']}: no dose_mg_per_kg")
    data["dose_mg_per_kg"] = data["dose_mg_per_kg"].astype(float)
    data["inflamed"] = (data["stratum"] == inflamed).astype(int)
    time_terms = []
    for tp in timepoints[1:]:
        name = f"time_{_safe_name(tp)}"
        data[name] = (data["timepoint"] == tp).astype(int)
        time_terms.append(name)
    response = "ln_value" if scale == "ln_ratio" else "value_substituted"
    formula = f"{response} ~ ({' + '.join(time_terms)}) * inflamed * dose_mg_per_kg"
    if data["dose_mg_per_kg"].nunique() < 2:  # one dose (open label): the dose terms are not identified
        formula = f"{response} ~ ({' + '.join(time_terms)}) * inflamed"
    results = []
    for analyte, group in data.groupby("analyte", sort=False):
        if group["timepoint"].nunique() < len(timepoints):
            if analytes is None:  # e.g. CRP measured at baseline only: nothing to model over time
                continue
            raise ValueError(
                f"analyte {analyte}: measured at {sorted(set(group['timepoint']))}, not at all of {timepoints}"
            )
        if group["inflamed"].nunique() < 2:
            raise ValueError(
                f"analyte {analyte}: both strata are needed for the model, have {sorted(set(group['stratum']))}"
            )
        fit = mixed_model(group.reset_index(drop=True), formula, groups="participant_id", reml=reml)
        results.append(fit.assign(analyte=analyte, formula=formula, strategy=strategy))
    table = _fdr_within(pd.concat(results, ignore_index=True), ["term"], fdr_alpha)
    first = ["analyte", "term"]
    return table[first + [c for c in table.columns if c not in first]]


def change_vs_mood(
    parsed: pd.DataFrame,
    mood_change: pd.DataFrame,
    outcomes: Sequence[str],
    *,
    baseline: str = "baseline",
    post: str = "24h",
    strategy: str = "lloq_half",
    analytes: Sequence[str] | None = None,
    method: str = "spearman",
    covariates: Sequence[str] | None = None,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
    fdr_alpha: float = 0.05,
    scale: str = "ln_ratio",
) -> pd.DataFrame:
    """Correlate per subject-session ln-change of each analyte (``<analyte>_ln_change``; with
    ``scale="difference"`` the absolute change, ``<analyte>_change``) with mood-change
    ``outcomes`` (``mood_change``: participant_id, session_id, outcome and covariate columns) through
    :func:`pipelines.stats.correlation_table`; rows without both are left out (see its ``n``)."""
    from pipelines.stats import correlation_table

    outcomes = list(outcomes)
    keys = ["participant_id", "session_id"]
    need = [*keys, *outcomes, *(covariates or [])]
    absent = [c for c in need if c not in mood_change.columns]
    if absent:
        raise ValueError(f"mood_change lacks columns {absent}")
    if mood_change.duplicated(keys).any():
        dup = mood_change[mood_change.duplicated(keys, keep=False)].iloc[0]
        raise InputError(f"mood_change: subject {dup['participant_id']}, session {dup['session_id']}: duplicate rows")
    changes = log_change_table(parsed, baseline, post, strategy=strategy, analytes=analytes, scale=scale)
    wide = changes.pivot(index=keys, columns="analyte", values="change")
    suffix = "_ln_change" if scale == "ln_ratio" else "_change"
    wide.columns = [f"{a}{suffix}" for a in wide.columns]
    x = list(wide.columns)
    data = wide.reset_index().merge(mood_change[need], on=keys, how="inner")
    table = correlation_table(
        data,
        x=x,
        y=outcomes,
        method=method,
        covariates=list(covariates) if covariates else None,
        n_boot=n_boot,
        ci=ci,
        seed=seed,
        fdr_alpha=fdr_alpha,
    )
    return table.assign(baseline=baseline, post=post, strategy=strategy, change_scale=scale)
