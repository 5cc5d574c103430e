"""Study manifests: a typed schema, validated before anything runs, and checksum verification.

A manifest (``data_manifests/<study>.yml``) says where a study's BIDS data are, how recordings map to
doses, which phenotype tables exist, the parameters of each pipeline step and notebook, and the sha256
of every data file.  ``load_manifest`` rejects unknown or misspelt fields with a "did you mean" hint;
``verify`` reports every mismatched, missing or extra file.

Command line::

    python -m pipelines.study.manifest validate data_manifests/default.yml
    python -m pipelines.study.manifest verify   data_manifests/default.yml
    python -m pipelines.study.manifest freeze   data_manifests/default.yml   # rewrite the checksums block
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import json
import math
import os
import re
import sys
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.core.errors import did_you_mean
from pipelines.core.measures import MEASURES

CHECKSUMS_KEY = "checksums"


class ManifestError(ValueError):
    """A manifest that cannot be used: the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneratorConfig(_Strict):
    """Present only for synthetic studies: how ``pipelines.synth`` regenerates the data bit for bit."""

    design: Literal["crossover", "two_condition_edf", "mood_parallel", "open_label"] = Field(
        "crossover", description="Which synthetic design (pipelines.synth.designs); the other fields apply to crossover"
    )
    seed: int = Field(20261127, description="Seed of the whole study")
    n_subjects: int = Field(12, ge=1, le=1000)
    minutes: float = Field(8.0, gt=0, description="Recording length per session")
    n_channels: int = Field(20, ge=1, le=82)
    sfreq: float = Field(250.0, gt=0)
    doses_mg_per_kg: list[float] = Field([0.0, 0.25, 0.5, 1.0], min_length=1)


class ConditionMapping(_Strict):
    """How a recording's condition maps to a dose.

    ``source: sessions_tsv`` reads ``dose_column`` from each subject's ``sub-XX_sessions.tsv``;
    ``source: labels`` maps the value of a BIDS entity (session, task, acquisition or run) through ``labels``.
    """

    source: Literal["sessions_tsv", "labels"] = "sessions_tsv"
    entity: Literal["session", "task", "acquisition", "run"] = "session"
    dose_column: str = "dose_mg_per_kg"
    labels: dict[str, float | None] = Field(
        default_factory=dict,
        description="entity label -> dose in mg/kg (null: a condition without a dose, e.g. eyes closed)",
    )

    @model_validator(mode="after")
    def _labels_needed(self):
        if self.source == "labels" and not self.labels:
            raise ValueError("source 'labels' needs a non-empty 'labels' mapping (entity label -> dose_mg_per_kg)")
        return self


class PreprocessingConfig(_Strict):
    """Per-recording preprocessing; every value is stored with the derived features."""

    l_freq: float = Field(1.0, gt=0, description="High-pass edge (Hz)")
    h_freq: float = Field(45.0, gt=0, description="Low-pass edge (Hz), capped below Nyquist")
    notch: bool = Field(True, description="Notch at the recording's line frequency and harmonics below h_freq")
    line_freq: float | None = Field(None, description="Used when the recording does not state its line frequency")
    reference: Literal["average", "none"] = "average"
    flat_sd_uv: float = Field(1.0, ge=0, description="A channel with SD below this (µV) is flat")
    noisy_robust_z: float = Field(5.0, gt=0, description="Robust z of log channel SD above which a channel is noisy")
    noisy_min_sd_ratio: float = Field(
        3.0,
        ge=1,
        description="A noisy channel's SD is also at least this many times the median channel SD "
        "(strong occipital alpha alone must not make O1/O2 'noisy')",
    )
    interpolate_bads: bool = Field(True, description="Spherical-spline interpolation where positions exist; else drop")
    reject_ptp_uv: float | None = Field(
        None,
        gt=0,
        description="Optional absolute cap: a window whose peak-to-peak exceeds this (µV) in any channel is "
        "rejected. Off by default: a fixed cap rejects whole eyes-closed recordings (strong alpha) and biases condition "
        "contrasts",
    )
    reject_robust_z: float | None = Field(
        5.0,
        gt=0,
        description="A window is rejected when, in any channel, its log peak-to-peak lies more than this many "
        "robust SDs (1.4826 x MAD) above that channel's median over the recording: adapts to each recording and channel",
    )
    max_rejected_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A recording losing more than this share of its windows is flagged loudly; losing "
        "all of them is an error for that recording",
    )
    max_median_sd_uv: float = Field(500.0, gt=0, description="Median channel SD above this (µV) is implausible: stop")
    min_median_sd_uv: float = Field(0.05, ge=0, description="Median channel SD below this (µV) is implausible: stop")
    resample_sfreq: float | None = Field(None, gt=0, description="Optional resampling before features")


