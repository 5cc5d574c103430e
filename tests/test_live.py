"""Live titration: the causal online pipeline, its alert on planted onsets, and a real LSL round trip on loopback."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.eeg.live import LiveConfig, OnlineFeatures, TitrationCriterion, offline_causal


def _recording(study, key):
    from pipelines.eeg.io import read_raw

    raw = read_raw(study.recording(key), study.root)
    return raw.get_data(picks="eeg"), raw.info["sfreq"], raw.ch_names


def test_results_do_not_depend_on_chunking(default_study):
    data, sfreq, names = _recording(default_study, "sub-02_ses-ket050_task-rest")
    cfg = LiveConfig.from_manifest(default_study.manifest)
    start = default_study.truth()["infusion_start_s"]
    a = offline_causal(data[:, : int(200 * sfreq)], sfreq, names, cfg, start, chunk=7)
    b = offline_causal(data[:, : int(200 * sfreq)], sfreq, names, cfg, start, chunk=250)
    assert len(a) == len(b) > 50
    np.testing.assert_allclose(a["occipital_alpha_db"], b["occipital_alpha_db"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(a["entropy"], b["entropy"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("subject", ["01", "05", "09"])
def test_alert_follows_the_planted_onset_and_never_fires_on_placebo(default_study, default_truth, subject):
    cfg = LiveConfig.from_manifest(default_study.manifest)
    start = default_truth["infusion_start_s"]
    for session in ("placebo", "ket100"):
        key = f"sub-{subject}_ses-{session}"
        table = offline_causal(*_recording(default_study, key + "_task-rest"), cfg, start)
        planted = default_truth["eeg"]["recordings"][key]["occipital_alpha_onset_s"]
        if session == "placebo":
            assert table.attrs["alert_time_s"] is None
        else:
            # The alert comes after the onset plus the hold, delayed at most by the smoothing and two steps.
            latency = table.attrs["alert_time_s"] - planted
            assert cfg.hold_s - cfg.step_s <= latency <= cfg.hold_s + (cfg.smooth_windows + 2) * cfg.step_s, latency


def test_flat_occipital_channels_never_alert():
    cfg = LiveConfig(hold_s=4.0, smooth_windows=1)
    sfreq, names = 128.0, ["O1", "Oz", "O2", "Cz"]
    online = OnlineFeatures(sfreq, names, cfg, infusion_start_s=10.0)
    criterion = TitrationCriterion(cfg.threshold_db, cfg.hold_s, cfg.smooth_windows)
    rng = np.random.default_rng(0)
    t = np.arange(int(60 * sfreq)) / sfreq
    data = rng.standard_normal((4, len(t))) * 10e-6 + 20e-6 * np.sin(2 * np.pi * 10 * t)
    data[:3, int(20 * sfreq):] = 0.0  # occipital leads come off after 20 s: alpha "vanishes", but it is garbage
    for i in range(0, data.shape[1], 64):
        for result in online.push(data[:, i:i + 64]):
            assert criterion.update(result) is None
    assert {r.status for r in online.results if r.time_s > 12} == {"no-occipital-channel"}


@pytest.mark.slow
def test_lsl_round_trip_on_loopback_raises_the_alert_like_the_offline_computation(tiny_manifest):
    """A real PlayerLSL on 127.0.0.1 and the monitor: the alert arrives, and equals the offline causal result."""
    from pipelines.eeg.io import read_raw
    from pipelines.eeg.live import _lsl_loopback_config, monitor, start_player
    from pipelines.study import Study

    _lsl_loopback_config()
    study = Study.load(tiny_manifest)
    truth = study.truth()
    rec = study.recording("sub-01_ses-ket100_task-rest")
    raw = read_raw(rec, study.root)
    cfg = LiveConfig.from_manifest(study.manifest, hold_s=6.0, smooth_windows=2)
    start = truth["infusion_start_s"]
    crop_from = start - 14.0  # 7 baseline windows, then the infusion
    offline = offline_causal(raw.copy().crop(crop_from).get_data(picks="eeg"), raw.info["sfreq"], raw.ch_names,
                             cfg, start - crop_from)
    assert offline.attrs["alert_time_s"] is not None
    stop = min(raw.times[-1], start + offline.attrs["alert_time_s"] + 6.0)
    player = start_player(raw.copy().crop(crop_from, stop), "kw-test-roundtrip")
    try:
        result = monitor("kw-test-roundtrip", cfg, duration_s=stop - crop_from + 10)
    finally:
        try:
            player.stop()
        except RuntimeError:  # it stopped by itself at the end of the recording
            pass
    # From the marker stream, relative to the first sample received (connecting may miss the first second or two).
    assert start - crop_from - 3.0 <= result["infusion_start_s"] <= start - crop_from
    assert result["alert_time_s"] == pytest.approx(offline.attrs["alert_time_s"], abs=cfg.step_s)
    latency, processing = np.array(result["latency_s"]), np.array(result["processing_s"])
    assert len(latency) > 10 and np.percentile(np.abs(latency), 95) < 0.5  # LSL timestamp of a window's end → result
    assert np.percentile(processing, 95) < 0.25  # arrival of the window's last sample → result
