"""Condition order: the first condition is the reference of every within-subject contrast."""

from __future__ import annotations

import math

from pipelines.core.labels import condition_order_key, dose_label


def test_placebo_then_drug_free_then_doses_ascending():
    doses = {"high": 1.0, "pre": math.nan, "placebo": 0.0, "low": 0.25, "eyesclosed": None}
    ordered = sorted(doses, key=lambda c: (*condition_order_key(doses[c]), c))
    assert ordered == ["placebo", "eyesclosed", "pre", "low", "high"]


def test_dose_labels_sort_in_dose_order():
    assert sorted([dose_label(1.0), dose_label(0.25), dose_label(0.5)]) == ["0.25 mg/kg", "0.50 mg/kg", "1.00 mg/kg"]