class SurrogateConfig(_Strict):
    """Surrogate-normalised variants of per-channel measures (pipelines.eeg.kernels.make_surrogates): for each
    listed measure ``m`` the features gain ``m_surr_ratio`` (value / mean over ``n`` surrogates of the window)
    and ``m_surr_z`` (z against them). Phase-randomised surrogates keep each window's periodogram, so spectral
    change alone (alpha suppression) leaves the ratio near 1. An empty list turns them off."""

    method: Literal["phase", "iaaft"] = Field(
        "phase",
        description="phase randomisation (default) or IAAFT (also keeps the amplitude distribution; ~10x slower)",
    )
    n: int = Field(10, ge=2, description="Surrogates per channel and window")
    seed: int = Field(0, ge=0, description="Surrogate k of channel c, window w is seeded from (seed, c, w, k)")
    measures: list[str] = Field(
        default_factory=lambda: ["lzc_median"],
        description="Per-channel measures to normalise (must also be in measures)",
    )
    iaaft_iterations: int = Field(20, ge=1, description="IAAFT rounds (method iaaft only)")

    @field_validator("measures")
    @classmethod
    def _per_channel(cls, value: list[str]) -> list[str]:
        from pipelines.core.measures import PER_CHANNEL_MEASURES

        known = list(PER_CHANNEL_MEASURES)
        for name in value:
            if name not in known:
                raise ValueError(
                    f"surrogates need a per-channel measure, not {name!r}"
                    + did_you_mean(name, known)
                    + f"; known: {known}"
                )
        return value


class FeatureConfig(_Strict):
    """Sliding-window measures over the whole session; window times are relative to infusion start.

    Measure names are those of ``pipelines.core.measures.MEASURES`` (computed, and each definition
    documented with its reference, in pipelines.eeg.kernels); spectral markers (band powers, occipital
    alpha relative to baseline, frontal alpha
    asymmetry, individual alpha frequency, aperiodic exponent) are always computed."""

    window_s: float = Field(2.0, gt=0)
    step_s: float = Field(2.0, gt=0)
    measures: list[str] = Field(default_factory=lambda: list(MEASURES), description="Default: every measure")
    perm_entropy_order: int = Field(3, ge=2)
    perm_entropy_delay: int = Field(1, ge=1)
    sample_entropy_order: int = Field(2, ge=1)
    sample_entropy_r: float = Field(0.2, gt=0, description="Tolerance as a fraction of the window SD (ddof=0)")
    svd_entropy_order: int = Field(3, ge=2)
    higuchi_kmax: int = Field(10, ge=2)
    lz_shuffle_seed: int = Field(0, description="Seed of the shuffled copies that normalise the Schartner LZ measures")
    lzw_n_shuffles: int = Field(
        5,
        ge=1,
        description="Shuffled copies whose mean dictionary size normalises the "
        "published-convention (LZW) Schartner measures; the LZ76 variants use one",
    )
    bands: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "delta": (1.0, 4.0),
            "theta": (4.0, 8.0),
            "alpha": (8.0, 13.0),
            "beta": (13.0, 30.0),
            "gamma": (30.0, 45.0),
        }
    )
    welch_segment_s: float = Field(
        1.0, gt=0, description="Welch segment length inside each window (Hann, 50 % overlap)"
    )
    spectral_entropy_band_hz: tuple[float, float] | None = Field(
        None,
        description="Band over which spectral_entropy_welch is normalised; None = the preprocessing pass band "
        "actually applied (segments of welch_segment_s), so the value does not depend on the sampling rate",
    )
    alpha_peak_range_hz: tuple[float, float] = Field(
        (7.0, 14.0), description="Search range of the individual alpha peak"
    )
    aperiodic_freq_range: tuple[float, float] = Field((2.0, 40.0), description="specparam fit range (Hz), 'fixed' mode")
    aperiodic_block_s: float = Field(
        30.0,
        gt=0,
        description="specparam is fitted on the mean spectrum of consecutive "
        "blocks of this length (per-window fits are too noisy and too slow)",
    )
    whole_recording_lz: bool = Field(True, description="Also compute LZ on the whole continuous recording")
    n_threads: int = Field(1, ge=1, description="Threads per recording (kernels release the GIL)")
    surrogates: SurrogateConfig = Field(
        default_factory=SurrogateConfig, description="Surrogate-normalised variants of entropy measures (issue 12)"
    )

    @model_validator(mode="after")
    def _surrogate_measures_computed(self):
        # The default list applies to those of its measures that are computed; a list given explicitly must
        # name computed measures.
        missing = [m for m in self.surrogates.measures if m not in self.measures]
        if missing and "measures" in self.surrogates.model_fields_set:
            raise ValueError(f"surrogates.measures {missing} are not in measures; add them there or remove them here")
        return self

    @field_validator("measures")
    @classmethod
    def _known_measures(cls, value: list[str]) -> list[str]:
        known = list(MEASURES)
        for name in value:
            if name not in known:
                raise ValueError(f"unknown measure {name!r}" + did_you_mean(name, known) + f"; known: {known}")
        return value


