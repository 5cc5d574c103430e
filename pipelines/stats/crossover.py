"""Crossover terms from the recorded session order, and the dose model of the reports with them.

A crossover gives each subject every condition, one per period, in a sequence. From each session's
recorded order (``session_order`` in ``sub-XX_sessions.tsv``, or any per-subject rank such as
``acq_time``) three design terms follow (Jones & Kenward 2014, *Design and Analysis of Cross-Over
Trials*, 3rd ed., ch. 1 and 5):

* **period** — the session's position in the subject's own order, 1..K (ties are an error);
* **sequence** — the subject's doses in period order, e.g. ``0/0.25/1/0.5`` (a subject-level label);
* **carry-over** — the dose given in the previous period (0 in period 1), per unit dose.

Whether a term is *identified* is decided from the data, never assumed: period needs two or more periods
and must not be aliased with dose within subjects (every subject in the same sequence would make period
and dose the same thing); sequence needs two or more sequences and more subjects than sequences (one
subject per sequence makes the sequence a subject label); carry-over must add rank to the
within-subject design [dose, period] (in a two-period AB/BA design it is aliased with them). Each term
that is not identified is left out with a one-line reason.

:func:`crossover_dose_model` is the dose model every report fits: :func:`pipelines.stats.dose_response_mixed`
(random dose slopes, subject-cluster bootstrap-t) with the identified crossover terms; with no recorded
order it fits the dose model alone and says so in ``crossover_note``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "CROSSOVER_NOT_MODELLED",
    "crossover_dose_model",
    "crossover_terms",
    "identified_terms",
    "williams_sequences",
]

CROSSOVER_NOT_MODELLED = (
    "session order not recorded (no design.session_order_column): period, sequence and carry-over are not modelled"
)


def williams_sequences(k: int) -> tuple[tuple[int, ...], ...]:
    """Williams (1949) sequences for ``k`` treatments (indices 0..k−1), balanced for period and first-order
    carry-over: every treatment once per period and every ordered pair of successive treatments equally
    often. Even k: k sequences (first row 0, 1, k−1, 2, k−2, …; row i adds i mod k). Odd k: those k and
    their mirror images (2k sequences)."""
    if k < 1:
        raise ValueError(f"williams_sequences needs k >= 1 treatments, got {k}")
    first, low, high = [0], 1, k - 1
    while len(first) < k:
        first.append(low)
        low += 1
        if len(first) < k:
            first.append(high)
            high -= 1
    rows = [tuple((t + i) % k for t in first) for i in range(k)]
    if k % 2 == 1 and k > 1:
        rows += [tuple(reversed(r)) for r in rows]
    return tuple(rows)


def _format_dose(value: float) -> str:
    return f"{value:g}"


def crossover_terms(df: pd.DataFrame, subject: str, order: str, dose: str) -> pd.DataFrame:
    """``df`` with ``period`` (1..K, the rank of ``order`` within the subject), ``sequence`` (the subject's
    doses in period order, ``/``-joined) and ``carryover_dose`` (previous period's dose, 0 in period 1).

    ``order`` may be numbers or ISO times (``acq_time``); only its rank within a subject is used. Rows
    without an order raise ``ValueError`` naming the subject, as do ties within a subject."""
    if order not in df.columns:
        raise ValueError(f"no session-order column {order!r}; columns: {list(df.columns)}")
    out = df.copy()
    key = out[order]
    if not pd.api.types.is_numeric_dtype(key):
        parsed = pd.to_numeric(key, errors="coerce")
        key = parsed if parsed.notna().sum() == key.notna().sum() else pd.to_datetime(key, errors="coerce", utc=True)
    missing = key.isna()
    if missing.any():
        subjects = sorted(out.loc[missing, subject].astype(str).unique())
        raise ValueError(f"session order {order!r} is missing or unreadable for subject(s) {subjects}")
    out["_key"] = key
    ties = out.groupby(subject)["_key"].apply(lambda s: s.duplicated().any())
    if ties.any():
        raise ValueError(f"session order {order!r} has ties within subject(s) {sorted(ties[ties].index.astype(str))}")
    out["period"] = out.groupby(subject)["_key"].rank(method="first").astype(int)
    ordered = out.sort_values([subject, "period"], kind="stable")
    sequence = ordered.groupby(subject)[dose].agg(lambda d: "/".join(_format_dose(v) for v in d))
    out["sequence"] = out[subject].map(sequence)
    previous = ordered.groupby(subject)[dose].shift(1).fillna(0.0)
    out["carryover_dose"] = previous.reindex(out.index).astype(float)
    return out.drop(columns="_key")


def _centred(df: pd.DataFrame, subject: str, columns: list[str]) -> np.ndarray:
    if not columns:
        return np.zeros((len(df), 0))
    values = df[columns].astype(float)
    return (values - values.groupby(df[subject]).transform("mean")).to_numpy()


def identified_terms(
    df: pd.DataFrame,
    subject: str,
    dose: str,
    period: str = "period",
    sequence: str = "sequence",
    carryover: str = "carryover_dose",
) -> dict[str, tuple[bool, str]]:
    """For each crossover term (``period``, ``sequence``, ``carryover``): (identified, one-line reason if not),
    on the rows given (after any row filtering, e.g. active sessions only)."""
    tol = 1e-9
    dummies = pd.get_dummies(df[period].astype(str), prefix="p", drop_first=True, dtype=float)
    work = pd.concat([df[[subject, dose, carryover]].reset_index(drop=True), dummies.reset_index(drop=True)], axis=1)
    base = _centred(work, subject, [dose])
    rank_dose = np.linalg.matrix_rank(base, tol) if base.size else 0
    with_period = _centred(work, subject, [dose, *dummies.columns])
    rank_period = np.linalg.matrix_rank(with_period, tol) if with_period.size else 0
    out: dict[str, tuple[bool, str]] = {}
    n_periods = df[period].nunique()
    if n_periods < 2:
        out["period"] = (False, "period not identified: one period only")
    elif rank_period < rank_dose + n_periods - 1:
        out["period"] = (
            False,
            "period not identified: aliased with dose within subjects (subjects share one sequence)",
        )
    else:
        out["period"] = (True, "")
    n_seq, n_subj = df[sequence].nunique(), df[subject].nunique()
    if n_seq < 2:
        out["sequence"] = (False, "sequence not identified: every subject has the same sequence")
    elif n_subj <= n_seq:
        out["sequence"] = (
            False,
            f"sequence not identified: {n_seq} sequences for {n_subj} subjects (a sequence would be a subject label)",
        )
    else:
        out["sequence"] = (True, "")
    full = _centred(work, subject, [dose, *dummies.columns, carryover])
    rank_full = np.linalg.matrix_rank(full, tol) if full.size else 0
    if rank_full <= rank_period:
        out["carryover"] = (False, "carry-over not identified: aliased with dose and period within subjects")
    else:
        out["carryover"] = (True, "")
    return out


def crossover_dose_model(
    df: pd.DataFrame,
    outcome: str,
    dose: str,
    subject: str,
    order: str | None = None,
    *,
    carryover: bool = True,
    n_boot: int = 499,
    seed: int = 0,
) -> pd.DataFrame:
    """Dose effect per unit dose with the crossover terms the recorded order identifies.

    :func:`pipelines.stats.dose_response_mixed` (random dose slopes when identified; subject-cluster
    bootstrap-t) with ``period`` (categorical), ``sequence`` (categorical, subject level) and ``carryover``
    (previous period's dose, numeric; ``carryover=False`` leaves it out) when :func:`identified_terms` says
    so. ``order``: a column of ``df`` with each session's order (None = not recorded). Rows as
    ``dose_response_mixed`` (dose row first), plus ``crossover_terms`` (the terms fitted, or "none") and
    ``crossover_note`` (one line: what is modelled and why any term is not). ``df`` may already carry
    ``period``/``sequence``/``carryover_dose`` columns from :func:`crossover_terms`."""
    from .dose_models import dose_response_mixed

    if order is None:
        rows = dose_response_mixed(df, outcome, dose, subject, n_boot=n_boot, seed=seed)
        return rows.assign(crossover_terms="none", crossover_note=CROSSOVER_NOT_MODELLED)
    data = df.dropna(subset=[outcome, dose])
    # Period, sequence and carry-over come from the whole schedule, so they are derived before any rows
    # are dropped (an analysis of active sessions keeps the period a session really had).
    if not {"period", "sequence", "carryover_dose"} <= set(data.columns):
        data = crossover_terms(df, subject, order, dose).loc[data.index]
    status = identified_terms(data, subject, dose)
    if not carryover:
        status["carryover"] = (False, "carry-over not modelled (washout between sessions; carryover=False)")
    use = {term: ok for term, (ok, _) in status.items()}
    rows = dose_response_mixed(
        data,
        outcome,
        dose,
        subject,
        period="period" if use["period"] else None,
        sequence="sequence" if use["sequence"] else None,
        carryover="carryover_dose" if use["carryover"] else None,
        n_boot=n_boot,
        seed=seed,
    )
    fitted = [t for t in ("period", "sequence", "carryover") if use[t]]
    reasons = [reason for _, (ok, reason) in status.items() if not ok]
    note = (
        f"crossover terms from the recorded session order ({order}): "
        + (", ".join(fitted) if fitted else "none identified")
        + ("; " + "; ".join(reasons) if reasons else "")
    )
    return rows.assign(crossover_terms=", ".join(fitted) or "none", crossover_note=note)
