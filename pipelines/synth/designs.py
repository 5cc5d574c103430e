"""Synthetic studies of other designs than the default crossover, small, each with planted effects in truth.json.

* ``two_condition_edf``: resting EEG in two conditions without infusion (eyes open / eyes closed), one channel
  at 173.61 Hz, 24-s EDF recordings brought into BIDS by the importer (the route a user's own files take).
  Planted: alpha amplitude higher with eyes closed by ``alpha_gain_db``.
* ``mood_parallel``: a two-arm parallel trial without EEG or sessions: QIDS-SR16, MADRS, HAM-D17 and BDI-II
  items weekly (baseline, week1..week4), arm in ``participants.tsv``.  Planted: a larger improvement on
  ketamine than on the active control.

Everything is drawn from one seed through named child streams, quantised before writing, and written to a
temporary folder renamed into place when complete, like the default study.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.synth.study import round_floats, swap_into_place

DESIGNS = ("crossover", "two_condition_edf", "mood_parallel")

EDF_SFREQ_HZ = 173.61
EDF_SAMPLES = 173 * 24  # whole EDF records of 173 samples (~0.9965 s each at this rate): 23.9 s
MOOD_TIMEPOINTS = ("baseline", "week1", "week2", "week3", "week4")
MOOD_SCALES = ("qids_sr16", "madrs", "hamd17", "bdi_ii")


def _rng(seed: int, name: str) -> np.random.Generator:
    # A stream per named part: adding a part never changes the draws of another.
    key = int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little")
    return np.random.default_rng(key)


def _write_truth(root: Path, truth: dict, ignore: list[str]) -> None:
    (root / "truth.json").write_text(json.dumps(round_floats(truth), indent=2, sort_keys=True) + "\n")
    (root / ".bidsignore").write_text("\n".join(["truth.json", *ignore]) + "\n")


# --- two conditions, one channel, EDF, no infusion ---------------------------------------------------------

def generate_two_condition_edf(bids_root: Path, seed: int, n_subjects: int = 10, alpha_gain_db: float = 12.0) -> Path:
    """Eyes open / eyes closed, one parietal channel (Pz), written as EDF files and imported into BIDS."""
    import mne

    from pipelines.importer import import_study
    from pipelines.synth.eeg import quantise_volts

    bids_root = Path(bids_root)
    work = bids_root.with_name(bids_root.name + f".work-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    (work / "raw").mkdir(parents=True)
    rows, subjects = [], {}
    t = np.arange(EDF_SAMPLES) / EDF_SFREQ_HZ
    for i in range(n_subjects):
        subject = f"{i + 1:02d}"
        rng = _rng(seed, f"subject/{subject}")
        peak_hz = float(rng.uniform(9.0, 11.0))
        open_uv = float(rng.uniform(3.0, 6.0))
        subjects[f"sub-{subject}"] = {"alpha_peak_hz": peak_hz, "alpha_amplitude_open_uv": open_uv}
        for condition, gain_db in (("eyesopen", 0.0), ("eyesclosed", alpha_gain_db)):
            rec_rng = _rng(seed, f"recording/{subject}/{condition}")
            background = np.cumsum(rec_rng.standard_normal(EDF_SAMPLES)) * 0.6  # brown-ish 1/f^2 drift
            background = background - np.convolve(background, np.ones(87) / 87, mode="same")  # ~2 Hz high-pass
            white = rec_rng.standard_normal(EDF_SAMPLES) * 4.0
            amplitude = open_uv * 10 ** (gain_db / 20)
            alpha = amplitude * np.sin(2 * np.pi * peak_hz * t + rec_rng.uniform(0, 2 * np.pi))
            data_v = quantise_volts((background + white + alpha)[None, :] * 1e-6)
            raw = mne.io.RawArray(data_v, mne.create_info(["Pz"], EDF_SFREQ_HZ, "eeg"), verbose="error")
            raw.set_meas_date(pd.Timestamp("2020-01-06 09:00", tz="UTC").to_pydatetime())
            name = f"S{subject}_{condition}.edf"
            mne.export.export_raw(work / "raw" / name, raw, fmt="edf", overwrite=True, verbose="error")
            rows.append({"file": name, "subject": subject, "condition": condition, "task": "rest"})
    sheet = work / "recordings.csv"
    pd.DataFrame(rows).to_csv(sheet, index=False, lineterminator="\n")
    tmp = bids_root.with_name(bids_root.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    import_study(work / "raw", sheet, tmp, "two-condition-edf")
    _write_truth(tmp, {"design": "two_condition_edf", "seed": seed, "sfreq_hz": EDF_SFREQ_HZ,
                       "samples": EDF_SAMPLES, "alpha_gain_db_closed_vs_open": alpha_gain_db,
                       "conditions": ["eyesopen", "eyesclosed"], "subjects": subjects}, [])
    shutil.rmtree(work)
    swap_into_place(tmp, bids_root)
    return bids_root


# --- a two-arm mood-only parallel trial ---------------------------------------------------------------------

def generate_mood_parallel(bids_root: Path, seed: int, n_per_arm: int = 12,
                           improvement: dict | None = None) -> Path:
    """Weekly mood scales, no EEG, no sessions; arms in participants.tsv.

    Severity is a latent fraction of each scale's maximum (baseline ~0.55); it falls by ``improvement[arm]``
    (a fraction of the maximum) from week 1 on, with subject and item noise."""
    from pipelines.questionnaires import SCALES

    improvement = improvement or {"ketamine": 0.25, "midazolam": 0.08}
    bids_root = Path(bids_root)
    tmp = bids_root.with_name(bids_root.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "phenotype").mkdir(parents=True)
    n = 2 * n_per_arm
    subjects = [f"sub-{i + 1:02d}" for i in range(n)]
    arms = np.array(["ketamine"] * n_per_arm + ["midazolam"] * n_per_arm)
    arms = arms[_rng(seed, "randomisation").permutation(n)]
    demo = _rng(seed, "demographics")
    participants = pd.DataFrame({"participant_id": subjects, "age": demo.integers(22, 65, n),
                                 "sex": demo.choice(["F", "M"], n), "arm": arms})
    participants.to_csv(tmp / "participants.tsv", sep="\t", index=False, lineterminator="\n")
    (tmp / "participants.json").write_text(json.dumps({
        "participant_id": {"Description": "Pseudonymous participant identifier"},
        "age": {"Description": "Age at enrolment", "Units": "year"},
        "sex": {"Description": "Sex", "Levels": {"F": "female", "M": "male"}},
        "arm": {"Description": "Randomised arm", "Levels": {"ketamine": "ketamine 0.5 mg/kg",
                                                            "midazolam": "midazolam 0.045 mg/kg (active control)"}},
    }, indent=2) + "\n")
    trait = _rng(seed, "severity")
    baseline = np.clip(trait.normal(0.55, 0.08, n), 0.3, 0.85)
    response = trait.normal(1.0, 0.25, n)  # subject-level responsiveness
    truth_change = {}
    for scale in MOOD_SCALES:
        key = SCALES[scale]
        item_max = np.broadcast_to(np.asarray(key.item_max, dtype=float), (key.n_items,))
        rng = _rng(seed, f"items/{scale}")
        rows = []
        for s, subject in enumerate(subjects):
            for w, timepoint in enumerate(MOOD_TIMEPOINTS):
                drop = improvement[arms[s]] * response[s] * (min(w, 1) + 0.1 * max(w - 1, 0))
                severity = np.clip(baseline[s] - drop, 0.02, 0.98)
                answers = np.clip(np.round(item_max * (severity + rng.normal(0, 0.12, key.n_items))), 0, item_max)
                rows.append([subject, timepoint, *answers.astype(int)])
        table = pd.DataFrame(rows, columns=["participant_id", "timepoint", *key.item_columns])
        table.to_csv(tmp / "phenotype" / f"{scale}.tsv", sep="\t", index=False, lineterminator="\n")
        (tmp / "phenotype" / f"{scale}.json").write_text(json.dumps({
            "participant_id": {"Description": "Pseudonymous participant identifier"},
            "timepoint": {"Description": "Weekly assessment", "Levels": {t: t for t in MOOD_TIMEPOINTS}},
            "ResponseScale": {"min": 0, "max": int(item_max.max())},
        }, indent=2) + "\n")
        truth_change[scale] = {arm: float(-improvement[arm] * item_max.sum()) for arm in improvement}
    (tmp / "dataset_description.json").write_text(json.dumps({
        "Name": "Synthetic two-arm mood-only trial (ketamine-workbench)", "BIDSVersion": "1.10.0",
        "DatasetType": "raw", "License": "CC0", "Authors": ["ketamine-workbench generator"]}, indent=2) + "\n")
    (tmp / "README").write_text("Synthetic two-arm parallel trial: weekly mood scales, no EEG (ketamine-workbench).\n")
    _write_truth(tmp, {"design": "mood_parallel", "seed": seed, "timepoints": list(MOOD_TIMEPOINTS),
                       "arms": dict(zip(subjects, arms.tolist())),
                       "expected_mean_change_week1_on": truth_change,
                       "improvement_fraction_of_max": improvement},
                 [f"phenotype/{s}.*" for s in MOOD_SCALES])
    swap_into_place(tmp, bids_root)
    return bids_root