def alpha_threshold_db(value) -> float:
    """A titration threshold in dB of occipital alpha power relative to baseline, from dB or percent.

    ``-10``, ``"-10 dB"`` and ``"10%"`` (10 % of baseline power) are the same threshold: dB = 10 log10(% / 100).
    Percent is of *power*, as clinicians read a spectrum (10 % of power is 32 % of amplitude)."""
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent < 100:
                raise ValueError(
                    f"a suppression threshold in percent of baseline power must be in (0, 100), got {value!r}"
                )
            return 10.0 * math.log10(percent / 100.0)
        if text.endswith("db"):
            return float(text[:-2])
        raise ValueError(f"threshold {value!r}: give dB (-10 or '-10 dB') or percent of baseline power ('10%')")
    return float(value)


def alpha_threshold_percent(threshold_db: float) -> float:
    """Percent of baseline occipital alpha power that a dB threshold leaves."""
    return 100.0 * 10.0 ** (threshold_db / 10.0)


def alpha_threshold_label(threshold_db: float) -> str:
    """The threshold in both units, as reports show it: '10 % of baseline alpha power (-10 dB)'."""
    pct = alpha_threshold_percent(threshold_db)
    return f"{pct:.3g} % of baseline alpha power ({threshold_db:g} dB)"


class DynamicsConfig(_Strict):
    """Markers a clinician titrates with, per recording (see pipelines.eeg.dynamics and docs/eeg_measures.md)."""

    alpha_threshold_db: float = Field(
        -10.0,
        lt=0,
        description="Titration target 'occipital alpha nearly disappears': occipital alpha power relative "
        "to the pre-infusion baseline at or below which suppression counts. Give dB (-10) or percent of baseline "
        "power ('10%'); stored in dB, shown in both units (-10 dB = 10 % of baseline power, 32 % of amplitude)",
    )
    hold_s: float = Field(20.0, ge=0, description="Suppression must hold this long to count as onset")
    smooth_windows: int = Field(
        9, ge=1, description="Centred running mean (NaN-aware) over this many windows before thresholds"
    )
    plateau_s: float = Field(
        60.0, gt=0, description="Dose-response uses the mean of the last plateau_s of the infusion"
    )
    entropy_measure: str = Field(
        "lzc_median", description="Entropy measure for peaks and the suppression-entropy relation"
    )
    entropy_plateau_s: float = Field(
        30.0,
        gt=0,
        description="Causal entropy-plateau criterion: the running maximum of "
        "the trailing-mean entropy change has risen by at most entropy_plateau_rel_tol of "
        "its value over the last entropy_plateau_s",
    )
    entropy_plateau_rel_tol: float = Field(0.05, gt=0, lt=1, description="See entropy_plateau_s")
    entropy_min_rise_sd: float = Field(
        8.0,
        gt=0,
        description="The entropy change must first exceed this many SDs of its trailing mean over the baseline windows",
    )

    @field_validator("alpha_threshold_db", mode="before")
    @classmethod
    def _threshold_units(cls, value):
        return alpha_threshold_db(value)

    @property
    def alpha_threshold_percent(self) -> float:
        return alpha_threshold_percent(self.alpha_threshold_db)

    @property
    def alpha_threshold_label(self) -> str:
        return alpha_threshold_label(self.alpha_threshold_db)


