"""Live titration: the causal online pipeline, its alert on planted onsets, and a real LSL round trip on loopback."""

from __future__ import annotations

import time

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
    data[:3, int(20 * sfreq) :] = 0.0  # occipital leads come off after 20 s: alpha "vanishes", but it is garbage
    for i in range(0, data.shape[1], 64):
        for result in online.push(data[:, i : i + 64]):
            assert criterion.update(result) is None
    assert {r.status for r in online.results if r.time_s > 12} == {"no-occipital-channel"}


@pytest.mark.slow
def test_lsl_round_trip_on_loopback_raises_the_alert_like_the_offline_computation(tiny_manifest):
    """A real PlayerLSL on 127.0.0.1 and the monitor: the alert arrives, and equals the offline causal result."""
    from pipelines.eeg.io import read_raw
    from pipelines.eeg.live import _lsl_loopback_config, monitor, start_player
    from pipelines.study.dataset import Study

    _lsl_loopback_config()
    study = Study.load(tiny_manifest)
    truth = study.truth()
    rec = study.recording("sub-01_ses-ket100_task-rest")
    raw = read_raw(rec, study.root)
    cfg = LiveConfig.from_manifest(study.manifest, hold_s=6.0, smooth_windows=2)
    start = truth["infusion_start_s"]
    crop_from = start - 14.0  # 7 baseline windows, then the infusion
    offline = offline_causal(
        raw.copy().crop(crop_from).get_data(picks="eeg"), raw.info["sfreq"], raw.ch_names, cfg, start - crop_from
    )
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


def test_live_alpha_is_close_to_the_offline_zero_phase_features(default_study):
    """What changes live (docs/live.md): causal filters, per-window channels and reference.  Occipital alpha
    relative to baseline stays within a few tenths of a dB of the offline features, window by window."""
    from pipelines.dashboards import data

    key = data.manifest_key(default_study.manifest.manifest_path)
    cfg = LiveConfig.from_manifest(default_study.manifest)
    table = offline_causal(
        *_recording(default_study, "sub-01_ses-ket100_task-rest"), cfg, default_study.truth()["infusion_start_s"]
    )
    offline = data.summary_series(key, "occipital_alpha_db").sel(subject="01", session="ket100")
    live = table.set_index(table["time_s"].round(3))["occipital_alpha_db"]
    times = np.round(offline["time_s"].to_numpy(), 3)
    both = [(live.loc[t], v) for t, v in zip(times, offline.to_numpy()) if t in live.index]
    a, b = np.array(both).T
    ok = np.isfinite(a) & np.isfinite(b)
    assert ok.sum() > 150
    diff = np.abs(a[ok] - b[ok])
    assert np.percentile(diff, 95) < 0.5 and np.corrcoef(a[ok], b[ok])[0, 1] > 0.99


# --- discontinuities, garbage and the session recording (no LSL) ----------------------------------------------


def _alpha_stream(seconds: float, sfreq: float = 128.0, suppress_from_s: float | None = None, seed: int = 0):
    from pipelines.eeg.live import synthetic_eeg

    return synthetic_eeg(8, sfreq, seconds, seed=seed, suppress_from_s=suppress_from_s)


def test_windows_touching_a_dropout_never_count_and_the_time_axis_keeps_the_gap():
    cfg = LiveConfig(hold_s=6.0, smooth_windows=1)
    sfreq = 128.0
    data, names = _alpha_stream(60, sfreq, suppress_from_s=20)
    online = OnlineFeatures(sfreq, names, cfg, infusion_start_s=10.0)
    criterion = TitrationCriterion(cfg.threshold_db, cfg.hold_s, cfg.smooth_windows)
    gap = (int(24 * sfreq), int(25.5 * sfreq))  # 1.5 s lost during the hold (suppressed from 10 s re infusion)
    results = []
    for i in range(0, gap[0], 50):
        results += online.push(data[:, i : min(i + 50, gap[0])])
    results += online.mark_break(gap[1] - gap[0])  # what the monitor does when the timestamps jump
    for i in range(gap[1], data.shape[1], 50):
        results += online.push(data[:, i : i + 50])
    for r in results:
        criterion.update(r)
    table = {r.time_s: r for r in online.results}
    assert online.n_seen == data.shape[1]  # the lost samples still take their time
    # The window around the gap and those inside the 3-s settling span after it do not count ...
    assert [table[t].status for t in (13.0, 15.0, 17.0, 19.0, 21.0)] == ["ok", "gap", "settling", "settling", "ok"]
    # ... so the hold restarts after them: without the gap the alert would come at 11 + 6 = 17 s re infusion;
    # with it, the hold starts again at the first counting window after the settling span (21 s).
    assert criterion.alert_time_s == pytest.approx(21.0 + cfg.hold_s)
    assert np.isfinite(table[max(table)].occipital_alpha_db)  # and it recovered


