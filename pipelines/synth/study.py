"""Generate the embedded default study: a real BIDS dataset (written by mne-bids), phenotype tables and truth.json.

Deterministic from one seed: every recording and table draws from its own child of one
``numpy.random.SeedSequence``, so the same seed and the same pinned libraries give the same bytes.
The dataset is written to a temporary folder beside the target and renamed into place only when
complete, so an interrupted run never leaves a half-written study behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.synth.eeg import (
    BAND_EFFECTS,
    BAND_EFFECTS_CAVEAT,
    DEFAULT_TITRATION_THRESHOLD_DB,
    ONSET_THRESHOLDS_DB,
    DrugModel,
    RecordingPlan,
    channel_names,
    draw_subject,
    head_montage,
    head_positions_m,
    quantise_volts,
    simulate_recording,
)

TASK = "rest"
LINE_FREQ_HZ = 50.0


@dataclass(frozen=True)
class StudyDesign:
    """Size and layout of a synthetic study (the manifest's ``generator`` section)."""

    seed: int = 20261127
    n_subjects: int = 12
    minutes: float = 8.0
    n_channels: int = 20
    sfreq: float = 250.0
    doses_mg_per_kg: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    line_freq: float = LINE_FREQ_HZ
    bad_channel_fraction: float = 0.25  # share of recordings with one flat or noisy channel
    drug: DrugModel = field(default_factory=DrugModel)

    @property
    def infusion_start_s(self) -> float:
        return round(0.25 * self.minutes * 60.0, 3)

    @property
    def infusion_end_s(self) -> float:
        return round(0.75 * self.minutes * 60.0, 3)


def session_label(dose_mg_per_kg: float) -> str:
    """BIDS session label for a dose: 'placebo', or 'ket' + dose in hundredths of mg/kg ('ket025')."""
    if dose_mg_per_kg == 0:
        return "placebo"
    return f"ket{int(round(dose_mg_per_kg * 100)):03d}"


def generate_study(bids_root: Path, design: StudyDesign = StudyDesign(), progress: bool = True) -> Path:
    """Write the whole study to ``bids_root`` (replacing it only once the new one is complete)."""
    import mne
    from mne_bids import BIDSPath, write_raw_bids
    from tqdm.auto import tqdm

    from pipelines.synth.phenotype import generate_phenotype, write_phenotype

    bids_root = Path(bids_root)
    tmp_root = bids_root.with_name(bids_root.name + f".tmp-{os.getpid()}")
    if tmp_root.exists():
        shutil.rmtree(tmp_root)
    tmp_root.mkdir(parents=True)

    seeds = np.random.SeedSequence(design.seed)
    # A fourth child for the session order: SeedSequence children are indexed, so the first three are
    # the same streams as before it was added.
    design_stream, eeg_stream, phenotype_stream, order_stream = seeds.spawn(4)
    design_rng = np.random.default_rng(design_stream)

    subjects = [f"{i + 1:02d}" for i in range(design.n_subjects)]
    participants = pd.DataFrame(
        {
            "participant_id": [f"sub-{s}" for s in subjects],
            "age": design_rng.integers(24, 62, size=len(subjects)),
            "sex": design_rng.choice(["F", "M"], size=len(subjects)),
        }
    )
    traits = pd.DataFrame(
        {
            "participant_id": participants["participant_id"],
            "ketamine_sensitivity": design_rng.standard_normal(len(subjects)),
        }
    )
    sequences, assigned = session_orders(
        len(subjects), len(design.doses_mg_per_kg), np.random.default_rng(order_stream)
    )
    sessions = pd.DataFrame(
        [
            {
                "participant_id": f"sub-{s}",
                "session_id": f"ses-{session_label(d)}",
                "dose_mg_per_kg": d,
                "session_order": int(sequences[assigned[i]].index(j)) + 1,
            }
            for i, s in enumerate(subjects)
            for j, d in enumerate(design.doses_mg_per_kg)
        ]
    )

    ch_names = channel_names(design.n_channels)
    montage = head_montage(ch_names)
    positions = head_positions_m()

    recording_seeds = eeg_stream.spawn(len(sessions))
    subject_rngs = {s: np.random.default_rng(ss) for s, ss in zip(subjects, eeg_stream.spawn(len(subjects)))}
    subject_eeg = {
        s: draw_subject(subject_rngs[s], float(traits.loc[i, "ketamine_sensitivity"])) for i, s in enumerate(subjects)
    }

    truth: dict = {
        "seed": design.seed,
        "design": {k: v for k, v in asdict(design).items() if k != "drug"},
        "infusion_start_s": design.infusion_start_s,
        "infusion_end_s": design.infusion_end_s,
        "drug_model": asdict(design.drug),
        "eeg": {
            # the threshold of occipital_alpha_onset_s; the other thresholds: *_by_threshold_db
            "alpha_suppression_threshold_db": DEFAULT_TITRATION_THRESHOLD_DB,
            "onset_thresholds_db": list(ONSET_THRESHOLDS_DB),
            "band_effects": BAND_EFFECTS,
            "band_effects_caveat": BAND_EFFECTS_CAVEAT,
            "expected_entropy_peak_dose_mg_per_kg": _entropy_peak_dose(design),
            "alpha_suppression_increases_with_dose": True,
            "gamma_increases_with_dose": True,
            "recordings": {},
        },
    }

    # Sessions are 14 days apart in each subject's order (plus a few days' scheduling jitter). Dates are
    # anonymised the way mne-bids does it: shifted far into the past, keeping session order.
    base_date = datetime(2020, 1, 6, 9, 0, tzinfo=UTC)
    session_dates = [
        base_date + pd.Timedelta(days=14 * (int(order) - 1) + k % 7).to_pytimedelta()
        for k, order in enumerate(sessions["session_order"])
    ]
    sessions["acq_time"] = [
        (d - pd.Timedelta(days=ANONYMISE_DAYSBACK).to_pytimedelta()).strftime(ACQ_TIME_FORMAT) for d in session_dates
    ]
    dose_names = [session_label(d) for d in design.doses_mg_per_kg]
    rows = list(sessions.itertuples(index=False))
    import sys

    # Redrawn on a terminal; a line every 10 s in logs (make, CI), not one per recording.
    bar = tqdm(
        rows,
        desc="Generating EEG",
        unit="recording",
        disable=not progress,
        mininterval=0.1 if sys.stderr.isatty() else 10.0,
    )
    for rec_index, row in enumerate(bar):
        rng = np.random.default_rng(recording_seeds[rec_index])
        subject = row.participant_id.removeprefix("sub-")
        session = row.session_id.removeprefix("ses-")
        bad = {}
        if rng.random() < design.bad_channel_fraction:
            bad[ch_names[int(rng.integers(len(ch_names)))]] = str(rng.choice(["flat", "noisy"]))
        plan = RecordingPlan(
            subject=subject,
            session=session,
            dose_mg_per_kg=float(row.dose_mg_per_kg),
            duration_s=design.minutes * 60.0,
            infusion_start_s=design.infusion_start_s,
            infusion_end_s=design.infusion_end_s,
            sfreq=design.sfreq,
            ch_names=ch_names,
            bad_channels=bad,
            n_blinks=int(rng.poisson(design.minutes * 3)),
        )
        data, rec_truth = simulate_recording(rng, plan, subject_eeg[subject], design.drug, positions, design.line_freq)
        info = mne.create_info(ch_names, design.sfreq, ch_types="eeg")
        info["line_freq"] = design.line_freq
        raw = mne.io.RawArray(quantise_volts(data), info, verbose="error")
        raw.set_montage(montage, verbose="error")
        raw.set_meas_date(session_dates[rec_index])
        raw.set_annotations(
            mne.Annotations(
                onset=[0.0, design.infusion_start_s, design.infusion_end_s],
                duration=[0.0, 0.0, 0.0],
                description=["baseline_start", "infusion_start", "infusion_end"],
            )
        )
        bids_path = BIDSPath(subject=subject, session=session, task=TASK, datatype="eeg", root=tmp_root)
        write_raw_bids(
            raw,
            bids_path,
            format="BrainVision",
            allow_preload=True,
            anonymize={"daysback": ANONYMISE_DAYSBACK, "keep_his": False},
            overwrite=True,
            verbose="error",
        )
        truth["eeg"]["recordings"][f"sub-{subject}_ses-{session}"] = rec_truth

    tables, sidecars, phenotype_truth = generate_phenotype(
        participants, sessions, seed=int(phenotype_stream.generate_state(1)[0]), subject_traits=traits
    )
    write_phenotype(tmp_root, tables, sidecars)
    truth.update(phenotype_truth)
    truth["crossover"] = {
        "design": f"Williams design for {len(dose_names)} doses: each dose once per period, each ordered pair of "
        "successive doses equally often; sequences assigned to subjects in a shuffled balanced order",
        "sequences": ["/".join(dose_names[t] for t in seq) for seq in sequences],
        "subject_sequence": {
            f"sub-{s}": "/".join(dose_names[t] for t in sequences[assigned[i]]) for i, s in enumerate(subjects)
        },
        "session_order_column": "session_order",
        "session_spacing_days": 14,
    }
    truth["subject_traits"] = {
        pid: round(float(v), 6) for pid, v in zip(traits["participant_id"], traits["ketamine_sensitivity"])
    }

    _write_tables(tmp_root, participants, sessions)
    (tmp_root / "truth.json").write_text(json.dumps(round_floats(truth), indent=2, sort_keys=True) + "\n")
    (tmp_root / ".bidsignore").write_text(BIDSIGNORE)
    _fix_dataset_description(tmp_root)

    swap_into_place(tmp_root, bids_root)
    return bids_root


ANONYMISE_DAYSBACK = 40000
ACQ_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # as mne-bids writes acq_time in scans.tsv


def session_orders(
    n_subjects: int, n_doses: int, rng: np.random.Generator
) -> tuple[tuple[tuple[int, ...], ...], np.ndarray]:
    """Williams sequences (dose indices in period order) and each subject's sequence index: the sequences
    repeated to the number of subjects (balanced) and shuffled."""
    from pipelines.stats.crossover import williams_sequences

    sequences = williams_sequences(n_doses)
    assigned = np.resize(np.arange(len(sequences)), n_subjects)
    rng.shuffle(assigned)
    return sequences, assigned


def swap_into_place(tmp: Path, target: Path) -> None:
    """Replace ``target`` by the complete ``tmp`` folder with two renames, so no reader sees a half-written study."""
    if target.exists():
        old = target.with_name(target.name + f".old-{os.getpid()}")
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old)
    else:
        tmp.rename(target)