class ReaderConfig(_Strict):
    """Options passed to MNE's reader of every recording (through mne-bids ``extra_params``)."""

    encoding: str | None = Field(
        None, description="EDF/BDF annotation encoding, e.g. 'latin1' when the annotation channel holds invalid bytes"
    )
    channel_name_pattern: str | None = Field(
        None,
        description="Regular expression with one group that extracts the electrode name from clinical channel "
        "labels, e.g. 'EEG (.+)-(?:REF|LE|A1|A2)' turns 'EEG Fp1-REF' into 'Fp1'; labels that do not match are kept. "
        "Applied before rename_channels, channel_types, montage and ROIs",
    )
    rename_channels: dict[str, str] = Field(
        default_factory=dict,
        description="Channel name -> new name, after channel_name_pattern (e.g. {T3: T7, T4: T8}); a name a "
        "recording lacks is a warning; two channels ending with one name is an error naming the file",
    )
    channel_types: dict[str, Literal["eeg", "eog", "ecg", "emg", "misc", "stim", "resp", "bio"]] = Field(
        default_factory=dict,
        description="Channel name -> type, for files that store every channel as EEG (e.g. "
        "{EOG1: eog, ECG: ecg}); only EEG channels enter the features. A name a recording lacks is a warning",
    )
    montage: str | None = Field(
        None,
        description="MNE built-in montage (e.g. standard_1020) giving positions to "
        "recordings that have none (no electrodes.tsv); needed for interpolation and maps",
    )

    @field_validator("channel_name_pattern")
    @classmethod
    def _one_group(cls, value):
        import re

        if value is None:
            return value
        try:
            groups = re.compile(value).groups
        except re.error as exc:
            raise ValueError(f"channel_name_pattern {value!r} is not a regular expression: {exc}") from exc
        if groups != 1:
            raise ValueError(
                f"channel_name_pattern {value!r} must have exactly one group (the electrode name), it has {groups}; "
                "use (?:...) for the other alternatives"
            )
        return value

    @field_validator("montage")
    @classmethod
    def _known_montage(cls, value):
        if value is None:
            return value
        import mne

        known = mne.channels.get_builtin_montages()
        # MNE 1.13 renamed the template montages standard_* to colin27_* (same positions); both names are taken.
        renamed = {f"standard_{name.removeprefix('colin27_')}": name for name in known if name.startswith("colin27_")}
        value = renamed.get(value, value)
        if value not in known:
            raise ValueError(
                f"unknown montage {value!r}" + did_you_mean(value, [*known, *renamed]) + f"; built-in: {known}"
            )
        return value