def test_non_finite_samples_do_not_poison_the_filters():
    cfg = LiveConfig()
    sfreq = 128.0
    data, names = _alpha_stream(40, sfreq)
    data[:, int(20 * sfreq) : int(20.5 * sfreq)] = np.nan
    online = OnlineFeatures(sfreq, names, cfg, infusion_start_s=8.0)
    for i in range(0, data.shape[1], 64):
        online.push(data[:, i : i + 64])
    by_time = {r.time_s: r.status for r in online.results}
    assert by_time[13.0] == "non-finite" and by_time[15.0] == "settling"
    late = [r for r in online.results if r.time_s > 17]
    assert late and all(r.status == "ok" and np.isfinite(r.occipital_alpha_db) for r in late)


def test_a_lead_coming_off_mid_window_is_flat_in_that_window():
    cfg = LiveConfig(hold_s=2.0, smooth_windows=1)
    sfreq = 128.0
    data, names = _alpha_stream(40, sfreq)
    data[:3, int(24.5 * sfreq) :] = 0.0  # occipital leads off 0.5 s into the window [24, 26) of the stream
    online = OnlineFeatures(sfreq, names, cfg, infusion_start_s=10.0)
    criterion = TitrationCriterion(cfg.threshold_db, cfg.hold_s, cfg.smooth_windows)
    for i in range(0, data.shape[1], 64):
        for r in online.push(data[:, i : i + 64]):
            assert criterion.update(r) is None
    window = next(r for r in online.results if r.time_s == 15.0)  # 24-26 s of the stream
    assert window.n_good_channels == len(names) - 3
    assert window.status == "no-occipital-channel" and set(window.flat_channels.split(",")) == {"O1", "Oz", "O2"}


def test_session_recording_is_atomic_never_overwrites_and_reads_back(tmp_path):
    from pipelines.eeg.live import SessionRecorder, WindowResult, read_session

    rng = np.random.default_rng(1)
    names, sfreq = ["O1", "Oz", "O2"], 100.0
    recorders = [SessionRecorder(tmp_path, "kw-x", names, sfreq, {"study": "t"}) for _ in range(2)]
    sent = []
    for rec in recorders:
        rec.FLUSH_SAMPLES_S = 1.0  # several chunk files
        chunks = [
            (rng.standard_normal((3, n)) * 1e-5, 1000.0 + np.arange(k, k + n) / sfreq)
            for k, n in ((0, 37), (37, 120), (157, 64))
        ]
        for data, ts in chunks:
            rec.add_samples(data, ts)
        rec.add_window(WindowResult(1.0, 1001.0, 2.0, -3.5, 0.4, 3, "ok"))
        rec.add_event(
            {
                "lsl_time": 1001.5,
                "utc": "now",
                "stream_time_s": 1.5,
                "level": "warning",
                "event": "gap",
                "message": "1.0 s missing",
            }
        )
        sent.append(chunks)
        hidden = [p.name for p in tmp_path.iterdir()]
        assert any(n.startswith(".") and n.endswith(".partial") for n in hidden)  # nothing visible before close
    paths = [rec.close({"alert_time_s": None}) for rec in recorders]
    assert len(set(paths)) == 2 and all(p.parent == tmp_path for p in paths)  # same second: a suffix, no overwrite
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    for path, chunks in zip(paths, sent):
        session = read_session(path)
        expected = np.concatenate([d for d, _ in chunks], axis=1)
        np.testing.assert_allclose(session["samples"], expected, rtol=1e-6)  # float32 on disk
        np.testing.assert_array_equal(session["timestamps"], np.concatenate([t for _, t in chunks]))
        assert session["meta"]["ch_names"] == names and session["meta"]["sfreq"] == sfreq
        assert session["windows"]["status"].tolist() == ["ok"] and session["windows"]["occipital_alpha_db"][0] == -3.5
        assert session["events"]["event"].tolist() == ["gap"]
        assert session["raw"].info["sfreq"] == sfreq and session["raw"].n_times == expected.shape[1]


