"""Synthetic studies of other designs than the default crossover, small, each with planted effects in truth.json.

* ``two_condition_edf``: resting EEG in two conditions without infusion (eyes open / eyes closed), one channel
  at 173.61 Hz, 24-s EDF recordings brought into BIDS by the importer (the route a user's own files take).
  Planted: alpha amplitude higher with eyes closed by ``alpha_gain_db``.
* ``mood_parallel``: a two-arm parallel trial without EEG or sessions: QIDS-SR16, MADRS, HAM-D17 and BDI-II
  items weekly (baseline, week1..week4), arm in ``participants.tsv``.  Planted: a larger improvement on
  ketamine than on the active control.
* ``open_label``: a single-arm open-label study, two ketamine infusions (0.5 mg/kg) per participant, no EEG:
  the 11D-ASC after each infusion (per session), MADRS per participant (baseline, 24 h, 7 d, 28 d; not per
  session) and cytokines per session and draw in a file without a unit column (units declared in the
  manifest).  Planted: participants with a stronger experience (their mean 11D-ASC over both sessions)
  improve more; IL-6 falls 24 h after each infusion.

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

DESIGNS = ("crossover", "two_condition_edf", "mood_parallel", "open_label")

EDF_SFREQ_HZ = 173.61
EDF_SAMPLES = 173 * 24  # whole EDF records of 173 samples (~0.9965 s each at this rate): 23.9 s
MOOD_TIMEPOINTS = ("baseline", "week1", "week2", "week3", "week4")
MOOD_SCALES = ("qids_sr16", "madrs", "hamd17", "bdi_ii")


def _rng(seed: int, name: str) -> np.random.Generator:
    # A stream per named part: adding a part never changes the draws of another.
    key = int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little")
    return np.random.default_rng(key)


def _subject_folders(root: Path, subjects: list[str]) -> None:
    """A folder per participant even without imaging data: the validator matches participants.tsv against
    them.  A header-only scans.tsv says, in BIDS terms, that the participant has no data files."""
    for subject in subjects:
        (root / subject).mkdir(exist_ok=True)
        scans = root / subject / f"{subject}_scans.tsv"
        if not any((root / subject).iterdir()):
            scans.write_text("filename\tacq_time\n")


def _write_truth(root: Path, truth: dict, ignore: list[str]) -> None:
    (root / "truth.json").write_text(json.dumps(round_floats(truth), indent=2, sort_keys=True) + "\n")
    (root / ".bidsignore").write_text("\n".join(["truth.json", *ignore]) + "\n")


# --- two conditions, one channel, EDF, no infusion ---------------------------------------------------------


def generate_two_condition_edf(bids_root: Path, seed: int, n_subjects: int = 10, alpha_gain_db: float = 12.0) -> Path:
    """Eyes open / eyes closed, one parietal channel (Pz), written as EDF files and imported into BIDS."""
    import mne

    from pipelines.study.importer import import_study
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
    _write_truth(
        tmp,
        {
            "design": "two_condition_edf",
            "seed": seed,
            "sfreq_hz": EDF_SFREQ_HZ,
            "samples": EDF_SAMPLES,
            "alpha_gain_db_closed_vs_open": alpha_gain_db,
            "conditions": ["eyesopen", "eyesclosed"],
            "subjects": subjects,
        },
        [],
    )
    shutil.rmtree(work)
    swap_into_place(tmp, bids_root)
    return bids_root


# --- a two-arm mood-only parallel trial ---------------------------------------------------------------------


def generate_mood_parallel(bids_root: Path, seed: int, n_per_arm: int = 12, improvement: dict | None = None) -> Path:
    """Weekly mood scales, no EEG, no sessions; arms in participants.tsv.

    Severity is a latent fraction of each scale's maximum (baseline ~0.55); it falls by ``improvement[arm]``
    (a fraction of the maximum) from week 1 on, with subject and item noise."""
    from pipelines.phenotype.questionnaires import SCALES

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
    participants = pd.DataFrame(
        {"participant_id": subjects, "age": demo.integers(22, 65, n), "sex": demo.choice(["F", "M"], n), "arm": arms}
    )
    participants.to_csv(tmp / "participants.tsv", sep="\t", index=False, lineterminator="\n")
    (tmp / "participants.json").write_text(
        json.dumps(
            {
                "participant_id": {"Description": "Pseudonymous participant identifier"},
                "age": {"Description": "Age at enrolment", "Units": "year"},
                "sex": {"Description": "Sex", "Levels": {"F": "female", "M": "male"}},
                "arm": {
                    "Description": "Randomised arm",
                    "Levels": {"ketamine": "ketamine 0.5 mg/kg", "midazolam": "midazolam 0.045 mg/kg (active control)"},
                },
            },
            indent=2,
        )
        + "\n"
    )
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
        (tmp / "phenotype" / f"{scale}.json").write_text(
            json.dumps(
                {
                    "participant_id": {"Description": "Pseudonymous participant identifier"},
                    "timepoint": {"Description": "Weekly assessment", "Levels": {t: t for t in MOOD_TIMEPOINTS}},
                    "ResponseScale": {"min": 0, "max": int(item_max.max())},
                },
                indent=2,
            )
            + "\n"
        )
        truth_change[scale] = {arm: float(-improvement[arm] * item_max.sum()) for arm in improvement}
    (tmp / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "Synthetic two-arm mood-only trial (ketamine-workbench)",
                "BIDSVersion": "1.10.0",
                "DatasetType": "raw",
                "License": "CC0",
                "Authors": ["ketamine-workbench generator"],
            },
            indent=2,
        )
        + "\n"
    )
    (tmp / "README").write_text("Synthetic two-arm parallel trial: weekly mood scales, no EEG (ketamine-workbench).\n")
    _subject_folders(tmp, subjects)
    _write_truth(
        tmp,
        {
            "design": "mood_parallel",
            "seed": seed,
            "timepoints": list(MOOD_TIMEPOINTS),
            "arms": dict(zip(subjects, arms.tolist())),
            "expected_mean_change_week1_on": truth_change,
            "improvement_fraction_of_max": improvement,
        },
        [f"phenotype/{s}.*" for s in MOOD_SCALES],
    )
    swap_into_place(tmp, bids_root)
    return bids_root


# --- a single-arm open-label study: per-session 11D-ASC, per-subject mood, unit-less cytokines ------------------

OPEN_LABEL_TIMEPOINTS = ("baseline", "24h", "7d", "28d")
OPEN_LABEL_DOSE = 0.5
# Blood draw analytes and the units the manifest declares for the unit-less file (the file itself has none).
OPEN_LABEL_UNITS = {"IL6": "pg/mL", "TNFA": "pg/mL", "CRP": "mg/L"}


def generate_open_label(
    bids_root: Path, seed: int, n_subjects: int = 12, experience_effect: float = 0.5, il6_ln_change: float = -0.3
) -> Path:
    """Two open-label infusions per participant; see the module docstring.

    Each session's experience intensity (0–1) is the participant's trait plus session noise; the 11D-ASC items
    are that intensity × 100 plus item noise.  Mood severity (fraction of the MADRS maximum) falls after
    the first infusion by ``0.15 + experience_effect × (mean intensity − 0.5)`` (plus noise) and stays
    down to 7 d, partly relapsing by 28 d.  IL-6 changes by ``il6_ln_change`` (natural log) 24 h after each
    infusion; TNF-α and CRP do not change."""
    from pipelines.phenotype.questionnaires import SCALES

    bids_root = Path(bids_root)
    tmp = bids_root.with_name(bids_root.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "phenotype").mkdir(parents=True)
    subjects = [f"sub-{i + 1:02d}" for i in range(n_subjects)]
    sessions = ["ses-1", "ses-2"]
    demo = _rng(seed, "demographics")
    pd.DataFrame(
        {
            "participant_id": subjects,
            "age": demo.integers(22, 65, n_subjects),
            "sex": demo.choice(["F", "M"], n_subjects),
        }
    ).to_csv(tmp / "participants.tsv", sep="\t", index=False, lineterminator="\n")
    (tmp / "participants.json").write_text(
        json.dumps(
            {
                "participant_id": {"Description": "Pseudonymous participant identifier"},
                "age": {"Description": "Age at enrolment", "Units": "year"},
                "sex": {"Description": "Sex", "Levels": {"F": "female", "M": "male"}},
            },
            indent=2,
        )
        + "\n"
    )
    sessions_sidecar = (
        json.dumps(
            {
                "session_id": {"Description": "Infusion visit"},
                "session_order": {"Description": "Order of the visit (1 = first infusion)"},
                "dose_mg_per_kg": {"Description": "Ketamine dose (open label)", "Units": "mg/kg"},
            },
            indent=2,
        )
        + "\n"
    )
    for subject in subjects:
        (tmp / subject).mkdir()
        pd.DataFrame(
            {"session_id": sessions, "session_order": [1, 2], "dose_mg_per_kg": [OPEN_LABEL_DOSE, OPEN_LABEL_DOSE]}
        ).to_csv(tmp / subject / f"{subject}_sessions.tsv", sep="\t", index=False, lineterminator="\n")
        (tmp / subject / f"{subject}_sessions.json").write_text(sessions_sidecar)

    # Experience: a trait per participant, plus session noise.
    trait_rng = _rng(seed, "experience")
    trait = np.clip(trait_rng.normal(0.5, 0.15, n_subjects), 0.1, 0.9)
    intensity = np.clip(trait[:, None] + trait_rng.normal(0, 0.07, (n_subjects, 2)), 0.02, 0.98)
    key = SCALES["asc11d"]
    item_rng = _rng(seed, "items/asc11d")
    rows = []
    for s, subject in enumerate(subjects):
        for k, session in enumerate(sessions):
            answers = np.clip(np.round(100 * (intensity[s, k] + item_rng.normal(0, 0.2, key.n_items)), 1), 0, 100)
            rows.append([subject, session, *answers])
    pd.DataFrame(rows, columns=["participant_id", "session_id", *key.item_columns]).to_csv(
        tmp / "phenotype" / "asc11d.tsv", sep="\t", index=False, lineterminator="\n"
    )
    (tmp / "phenotype" / "asc11d.json").write_text(
        json.dumps(
            {
                "participant_id": {"Description": "Pseudonymous participant identifier"},
                "session_id": {"Description": "Infusion visit the questionnaire refers to (filled in after it)"},
                "ResponseScale": {"min": 0, "max": 100},
            },
            indent=2,
        )
        + "\n"
    )

    # Mood per participant (not per session): baseline before the first infusion, then follow-ups.
    madrs = SCALES["madrs"]
    item_max = np.broadcast_to(np.asarray(madrs.item_max, dtype=float), (madrs.n_items,))
    mood_rng = _rng(seed, "items/madrs")
    severity0 = np.clip(mood_rng.normal(0.55, 0.07, n_subjects), 0.35, 0.8)
    drop = 0.15 + experience_effect * (intensity.mean(axis=1) - 0.5) + mood_rng.normal(0, 0.03, n_subjects)
    kept = {"baseline": 0.0, "24h": 1.0, "7d": 1.0, "28d": 0.6}
    rows = []
    for s, subject in enumerate(subjects):
        for timepoint in OPEN_LABEL_TIMEPOINTS:
            severity = np.clip(severity0[s] - kept[timepoint] * drop[s], 0.02, 0.98)
            answers = np.clip(np.round(item_max * (severity + mood_rng.normal(0, 0.16, madrs.n_items))), 0, item_max)
            rows.append([subject, timepoint, *answers.astype(int)])
    pd.DataFrame(rows, columns=["participant_id", "timepoint", *madrs.item_columns]).to_csv(
        tmp / "phenotype" / "madrs.tsv", sep="\t", index=False, lineterminator="\n"
    )
    (tmp / "phenotype" / "madrs.json").write_text(
        json.dumps(
            {
                "participant_id": {"Description": "Pseudonymous participant identifier"},
                "timepoint": {
                    "Description": "Assessment relative to the first infusion",
                    "Levels": {t: t for t in OPEN_LABEL_TIMEPOINTS},
                },
                "ResponseScale": {"min": 0, "max": 6},
            },
            indent=2,
        )
        + "\n"
    )

    # Cytokines per session and draw, without a unit column.
    blood = _rng(seed, "cytokines")
    centre = {"IL6": np.log(2.5), "TNFA": np.log(2.0), "CRP": np.log(2.5)}
    rows = []
    for subject in subjects:
        level = {a: blood.normal(centre[a], 0.4) for a in OPEN_LABEL_UNITS}
        for session in sessions:
            for timepoint in ("baseline", "24h"):
                for analyte in OPEN_LABEL_UNITS:
                    shift = il6_ln_change if (analyte == "IL6" and timepoint == "24h") else 0.0
                    value = float(np.exp(level[analyte] + shift + blood.normal(0, 0.15)))
                    rows.append([subject, session, timepoint, analyte, f"{value:.2f}"])
    pd.DataFrame(rows, columns=["participant_id", "session_id", "timepoint", "analyte", "value"]).to_csv(
        tmp / "phenotype" / "cytokines.tsv", sep="\t", index=False, lineterminator="\n"
    )
    (tmp / "phenotype" / "cytokines.json").write_text(
        json.dumps(
            {
                "participant_id": {"Description": "Pseudonymous participant identifier"},
                "session_id": {"Description": "Infusion visit"},
                "timepoint": {
                    "Description": "Blood draw",
                    "Levels": {"baseline": "before the infusion", "24h": "24 hours after"},
                },
                "analyte": {
                    "Description": "Analyte",
                    "Levels": {
                        "IL6": "interleukin-6",
                        "TNFA": "tumour necrosis factor alpha",
                        "CRP": "C-reactive protein",
                    },
                },
                "value": {"Description": "Concentration (units declared in the study manifest, not in this file)"},
            },
            indent=2,
        )
        + "\n"
    )

    (tmp / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "Synthetic open-label ketamine study (ketamine-workbench)",
                "BIDSVersion": "1.10.0",
                "DatasetType": "raw",
                "License": "CC0",
                "Authors": ["ketamine-workbench generator"],
            },
            indent=2,
        )
        + "\n"
    )
    (tmp / "README").write_text(
        "Synthetic single-arm open-label study: two infusions, 11D-ASC per session, MADRS "
        "per participant, cytokines per session (ketamine-workbench).\n"
    )
    mean_intensity = intensity.mean(axis=1)
    realised = float(np.corrcoef(mean_intensity, drop)[0, 1])
    _write_truth(
        tmp,
        {
            "design": "open_label",
            "seed": seed,
            "timepoints": list(OPEN_LABEL_TIMEPOINTS),
            "dose_mg_per_kg": OPEN_LABEL_DOSE,
            "units": OPEN_LABEL_UNITS,
            "experience_effect": experience_effect,
            "il6_ln_change_24h": il6_ln_change,
            "mean_experience_vs_improvement_r_realised": realised,
            "expected_madrs_change_24h": float(-np.mean(drop) * item_max.sum()),
        },
        ["phenotype/cytokines.*", "phenotype/asc11d.*", "phenotype/madrs.*"],
    )
    swap_into_place(tmp, bids_root)
    return bids_root