# The official validator (bids-validator-deno, BIDS 1.10 schema) indexes phenotype files by participant_id
# alone, so tables with one row per participant × session (× time point) fail it with
# TSV_INDEX_VALUE_NOT_UNIQUE.  They are declared outside BIDS here rather than reshaped into one row per
# participant; everything else must validate with zero errors (tests/synth/test_bids_validation.py).
BIDSIGNORE = """truth.json
# Repeated-measures phenotype tables (one row per participant x session [x time point]): see docs/data_formats.md
phenotype/meq30.*
phenotype/asc5d.*
phenotype/madrs.*
phenotype/cytokines.*
phenotype/therapy.*
"""

TRUTH_SIGNIFICANT_DIGITS = 8


def round_floats(value, digits: int = TRUTH_SIGNIFICANT_DIGITS):
    """Every float in a JSON-like structure rounded to ``digits`` significant digits.

    Values computed through exp/log differ in their last bits between SIMD code paths; 8 significant
    digits are identical on every machine (except on a rounding boundary, ~1e-8 per value) and far finer
    than any planted effect. Zero is written without a sign."""
    if isinstance(value, float):
        # + 0.0 turns -0.0 into 0.0: a placebo curve's minimum is 0 up to the last bit, whose sign varies by kernel
        return float(f"{value:.{digits}g}") + 0.0 if np.isfinite(value) else value
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_floats(v, digits) for v in value]
    return value