# --- dropout, clock offset and restart over LSL on loopback -----------------------------------------------


@pytest.mark.slow
def test_lsl_dropout_clock_offset_and_flat_leads_are_reported_recorded_and_never_alert(tmp_path):
    """A synthetic stream on 127.0.0.1 with a source clock 500 s ahead, 1.5 s of samples lost and the occipital
    leads off for 2 s: each is said once, the windows touching them do not count, the monitor recovers, and the
    session recording holds exactly the samples that were sent."""
    from pipelines.eeg.live import ArrayOutlet, LiveMonitor, _lsl_loopback_config, read_session

    _lsl_loopback_config()
    sfreq = 128.0
    data, names = _alpha_stream(16, sfreq)  # no suppression: any alert would be on garbage
    data[:3, int(11 * sfreq) : int(13 * sfreq)] = 0.0
    cfg = LiveConfig(window_s=1.0, step_s=1.0, settle_s=1.5, hold_s=1.0, smooth_windows=1)  # short, for CI
    outlet = ArrayOutlet(
        data, sfreq, names, "kw-test-dropout", markers={"infusion_start": 4.0}, drop=[(7.0, 8.5)], clock_offset_s=500.0
    )
    mon = LiveMonitor("kw-test-dropout", cfg, record_to=tmp_path, connect_timeout_s=10)
    try:
        mon.connect()
        outlet.start()
        mon.run(40, stop_after_s=2.5)
    finally:
        outlet.stop()
        mon.stop()
    events = [e["event"] for e in mon.events]
    for expected in (
        "connected",
        "clock-offset",
        "infusion-start",
        "gap",
        "channels",
        "no-occipital-channel",
        "counting",
        "stalled",
        "stopped",
        "recording-saved",
    ):
        assert expected in events, (expected, events)
    assert events.count("gap") == 1 and events.count("clock-jump") == 0
    gap = next(e for e in mon.events if e["event"] == "gap")
    assert "1.5" in gap["message"]
    assert mon.criterion.alert_time_s is None
    statuses = [r.status for r in mon.results]
    assert "ok" in statuses and "gap" in statuses and "no-occipital-channel" in statuses and statuses[-1] == "ok"
    assert abs(mon.clock_offset_s + 500.0) < 1.0
    # Time keeps the lost samples: the stream's time ends where its 16 s end (to a sample or two of jitter).
    assert abs(mon.online.n_seen - data.shape[1]) <= 2
    session = read_session(mon.recordings[0])
    assert session["samples"].shape[1] == outlet.sent_samples  # every sample sent, none invented for the gap
    assert np.all(np.diff(session["timestamps"]) > 0)
    np.testing.assert_allclose(session["samples"][:, -100:], data[:, -100:], rtol=1e-6, atol=1e-12)
    assert "gap" in session["events"]["event"].tolist()


@pytest.mark.slow
def test_lsl_restarted_player_is_found_again_and_monitoring_recovers(tmp_path):
    """The source stops after 5 s; 2 s later a new one with the same name and source id starts: the monitor says
    the stream stalled, then that samples are back after a gap, and its windows count again."""
    from pipelines.eeg.live import ArrayOutlet, LiveMonitor, _lsl_loopback_config

    _lsl_loopback_config()
    sfreq = 128.0
    first, names = _alpha_stream(5, sfreq, seed=1)
    second, _ = _alpha_stream(7, sfreq, seed=2)
    cfg = LiveConfig(window_s=1.0, step_s=1.0, settle_s=1.5, stall_s=1.0, reconnect_every_s=1.0)
    mon = LiveMonitor("kw-test-restart", cfg, infusion_start_s=3.0, connect_timeout_s=10)
    outlet = ArrayOutlet(first, sfreq, names, "kw-test-restart")
    try:
        mon.connect()
        outlet.start()
        mon.run(5 + 1.0, stop_after_s=None)
        outlet.stop()
        mon.run(2.0, stop_after_s=None)  # silence: stalled
        outlet = ArrayOutlet(second, sfreq, names, "kw-test-restart").start()
        # Wait for the restarted source without a silence limit: LSL discovery of the new outlet can take a few
        # seconds on a loaded machine, and the silence so far already exceeds any short limit.
        deadline = time.monotonic() + 20.0
        while "resumed" not in [e["event"] for e in mon.events] and time.monotonic() < deadline:
            mon.run(0.5, stop_after_s=None)
        mon.run(30, stop_after_s=2.0)
    finally:
        outlet.stop()
        mon.stop()
    events = [e["event"] for e in mon.events]
    assert "stalled" in events and "resumed" in events, events
    stalled = events.index("stalled")
    assert "gap" in events[stalled:] or "restarted" in events[stalled:], events
    assert mon.results[-1].status == "ok" and np.isfinite(mon.results[-1].occipital_alpha_db)
    assert "gap" in [r.status for r in mon.results]
    # Both sources' samples went into the state: the second source's 7 s follow the first's 5 s and the pause.
    assert mon.online.n_seen / sfreq > 5 + 2 + 7 - 1