class EEGConfig(_Strict):
    task: str | None = Field(None, description="BIDS task label; None = every task")
    reader: ReaderConfig = Field(default_factory=ReaderConfig)
    conditions: ConditionMapping = Field(default_factory=ConditionMapping)
    infusion_start_event: str = "infusion_start"
    infusion_end_event: str = "infusion_end"
    infusion_start_s: float | None = Field(
        None,
        ge=0,
        description="Used for recordings without the start event (s from recording start; e.g. 0 when "
        "every recording begins at infusion start). Without it, a missing event is an error.",
    )
    infusion_end_s: float | None = Field(None, gt=0, description="Used for recordings without the end event")
    rois: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "occipital": ["O1", "Oz", "O2"],
            "frontal_left": ["F3"],
            "frontal_right": ["F4"],
        },
        description="Region -> channel names; the first present channel(s) are used and missing ones reported",
    )
    roi_fallbacks: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "occipital": ["PO3", "POz", "PO4", "PO7", "PO8", "P3", "Pz", "P4"],
            "frontal_left": ["F5", "F1", "AF3", "F7", "FC3"],
            "frontal_right": ["F6", "F2", "AF4", "F8", "FC4"],
        }
    )
    preprocessing: PreprocessingConfig = Field(default_factory=PreprocessingConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    dynamics: DynamicsConfig = Field(default_factory=DynamicsConfig)


class PhenotypeTable(_Strict):
    path: str = Field(description="Relative to bids_root (or absolute)")
    format: Literal["wide", "long"] = "wide"
    response_scale: tuple[float, float] | None = Field(None, description="Declared answer range, e.g. [0, 5]")
    scored: bool = Field(False, description="True when the table holds scale-level scores, not items")
    units: dict[str, str] = Field(
        default_factory=dict,
        description="Unit per analyte (key = analyte name as in the file, or '*' for every analyte) used when the "
        "table has no unit column/sidecar; a unit in the file that disagrees is an error naming file/row/analyte",
    )

    @field_validator("units")
    @classmethod
    def _known_units(cls, value: dict[str, str]) -> dict[str, str]:
        from pipelines.core.units import canonical_unit

        for analyte, unit in value.items():
            if not str(analyte).strip():
                raise ValueError("units: an analyte name (or '*') is empty")
            canonical_unit(unit)  # ValueError lists the known units
        return value


class DesignConfig(_Strict):
    """How the study is laid out.  Everything left out is inferred from the data (Study.design), and each
    report runs the analyses the design supports, saying in one line why any other is not shown."""

    kind: Literal["crossover", "parallel", "open_label", "pre_post"] | None = Field(
        None,
        description="crossover: every participant has every condition; parallel: participants are randomised to "
        "arms; open_label: one active condition, no control; pre_post: drug-free recording(s) and one active "
        "condition within each participant, no control (before/after). None = inferred",
    )
    arm_column: str | None = Field(
        None, description="participants.tsv column holding each participant's arm (parallel trials)"
    )
    session_order_column: str | None = Field(
        None, description="sub-XX_sessions.tsv column with each session's order (period) in a crossover"
    )
    therapy_timing_randomised: bool = Field(
        False,
        description="True when the timing of integration therapy (inside or after the plasticity window) was "
        "randomised; otherwise report 06 reads its estimate as an association (confounding by indication)",
    )


class Exclusion(_Strict):
    """Recordings left out of every analysis, with the reason every report shows.

    ``recording`` is a participant (``sub-03``), a session (``sub-03_ses-ket050``) or a full recording key
    (``sub-03_ses-ket050_task-rest``): every recording whose key is it, or starts with it followed by ``_``."""

    recording: str = Field(pattern=r"^sub-[A-Za-z0-9]+(_[a-z]+-[A-Za-z0-9]+)*$")
    reason: str = Field(min_length=3, description="Why, in one line (shown in every report)")


_DURATION = r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$"  # [D-]HH:MM:SS, as SLURM and PBS write wall times


class ClusterConfig(_Strict):
    """Where the EEG features are computed (pipelines.core.cluster): this machine, a running Dask scheduler, or a
    SLURM/PBS cluster through dask-jobqueue.  Not part of any cache key: it changes where, never what."""

    kind: Literal["local", "scheduler", "slurm", "pbs"] = Field(
        "local",
        description="local: this machine (threads); scheduler: a running Dask scheduler at `address`; "
        "slurm / pbs: worker jobs submitted by dask-jobqueue",
    )
    address: str | None = Field(
        None,
        pattern=r"^(tcp|tls|inproc|ucx)://\S+$",
        description="Scheduler address for kind 'scheduler', e.g. tcp://10.0.0.5:8786",
    )
    queue: str | None = Field(None, description="Partition (SLURM) or queue (PBS)")
    account: str | None = Field(None, description="Account / project charged for the jobs")
    cores: int = Field(1, ge=1, description="Cores per job; one recording per core (a worker thread each)")
    memory: str = Field("4GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$", description="Memory per job, e.g. 4GB")
    walltime: str = Field("01:00:00", pattern=_DURATION, description="Wall time of each job, [D-]HH:MM:SS")
    max_jobs: int = Field(10, ge=1, description="At most this many jobs at once (adaptive scaling)")
    min_jobs: int = Field(0, ge=0, description="At least this many jobs while the study runs")
    lifetime_margin_min: float = Field(
        10.0,
        gt=0,
        description="Workers retire this many minutes before the wall time, so the batch system never "
        "kills one mid-recording; make it longer than one recording takes",
    )
    lifetime_stagger_min: float = Field(
        2.0, ge=0, description="Spread of the retirement times (± minutes), so workers do not all leave at once"
    )
    numba_cache_dir: str | None = Field(
        None,
        description="NUMBA_CACHE_DIR of every worker, on a filesystem every node sees, so the kernels "
        "compile once; default <repository>/build/numba-cache",
    )
    local_directory: str | None = Field(None, description="Worker scratch space (node-local disk), e.g. $TMPDIR")
    log_directory: str | None = Field(None, description="Where the batch system writes each job's output")
    interface: str | None = Field(
        None, description="Network interface the scheduler and workers use (e.g. ib0); default: the host name's address"
    )
    job_extra_directives: list[str] = Field(
        default_factory=list, description="Extra #SBATCH / #PBS lines, e.g. ['--qos=short']"
    )
    job_script_prologue: list[str] = Field(
        default_factory=list, description="Shell lines run before each worker, e.g. 'module load ...'"
    )
    dashboard: bool = Field(
        False,
        description="Serve the scheduler's Dask dashboard on 127.0.0.1:8787 only "
        "(reach it through an SSH tunnel); workers never serve one",
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.kind == "scheduler" and not self.address:
            raise ValueError("kind 'scheduler' needs an address (e.g. tcp://10.0.0.5:8786)")
        if self.min_jobs > self.max_jobs:
            raise ValueError(f"min_jobs ({self.min_jobs}) exceeds max_jobs ({self.max_jobs})")
        if self.kind in ("slurm", "pbs"):
            from pipelines.core.cluster import walltime_s

            if (self.lifetime_margin_min + 2 * self.lifetime_stagger_min) * 60 >= walltime_s(self.walltime):
                raise ValueError(
                    f"walltime {self.walltime} is not longer than lifetime_margin_min + 2 x "
                    "lifetime_stagger_min: workers would retire before they start"
                )
        return self


class Manifest(_Strict):
    study: str = Field(description="Short name; outputs go to build/<study> and reports/<study>")
    description: str = ""
    bids_root: str = Field(description="BIDS root, relative to this manifest file or absolute")
    truth: str | None = Field(None, description="Ground-truth file of a synthetic study (relative to bids_root)")
    generator: GeneratorConfig | None = None
    design: DesignConfig = Field(default_factory=DesignConfig)
    eeg: EEGConfig = Field(default_factory=EEGConfig)
    phenotype: dict[str, PhenotypeTable] = Field(default_factory=dict)
    timepoints: list[str] = Field(default_factory=lambda: ["baseline", "4h", "24h", "7d", "14d"])
    exclude: list[Exclusion] = Field(default_factory=list, description="Recordings left out, each with its reason")
    cluster: ClusterConfig = Field(default_factory=ClusterConfig, description="Where the EEG features run")
    notebooks: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Notebook name -> parameters")
    verify_exclude: list[str] = Field(default_factory=lambda: ["derivatives/*", ".git/*", "*.tmp-*"])
    checksums: dict[str, str] = Field(default_factory=dict, description="Path relative to bids_root -> sha256")

    # Set by load_manifest (not part of the file).
    manifest_path: Path | None = Field(None, exclude=True)

    @field_validator("study")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError("must be a short name of letters, digits, '-', '_' or '.' (it names output folders)")
        return value

    @field_validator("phenotype")
    @classmethod
    def _known_tables(cls, value: dict) -> dict:
        # A misspelt key ("meq3O") would pass here and fail much later as a bare KeyError.
        from pipelines.phenotype.questionnaires import SCALES

        known = [*SCALES, "cytokines", "therapy"]
        for name in value:
            if name not in known:
                raise ValueError(f"unknown phenotype table {name!r}" + did_you_mean(name, known) + f"; known: {known}")
        return value

    @field_validator("notebooks")
    @classmethod
    def _known_notebooks(cls, value: dict) -> dict:
        # A misspelt notebook name would silently leave that notebook on its default parameters.
        from pipelines.core.paths import NOTEBOOKS_DIR

        known = sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
        for name in value:
            if known and name not in known:
                raise ValueError(f"no notebook named {name!r}" + did_you_mean(name, known) + f"; notebooks: {known}")
        return value

    @field_validator("checksums")
    @classmethod
    def _hex(cls, value: dict[str, str]) -> dict[str, str]:
        for path, digest in value.items():
            if not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
                raise ValueError(f"checksum of {path!r} is not a sha256 hex digest")
        return value

    @property
    def bids_path(self) -> Path:
        root = Path(os.path.expanduser(self.bids_root))
        if not root.is_absolute() and self.manifest_path is not None:
            root = self.manifest_path.parent / root
        return root.resolve()

    def table_path(self, name: str) -> Path:
        if name not in self.phenotype:
            raise ManifestError(
                f"{self.manifest_path}: no phenotype table {name!r}; the manifest has {sorted(self.phenotype)}"
            )
        path = Path(self.phenotype[name].path)
        return path if path.is_absolute() else self.bids_path / path

    @property
    def truth_path(self) -> Path | None:
        return None if self.truth is None else self.bids_path / self.truth

    def notebook_params(self, name: str) -> dict[str, Any]:
        return dict(self.notebooks.get(name, {}))

    def data_checksum(self) -> str:
        """One sha256 over the manifest's checksum list: identifies the data a report was made from."""
        digest = hashlib.sha256()
        for path in sorted(self.checksums):
            digest.update(f"{path}\t{self.checksums[path]}\n".encode())
        return digest.hexdigest()


def _suggest(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """Walk the schema along an error location to the model whose fields a misspelt key should match."""
    current: Any = model
    for part in loc[:-1]:
        origin = typing.get_origin(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = field.annotation
            continue
        if origin is dict:
            current = typing.get_args(current)[1]
            continue
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            models = [a for a in typing.get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)]
            if not models:
                return []
            current = models[0]
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = field.annotation
            continue
        return []
    for candidate in typing.get_args(current) or (current,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            names = [n for n in candidate.model_fields if n != "manifest_path"]
            return difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    return []


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: the manifest is not valid ({err.error_count()} problem(s)):"]
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            hint = _suggest(Manifest, loc)
            msg = f"unknown field {loc[-1]!r}" + (f" — did you mean {hint[0]!r}?" if hint else "")
        elif e["type"] == "missing":
            msg = "required field is missing"
        else:
            msg = e["msg"]
        lines.append(f"  - {where}: {msg}")
    return "\n".join(lines)


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest; raise ManifestError naming the file and every bad field."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ManifestError(f"{path}: manifest file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: a manifest is a YAML mapping of fields, got {type(raw).__name__}")
    raw.setdefault(CHECKSUMS_KEY, {})
    if raw[CHECKSUMS_KEY] is None:
        raw[CHECKSUMS_KEY] = {}
    try:
        manifest = Manifest.model_validate({**raw, "manifest_path": path})
    except ValidationError as err:
        raise ManifestError(_format_errors(path, err)) from None
    return manifest


# --- checksums -----------------------------------------------------------------------------------


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def data_files(manifest: Manifest) -> list[str]:
    """Every file under the BIDS root (relative, POSIX), minus ``verify_exclude`` patterns."""
    root = manifest.bids_path
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if not any(fnmatch.fnmatch(rel, pat) for pat in manifest.verify_exclude):
                files.append(rel)
    return files


def compute_checksums(manifest: Manifest) -> dict[str, str]:
    return {rel: sha256_file(manifest.bids_path / rel) for rel in data_files(manifest)}


class VerifyReport(typing.NamedTuple):
    mismatched: list[str]
    missing: list[str]
    extra: list[str]

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.extra)

    def describe(self, manifest: Manifest) -> str:
        if not manifest.bids_path.is_dir():
            return (
                f"{manifest.manifest_path}: bids_root {manifest.bids_root!r} resolves to {manifest.bids_path}, "
                "which does not exist: check bids_root (it is relative to the manifest file)"
                + (" — `make all` generates this study." if manifest.generator is not None else ".")
            )
        if self.ok:
            return f"{manifest.manifest_path}: {len(manifest.checksums)} files verified under {manifest.bids_path}"
        lines = [f"{manifest.manifest_path}: the data under {manifest.bids_path} do not match the manifest:"]
        for label, items in (
            ("checksum differs", self.mismatched),
            ("missing", self.missing),
            ("not in the manifest", self.extra),
        ):
            for item in items:
                lines.append(f"  - {label}: {item}")
        lines.append(self.remedy(manifest))
        return "\n".join(lines)

    @staticmethod
    def remedy(manifest: Manifest) -> str:
        """What to do about a mismatch: a generated study is regenerated, a real study is checked."""
        if manifest.generator is not None:
            return (
                "This study is generated by pipelines.synth, and its files must be identical on every machine: "
                f"you did nothing wrong. Regenerate it with `rm -rf {manifest.bids_path}` and `make all` "
                "(make does this once by itself). Do not run `make freeze` for a generated study."
            )
        return (
            "These are your study's raw data: find out why they changed since `make freeze` (a copy or a "
            "conversion gone wrong, files edited by hand). Only if the change is intended, run "
            f"`make freeze STUDY={manifest.manifest_path}` and commit the manifest."
        )


def verify(manifest: Manifest) -> VerifyReport:
    if not manifest.bids_path.is_dir():
        return VerifyReport([], sorted(manifest.checksums) or [str(manifest.bids_path)], [])
    present = set(data_files(manifest))
    expected = set(manifest.checksums)
    mismatched = sorted(p for p in present & expected if sha256_file(manifest.bids_path / p) != manifest.checksums[p])
    return VerifyReport(mismatched, sorted(expected - present), sorted(present - expected))


def freeze(manifest: Manifest) -> Path:
    """Rewrite the manifest's ``checksums:`` block from the data on disk.

    Only that block is rewritten, so the comments, layout and any fields after it survive."""
    path = manifest.manifest_path
    if not manifest.bids_path.is_dir():
        raise ManifestError(
            f"{path}: bids_root {manifest.bids_root!r} resolves to {manifest.bids_path}, which does not "
            "exist; nothing was frozen (check bids_root: it is relative to the manifest file)"
        )
    sums = compute_checksums(manifest)
    if not sums:
        raise ManifestError(
            f"{path}: no data files under {manifest.bids_path} (after verify_exclude); nothing was frozen"
        )
    text = path.read_text()
    # The block is the `checksums:` line and the indented lines under it; fields after it are kept.
    parts = re.split(r"(?m)^checksums:.*\n?", text, maxsplit=1)
    head = parts[0].rstrip("\n")
    tail = re.sub(r"\A(?:[ \t]+.*(?:\n|\Z)|[ \t]*\n)*", "", parts[1]) if len(parts) > 1 else ""
    block = [
        "",
        "# sha256 of every data file, relative to bids_root (written by `make freeze`; do not edit)",
        f"{CHECKSUMS_KEY}:",
    ]
    block += [f"  {json.dumps(rel)}: {digest}" for rel, digest in sums.items()]  # JSON quoting is valid YAML
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    head = head.removesuffix(block[1]).rstrip("\n")
    tmp.write_text(head + "\n" + "\n".join(block) + "\n" + (tail if tail.strip() else ""))
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipelines.study.manifest", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["validate", "verify", "freeze"])
    parser.add_argument("manifest")
    args = parser.parse_args(argv)
    try:
        manifest = load_manifest(args.manifest)
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command == "validate":
        print(f"{manifest.manifest_path}: valid")
        return 0
    if args.command == "freeze":
        before = verify(manifest) if manifest.checksums and manifest.bids_path.is_dir() else None
        try:
            freeze(manifest)
        except ManifestError as exc:
            print(exc, file=sys.stderr)
            return 2
        if before is None:
            print(f"{manifest.manifest_path}: checksums written")
        else:
            print(
                f"{manifest.manifest_path}: checksums rewritten: {len(before.mismatched)} changed, "
                f"{len(before.extra)} added, {len(before.missing)} removed (review with git diff, then commit)"
            )
        return 0
    report = verify(manifest)
    print(report.describe(manifest), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