def _entropy_peak_dose(design: StudyDesign) -> float:
    """The planted inverted U: entropy rises with E1 and falls once the slow-wave surge (E2) sets in.

    The middle-high dose is where E1 is large while E2 is still small; we record the dose whose peak
    concentration gives the largest E1 - 2*E2 (the generator's entropy drive)."""
    k = np.log(2.0) / design.drug.half_life_s
    c_end = 1.0 - np.exp(-k * (design.infusion_end_s - design.infusion_start_s))
    best, best_score = None, -np.inf
    for dose in design.doses_mg_per_kg:
        conc = np.array([dose * c_end])
        score = float(design.drug.effect_1(conc, 1.0)[0] - 2.0 * design.drug.effect_2(conc)[0])
        if score > best_score:
            best, best_score = dose, score
    return float(best)


def _write_tables(root: Path, participants: pd.DataFrame, sessions: pd.DataFrame) -> None:
    participants.to_csv(root / "participants.tsv", sep="\t", index=False, lineterminator="\n")
    (root / "participants.json").write_text(
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
    for pid, group in sessions.groupby("participant_id", sort=True):
        path = root / pid / f"{pid}_sessions.tsv"
        group[["session_id", "dose_mg_per_kg", "session_order", "acq_time"]].to_csv(
            path, sep="\t", index=False, lineterminator="\n", float_format="%.2f"
        )
        (root / pid / f"{pid}_sessions.json").write_text(json.dumps(SESSIONS_SIDECAR, indent=2) + "\n")


SESSIONS_SIDECAR = {
    "dose_mg_per_kg": {"Description": "Ketamine dose of the session's infusion", "Units": "mg/kg"},
    "session_order": {
        "Description": "Position of the session in the participant's crossover schedule (period): "
        "1 = first session. Sequences follow a Williams design balanced for period "
        "and first-order carry-over."
    },
    "acq_time": {
        "Description": "Date and time of the session (anonymised: shifted into the past like the "
        "recordings' acq_time in scans.tsv, keeping the order and spacing of sessions)."
    },
}


def _fix_dataset_description(root: Path) -> None:
    path = root / "dataset_description.json"
    desc = json.loads(path.read_text())
    desc["Name"] = "Synthetic ketamine dose study (ketamine-workbench default study)"
    desc["DatasetType"] = "raw"
    desc["License"] = "CC0"
    desc["Authors"] = ["ketamine-workbench generator"]
    path.write_text(json.dumps(desc, indent=2, sort_keys=True) + "\n")