# --- the dashboard's live mode ---------------------------------------------------------------------------------


def test_live_view_frames_rebase_on_infusion_start_and_smooth_causally():
    from pipelines.dashboards.live import frames
    from pipelines.eeg.live import WindowResult

    results = [
        WindowResult(t - 10.0, 0.0, 1.0, db, 0.5 + 0.1 * (t > 10), 8, "ok", stream_time_s=t)
        for t, db in ((5.0, 0.0), (7.0, 0.0), (9.0, 0.0), (11.0, -4.0), (13.0, -6.0))
    ]
    alpha, entropy = frames(results, smooth_windows=2, window_s=2.0, infusion_start_s=10.0)
    np.testing.assert_allclose(alpha["time_s"], [-5, -3, -1, 1, 3])
    np.testing.assert_allclose(alpha["smoothed"], [0, 0, 0, -2, -5])  # trailing, never using later windows
    np.testing.assert_allclose(entropy["value"], [0, 0, 0, 0.1, 0.1], atol=1e-12)  # change from the pre-infusion mean


@pytest.mark.slow
def test_live_page_shows_an_updating_status_for_a_loopback_stream(browser, default_study):
    """/live?stream=…&running=true in Chromium follows a synthetic stream on 127.0.0.1: the status line counts
    windows as they arrive and the monitor's status lines appear."""
    import re
    import socket
    import time

    import panel as pn

    from pipelines.dashboards import data, live
    from pipelines.eeg.live import ArrayOutlet, _lsl_loopback_config

    _lsl_loopback_config()
    data.setup_extension()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = pn.serve(
        {"live": lambda: live.app(default_study.manifest.manifest_path)},
        port=port,
        address="127.0.0.1",
        threaded=True,
        show=False,
        websocket_origin=[f"127.0.0.1:{port}"],
    )
    signal, names = _alpha_stream(40, 128.0)
    outlet = ArrayOutlet(signal, 128.0, names, "kw-test-browser", markers={"infusion_start": 8.0}).start()
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        deadline = time.time() + 60
        while True:  # the server thread may need a moment to listen
            try:
                page.goto(f"http://127.0.0.1:{port}/live?stream=kw-test-browser&running=true&record=false")
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        status = page.get_by_text(re.compile(r"Stream kw-test-browser — .* \d+ windows"))  # the status line

        def windows() -> int:
            if not status.count():
                return -1
            match = re.search(r"(\d+) windows", status.first.inner_text())
            return int(match.group(1)) if match else -1

        deadline = time.time() + 60
        while windows() < 2 and time.time() < deadline:
            time.sleep(0.5)
        first = windows()
        assert first >= 2, status.first.inner_text()
        deadline = time.time() + 30
        while windows() <= first and time.time() < deadline:
            time.sleep(0.5)
        assert windows() > first, status.first.inner_text()  # it updates as windows arrive
        assert "kw-test-browser" in status.first.inner_text()
        assert page.get_by_text(re.compile(r"stream .kw-test-browser. \(8 channels at 128 Hz")).count()  # the log
        assert not page.locator(".kw-suppression-alert").first.is_visible()
        assert not errors, errors
    finally:
        page.close()
        outlet.stop()
        server.stop()
