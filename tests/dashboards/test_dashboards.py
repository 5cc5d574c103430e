"""The Panel dashboards: their logic without a browser, then the served apps in headless Chromium.

Browser tests use Debian's chromium (/usr/bin/chromium) through Playwright.  They skip only when chromium is
missing on a developer machine; under CI (CI=true) a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DEFAULT_MANIFEST, REPO, in_ci

MANIFEST = str(DEFAULT_MANIFEST)


@pytest.fixture(scope="module")
def explorer_cls(default_study):
    from pipelines.dashboards import data

    data.setup_extension()
    from pipelines.dashboards.explorer import ExplorerApp

    return ExplorerApp


@pytest.fixture(scope="module")
def titration_cls(default_study):
    from pipelines.dashboards.titration import TitrationApp

    return TitrationApp


# --- logic, no browser -------------------------------------------------------------------------------


def test_explorer_timeline_shows_the_subjects_therapy_sessions(explorer_cls):
    """Issue 17: each subject's preparation and integration sessions per infusion, in hours from its end."""
    app = explorer_cls(MANIFEST, subject="sub-01", dose=1.0)
    frame = app.therapy_frame()
    assert set(frame["participant_id"]) == {"sub-01"} and {"preparation", "integration"} <= set(frame["session_type"])
    (view,) = app.views_for(["timeline"])
    drawn = dict(view.points.data)
    assert sorted(drawn["h"]) == sorted(frame["start_h"].astype(float))
    assert set(drawn["row"]) <= {app.conditions.label(d) for d in app.conditions.order}
    assert all(h < 0 for h, kind in zip(drawn["h"], drawn["kind"]) if kind == "preparation")
    app.subject = "sub-02"
    assert sorted(view.points.data["h"]) == sorted(app.therapy_frame()["start_h"].astype(float)) != sorted(drawn["h"])


def test_explorer_widgets_change_the_data_of_every_view(explorer_cls):
    app = explorer_cls(MANIFEST, subject="sub-01", dose=1.0)
    assert app.session == "ket100"
    alpha1, _entropy1, topo1 = app.alpha_frame(), app.entropy_frame(), app.topo_frame()
    profile1, mood1, cyto1 = app.profile_frame(), app.mood_frame(), app.cytokine_frame()
    assert set(mood1["participant_id"]) == {"sub-01"} and set(cyto1["dose_mg_per_kg"]) == {1.0}
    assert len(alpha1) == 240 and {"time_s", "value", "smoothed"} <= set(alpha1.columns)

    app.subject = "sub-03"
    assert not np.allclose(app.alpha_frame()["value"], alpha1["value"], equal_nan=True)
    assert not np.allclose(app.topo_frame()["change"], topo1["change"], equal_nan=True)
    assert set(app.mood_frame()["participant_id"]) == {"sub-03"}
    assert not np.allclose(app.profile_frame()["value"], profile1["value"], equal_nan=True)
    assert "sub-03" in app.summary_markdown()

    app.dose = 0.25
    assert app.session == "ket025"
    assert set(app.cytokine_frame()["dose_mg_per_kg"]) == {0.25}
    app.dose = 0.0  # placebo: low peak-experience ratings (questionnaires follow placebo too), alpha is flat
    placebo_profile = app.profile_frame()["value"]
    assert placebo_profile.notna().all() and placebo_profile.mean() < profile1["value"].mean()
    assert app.alpha_frame()["smoothed"].abs().max() < 3.0

    app.dose = 1.0
    entropy3 = app.entropy_frame()
    app.measure = "perm_entropy"
    assert not np.allclose(app.entropy_frame()["value"], entropy3["value"], equal_nan=True)
    per_dose, changes = app.dose_response_frames()
    assert set(changes["measure"]) == {"perm_entropy"} and len(per_dose) == 4

    topo_a = app.topo_frame()
    app.time_s = -60.0
    assert not np.allclose(app.topo_frame()["change"], topo_a["change"], equal_nan=True)


def test_a_rewritten_input_is_never_served_from_stale_caches(explorer_cls, default_study):
    """A notebook rerun rewrites the EEG markers table under a running server: the next visitor's session shows
    the new onset (every cache dropped), and the one after the table is restored shows the old one again."""
    from pipelines.dashboards import data, explorer
    from pipelines.study.derived import table_path, tables_dir, write_tables

    key = data.manifest_key(MANIFEST)
    path, folder = table_path(default_study, "eeg_markers"), tables_dir(default_study)
    original, had_folder = (path.read_bytes() if path.is_file() else None), folder.is_dir()
    data.ensure_fresh(key)
    first = explorer.app(MANIFEST, None)
    assert not data.ensure_fresh(key)  # nothing changed: the caches are kept
    markers = data.markers(key).copy()
    mine = (markers["participant_id"] == first.subject) & (markers["session"].astype(str) == first.session)
    assert mine.sum() == 1 and "**4321 s**" not in first.summary_markdown()
    markers.loc[mine, "alpha_suppression_onset_s"] = 4321.0
    try:
        write_tables(default_study, {"eeg_markers": markers})
        assert "from **4321 s** after infusion start" in explorer.app(MANIFEST, None).summary_markdown()
    finally:
        if original is None:
            path.unlink(missing_ok=True)
            if not had_folder:
                folder.rmdir()
        else:
            path.write_bytes(original)
    again = explorer.app(MANIFEST, None).summary_markdown()
    assert "4321" not in again and again == first.summary_markdown()


def test_tapping_the_scatter_selects_the_subject(explorer_cls):
    app = explorer_cls(MANIFEST, subject="sub-01", dose=0.5)
    (scatter,) = app.views_for(["scatter"])
    rows, _, ylabel = app.scatter_frame()
    assert ylabel.startswith("MEQ30") and len(rows) == 12
    assert list(scatter.source.data["participant_id"]) == list(rows["participant_id"])
    scatter.source.selected.indices = [4]  # a tap in the browser arrives as this change of the Bokeh model
    assert app.subject == rows["participant_id"].iloc[4] != "sub-01"
    assert list(scatter.mine.data["x"]) == [rows["entropy_change"].iloc[4]]  # the ring follows


def _inside(values, start, end) -> bool:
    values = np.asarray(values, dtype=float)
    return bool(np.all((values >= min(start, end)) & (values <= max(start, end))))


def test_scatter_ranges_and_summary_follow_the_widgets(explorer_cls):
    """Issue 16: after a change of measure or dose the scatter kept its first ranges (most subjects off-screen),
    and the summary named the notebook's measure whatever was selected."""
    app = explorer_cls(MANIFEST, subject="sub-02", dose=1.0, measure="lzc_median")
    (scatter,) = app.views_for(["scatter"])
    for change in (
        {"measure": "perm_entropy"},
        {"dose": 0.25},
        {"measure": "spectral_entropy_welch"},
        {"dose": 0.0},
        {"measure": "lzc_median", "dose": 0.5},
    ):
        app.param.update(**change)
        x, y = scatter.source.data["x"], scatter.source.data["y"]
        assert len(x) == 12, change
        fig = scatter.figure
        assert _inside(x, fig.x_range.start, fig.x_range.end) and _inside(y, fig.y_range.start, fig.y_range.end), change
        summary = app.summary.object
        assert app.measure.replace("_", "\\_") in summary, (change, summary)
        others = [m for m in app.param.measure.objects if m != app.measure]
        assert not any(m.replace("_", "\\_") in summary for m in others), summary
    # The summary's peak is the selected measure's (the peak of its smoothed change after infusion start).
    t, v = app.entropy_peak()
    frame = app.entropy_frame()
    after = frame[frame["time_s"] >= 0]
    assert v == pytest.approx(np.nanmax(after["smoothed"])) and f"{v:+.3f}" in app.summary.object


# What a visitor's first view may cost: the models of the explorer's document as the server first sends it
# (102 before issue 16's last round: two Bokeh time courses and the topomap's range input in it; now the
# summary, the selectors, the tabs and one HTML pane holding the time courses as SVG).  Every model is built,
# registered and serialised per visitor, roughly 1 ms of server CPU each.
FIRST_VIEW_MAX_MODELS = 30


def _served_document(app):
    """The explorer's Bokeh document as the server builds it for a session (Panel's server_doc)."""
    import panel as pn
    from bokeh.document import Document

    doc = Document()
    pn.panel(app).server_doc(doc)
    return doc


def _figure_titles(doc) -> list[str]:
    from bokeh.models import Plot

    return sorted(str(m.title.text) for m in doc.models if isinstance(m, Plot))


def _markup(doc) -> str:
    """The HTML the document's panes and divs carry (Panel's HTML model holds it escaped, BokehJS unescapes it)."""
    from html import unescape

    from bokeh.models import Div
    from panel.models import HTML

    return "".join(
        unescape(m.text) if isinstance(m, HTML) else m.text for m in doc.models if isinstance(m, (Div, HTML))
    )


def _svg_titles(html: str) -> list[str]:
    import xml.etree.ElementTree as ET

    root = ET.fromstring(html)  # well-formed: the browser draws exactly this
    ns = "{http://www.w3.org/2000/svg}"
    return [svg.find(f"{ns}title").text for svg in root.iter(f"{ns}svg")]


def test_the_first_view_is_small_and_every_tab_is_one_click_away(explorer_cls):
    """The first view holds the summary, the selectors and both time courses as static SVG (no Bokeh figure);
    every interactive view is built when its tab is opened, into the same document, and follows the selectors."""
    from bokeh.models import Plot
    from panel.models.esm import ReactiveESM  # the Bokeh model of a JSComponent (the range input)

    from pipelines.dashboards.explorer import TABS

    app = explorer_cls(MANIFEST, subject="sub-03", dose=0.5, measure="perm_entropy")
    doc = _served_document(app)
    models = list(doc.models)
    assert len(models) <= FIRST_VIEW_MAX_MODELS, len(models)
    assert not [m for m in models if isinstance(m, (Plot, ReactiveESM))]
    assert "alpha suppression below" in app.summary.object
    overview = _markup(doc)
    assert overview.count("<svg") == 2 and app.overview_html() in overview
    first = ["Occipital alpha — sub-03, 0.50 mg/kg", "perm_entropy, all channels — sub-03, 0.50 mg/kg"]
    assert _svg_titles(app.overview_html()) == first
    expected = {"Time courses": 2, "Topomap, dose-response, selection": 3, "Experience, mood, cytokines": 4}
    assert [t for t, _ in TABS] == ["Overview", *expected]
    for title, n_figures in expected.items():  # a dynamic tab: only the open tab's figures are on the page
        app.show_tab(title)
        assert len(_figure_titles(doc)) == n_figures, (title, _figure_titles(doc))
        ranges = [m for m in doc.models if isinstance(m, ReactiveESM)]
        assert len(ranges) == title.startswith("Topomap"), title  # the range input comes with the topomap
    assert len(app._views) == sum(expected.values())
    app.param.update(subject="sub-07", measure="lzc_median")
    assert _svg_titles(app._overview.text) == [
        "Occipital alpha — sub-07, 0.50 mg/kg",
        "lzc_median, all channels — sub-07, 0.50 mg/kg",
    ]
    assert all(
        view.figure.title.text.endswith(("sub-07, 0.50 mg/kg", "sub-07"))
        for n, view in app._views.items()
        if n not in ("dose_response", "scatter")
    ), {n: v.figure.title.text for n, v in app._views.items()}
    app.show_tab("Overview")
    assert app._overview.text in _markup(doc)


def test_static_time_course_draws_its_data_where_it_belongs_and_escapes_text():
    """The first view's SVG: each curve is one path through the data's own points (scaled into the plot area),
    broken at missing values; every text is escaped; the band encloses the condition's mean."""
    import re as re_

    import pandas as pd

    from pipelines.dashboards import views

    t = np.arange(-60.0, 121.0, 30.0)
    stats = pd.DataFrame({"dose_mg_per_kg": 1.0, "time_s": t, "mean": np.where(t > 0, -10.0, 0.0), "sem": 1.0})
    value = np.where(t > 0, -12.0, 0.5)
    value[3] = np.nan
    subject = pd.DataFrame({"time_s": t, "value": value, "smoothed": value})
    svg = views.static_time_course(
        stats,
        [(1.0, "1.00 mg/kg <b>", "#08306b")],
        subject,
        "a <script>x</script>",
        "dB",
        threshold=-8.0,
        infusion_end_s=90.0,
        onset_s=15.0,
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "1.00 mg/kg &lt;b&gt;" in svg
    assert _svg_titles(f"<div>{svg}</div>") == ["a <script>x</script>"]
    paths = re_.findall(r'<path d="([^"]*)" fill="none" stroke="([^"]+)"', svg)
    assert [c for _, c in paths] == ["#08306b", views.SUBJECT_COLOR, views.SUBJECT_COLOR]
    mean_xy = np.array(re_.findall(r"[ML]([-\d.]+),([-\d.]+)", paths[0][0]), dtype=float)
    assert len(mean_xy) == len(t) and np.all(np.diff(mean_xy[:, 0]) > 0)  # left to right, one vertex per time
    assert len(set(mean_xy[t > 0, 1])) == 1 and mean_xy[t > 0, 1][0] > mean_xy[0, 1]  # -10 dB is drawn lower
    assert paths[1][0].count("M") == 2 and paths[1][0].count("L") == len(t) - 3  # broken at the missing window
    w, h = views.SVG_SIZE
    left, right = views._MARGIN["left"], w - views._MARGIN["right"]
    top, bottom = views._MARGIN["top"], h - views._MARGIN["bottom"]
    xy = np.array(re_.findall(r"[ML]([-\d.]+),([-\d.]+)", "".join(p for p, _ in paths)), dtype=float)
    assert xy[:, 0].min() >= left and xy[:, 0].max() <= right and xy[:, 1].min() >= top and xy[:, 1].max() <= bottom
    assert svg.count("stroke-dasharray") == 4  # infusion start, infusion end, onset, threshold
    assert views.nice_ticks(-0.04, 0.16) == [0.0, 0.05, 0.1, 0.15] and views.nice_ticks(-120, 360, 7)[0] == -100


def test_titration_replay_raises_the_alert_only_on_suppression(titration_cls):
    from pipelines.dashboards import data

    markers = data.markers(data.manifest_key(MANIFEST)).set_index(["participant_id", "session"])
    planted = titration_cls(MANIFEST, subject="01", session="ket100")
    assert not planted.alert_raised and planted.received == 0
    planted.advance(60.0)  # still in the baseline
    assert not planted.alert_raised and 0 < planted.received < 240
    planted.replay_to_end()
    assert planted.alert_raised and planted.finished
    # The live alert finds the onset of the offline marker (notebook 01's definition), after it happened.
    assert planted.onset_s == pytest.approx(markers.loc[("sub-01", "ket100"), "alpha_suppression_onset_s"])
    assert planted.onset_s + planted.hold_s <= planted.detected_at_s < planted.onset_s + planted.hold_s + 30
    assert "Sustained alpha suppression" in planted._alert.object and planted._alert.visible

    for subject in ("01", "05", "12"):
        placebo = titration_cls(MANIFEST, subject=subject, session="placebo")
        placebo.replay_to_end()
        assert not placebo.alert_raised and not placebo._alert.visible

    strict = titration_cls(MANIFEST, subject="01", session="ket100", threshold_db=-15.0)
    strict.replay_to_end()
    assert not strict.alert_raised  # a deeper threshold than reached: no alert
    strict.threshold_db = -3.0  # criteria changed: what was received is judged again
    assert strict.alert_raised


def test_speed_sets_how_fast_the_clock_runs(titration_cls):
    app = titration_cls(MANIFEST, subject="01", session="ket100", speed=50)
    start = app.clock_s
    app._tick()
    assert app.clock_s - start == pytest.approx(50 * 0.2)


BLIND_SECRET = "trial-blinding-secret-" + "7" * 24
DOSE_LEAKS = re.compile(r"mg/kg|mg_per_kg|ket\d{3}|placebo|\bket\b", re.IGNORECASE)


def test_blinding_letters_are_stable_secret_and_unblind_with_the_key(default_study):
    from pipelines.dashboards import blinding, serve

    doses = [0.0, 0.25, 0.5, 1.0]
    one = blinding.Blinding.from_secret(BLIND_SECRET, "default", doses)
    assert one.letters == ["A", "B", "C", "D"] and sorted(one.dose(l) for l in one.letters) == doses
    assert blinding.Blinding.from_secret(BLIND_SECRET, "default", doses[::-1]).key_text() == one.key_text()  # stable
    # The secret decides the permutation: many secrets give many orders, not the dose order.
    orders = {
        tuple(
            blinding.Blinding.from_secret(f"secret-number-{i:04d}-xxxxxxxx", "default", doses).dose(l) for l in "ABCD"
        )
        for i in range(40)
    }
    assert len(orders) >= 10
    with pytest.raises(blinding.BlindingError):
        blinding.Blinding.from_secret("short", "default", doses)
    assert blinding.parse_key(one.key_text()) == {l: one.dose(l) for l in "ABCD"}
    env = {"KW_BLIND_SECRET": BLIND_SECRET}
    mapping = serve.blinding_for(MANIFEST, True, environ=env)
    assert mapping.key_text() == blinding.for_study(MANIFEST, BLIND_SECRET).key_text()
    with pytest.raises(serve.ServeError, match="KW_BLIND_SECRET"):
        serve.blinding_for(MANIFEST, True, environ={})


def test_unblinding_key_must_match_the_secret(tmp_path, default_study):
    from pipelines.dashboards import blinding, serve

    env = {"KW_BLIND_SECRET": BLIND_SECRET}
    mapping = blinding.for_study(MANIFEST, BLIND_SECRET)
    good, bad = tmp_path / "key.txt", tmp_path / "wrong.txt"
    good.write_text("# unblinding key\n" + mapping.key_text())
    swapped = {l: mapping.dose(l) for l in mapping.letters}
    swapped["A"], swapped["B"] = swapped["B"], swapped["A"]
    bad.write_text("".join(f"{l} = {d:g}\n" for l, d in swapped.items()))
    assert serve.blinding_for(MANIFEST, True, unblind_key=good, environ=env) is None  # unblinded: doses shown
    with pytest.raises(serve.ServeError, match="does not match"):
        serve.blinding_for(MANIFEST, True, unblind_key=bad, environ=env)
    with pytest.raises(serve.ServeError, match="only make sense with --blind"):
        serve.blinding_for(MANIFEST, False, unblind_key=good, environ=env)


def _document_text(viewable) -> str:
    """Everything a browser would receive for ``viewable``: its Bokeh document as JSON."""
    import json

    import panel as pn
    from bokeh.document import Document
    from bokeh.embed.util import standalone_docs_json

    doc = Document()
    doc.add_root(pn.panel(viewable).get_root(doc))
    return json.dumps(standalone_docs_json([doc]), default=str)


def test_blinded_explorer_and_monitor_hold_no_dose_anywhere(explorer_cls, titration_cls):
    from pipelines.dashboards import blinding, safety

    mapping = blinding.for_study(MANIFEST, BLIND_SECRET)
    app = explorer_cls(MANIFEST, blinding=mapping)
    assert dict(app.param.dose.objects) == {l: l for l in "ABCD"} and app.dose == "A"
    for letter in "ABCD":
        app.dose = letter
        assert app.dose_value == mapping.dose(letter)
        assert not DOSE_LEAKS.search(app.summary_markdown()), app.summary_markdown()
        assert f"condition {letter}" in app.summary_markdown()
    assert app.url_fields()["dose"]("C") == "C"
    with pytest.raises(safety.Rejected):
        app.url_fields()["dose"]("0.5")  # a dose in a link is not a condition
    text = _document_text(app)
    from pipelines.dashboards.explorer import TABS

    for name in [n for _, names in TABS for n in names]:
        app.views_for([name])
    app.dose = "B"
    text += _document_text(app)
    assert not DOSE_LEAKS.search(text), DOSE_LEAKS.search(text).group(0)
    dr = app._views["dose_response"].figure
    assert list(dr.x_range.factors) == ["A", "B", "C", "D"]  # letter order, not dose order
    assert all(not DOSE_LEAKS.search(str(item.label)) for item in app._views["mood"].figure.legend[0].items)
    # Unblinded, the same check finds the doses (so it would see a leak).
    assert DOSE_LEAKS.search(_document_text(explorer_cls(MANIFEST)))

    monitor = titration_cls(MANIFEST, blinding=mapping)
    labels = list(dict(monitor.param.recording.objects))
    assert len(labels) == 48 and all(re.fullmatch(r"sub-\d\d · [ABCD]", l) for l in labels), labels[:5]
    assert all(re.fullmatch(r"sub-\d\d_[ABCD]", v) for v in monitor.param.recording.objects.values())
    monitor.replay_to_end()
    text = _document_text(monitor) + monitor._status.object + monitor._alert.object
    assert not DOSE_LEAKS.search(text), DOSE_LEAKS.search(text).group(0)
    # The letter's recording is the right one: sub-01 in the letter of 1 mg/kg is sub-01's ket100.
    high = titration_cls(MANIFEST, blinding=mapping, subject="01", session="ket100")
    assert high.recording == f"sub-01_{mapping.letter(1.0)}" and high._recording_of[high.recording] == ("01", "ket100")


def test_share_mode_refuses_to_start_without_users_or_secret(tmp_path):
    from pipelines.dashboards import serve

    users = tmp_path / "users.txt"
    users.write_text("# collaborators\nalice:s3cret:with-colon\nbob:pw2\n")
    assert serve.read_users(users) == {"alice": "s3cret:with-colon", "bob": "pw2"}
    with pytest.raises(serve.ServeError, match="KW_COOKIE_SECRET"):
        serve.share_settings(users, environ={})
    with pytest.raises(serve.ServeError, match="too short"):
        serve.share_settings(users, environ={"KW_COOKIE_SECRET": "short"})
    with pytest.raises(serve.ServeError, match="users-file"):
        serve.share_settings(None, environ={"KW_COOKIE_SECRET": "x" * 40})
    settings = serve.share_settings(users, environ={"KW_COOKIE_SECRET": "x" * 40})
    assert settings["basic_auth"]["bob"] == "pw2"
    env = {k: v for k, v in os.environ.items() if k != "KW_COOKIE_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.dashboards.serve", "--share", "--users-file", str(users)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "KW_COOKIE_SECRET" in result.stderr
    assert serve.app_urls("127.0.0.1", 5006) == {
        "explorer": "http://127.0.0.1:5006/explorer",
        "explorer/interactive": "http://127.0.0.1:5006/explorer/interactive",
        "titration": "http://127.0.0.1:5006/titration",
        "live": "http://127.0.0.1:5006/live",
    }


# --- served apps in headless Chromium ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 120.0) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@pytest.fixture(scope="module")
def share_server(tmp_path_factory, default_study):
    """serve.py in sharing mode, as a user would start it (started early: it warms while other tests run)."""
    folder = tmp_path_factory.mktemp("share")
    users = folder / "users.txt"
    users.write_text("alice:correct-horse-battery\n")
    users.chmod(0o600)
    port = _free_port()
    env = dict(os.environ, KW_COOKIE_SECRET="t" * 48)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.dashboards.serve",
            "--port",
            str(port),
            "--share",
            "--users-file",
            str(users),
            "--manifest",
            MANIFEST,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    yield {"port": port, "lines": lines, "proc": proc}
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def served(default_study, share_server):
    """Both apps served in-process on a free port of 127.0.0.1 (a thread), as serve.py configures them."""
    import panel as pn

    from pipelines.dashboards import data, explorer, overview, titration

    data.setup_extension()
    data.warm(MANIFEST)
    port = _free_port()
    sessions = {"explorer": [], "titration": []}

    def make(kind, module):
        def factory():
            app = module.app(MANIFEST)
            sessions[kind].append(app)
            return app

        return factory

    thread = pn.serve(
        {"explorer/interactive": make("explorer", explorer), "titration": make("titration", titration)},
        extra_patterns=[(r"/explorer", overview.handler(MANIFEST, None))],
        port=port,
        address="127.0.0.1",
        threaded=True,
        show=False,
        websocket_origin=[f"127.0.0.1:{port}", f"localhost:{port}"],
    )
    base = f"http://127.0.0.1:{port}"
    _wait_http(base + "/explorer")
    yield {"base": base, "sessions": sessions}
    thread.stop()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1500, "height": 1200})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return page, errors


PLOT_DATA_DIGEST = """() => {
  let total = 0, count = 0, text = '';
  const visit = (v) => {  // ragged columns (multi-line xs/ys) hold one array per line
    if (typeof v === 'number') { if (Number.isFinite(v)) { total += v * (1 + (count % 7)); count += 1; } }
    else if (typeof v === 'string') { text += v[0] || ''; }
    else if (v && typeof v.length === 'number') { for (const x of v) visit(x); }
  };
  for (const doc of window.Bokeh.documents) {
    for (const model of doc.all_models) {
      if (model.type !== 'ColumnDataSource') continue;
      const entries = model.data instanceof Map ? [...model.data.entries()] : Object.entries(model.data);
      for (const [, column] of entries) visit(column);
    }
  }
  return `${count}:${total.toFixed(6)}:${text.length}`;
}"""


def _svg_headings(page) -> list[str]:
    """Titles of the static time courses on the page (Playwright's locators pierce Panel's shadow roots)."""
    return page.locator("svg[role=img] > title").all_text_contents()


def test_explorer_loads_without_errors_and_a_widget_updates_the_plots(browser, served):
    page, errors = _open(browser, served["base"] + "/explorer/interactive")
    try:
        page.get_by_text("alpha suppression below").first.wait_for(timeout=30_000)
        page.locator("svg[role=img]").first.wait_for(timeout=30_000)  # the first tab: both time courses
        assert [t.split(" — ")[1] for t in _svg_headings(page)] == ["sub-01, 1.00 mg/kg"] * 2, _svg_headings(page)
        assert page.evaluate(PLOT_DATA_DIGEST).startswith("0:")  # no Bokeh figure in the first view
        page.get_by_text("Time courses", exact=True).first.click()  # the interactive figures: one click
        deadline = time.time() + 30
        while int(page.evaluate(PLOT_DATA_DIGEST).split(":")[0]) <= 1000 and time.time() < deadline:
            page.wait_for_timeout(250)
        before = page.evaluate(PLOT_DATA_DIGEST)
        assert int(before.split(":")[0]) > 1000, before  # the plots carry data
        page.locator("select").first.select_option("sub-05")
        page.get_by_text("sub-05 at").first.wait_for(timeout=30_000)
        deadline = time.time() + 30
        while page.evaluate(PLOT_DATA_DIGEST) == before and time.time() < deadline:
            page.wait_for_timeout(250)
        assert page.evaluate(PLOT_DATA_DIGEST) != before, "the plots did not change after selecting another subject"
        assert served["sessions"]["explorer"][-1].subject == "sub-05"
        page.get_by_text("Overview", exact=True).first.click()
        deadline = time.time() + 30
        shown = lambda: [t.split(" — ")[1] for t in _svg_headings(page)]
        while shown() != ["sub-05, 1.00 mg/kg"] * 2 and time.time() < deadline:
            page.wait_for_timeout(250)
        assert shown() == ["sub-05, 1.00 mg/kg"] * 2, _svg_headings(page)
        page.screenshot(path=str(Path(os.environ.get("KW_SCREENSHOTS", "/tmp")) / "kw_explorer.png"), full_page=True)
        assert not errors, errors
    finally:
        page.close()


def test_first_view_is_plain_html_its_form_selects_and_its_link_opens_the_same_selection(browser, served):
    """/explorer: no script, nothing from another host, the form selects, the link carries the selection."""
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 1500, "height": 1200})
    page.on("request", lambda request: requests.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(served["base"] + "/explorer")
        assert page.evaluate("document.scripts.length") == 0
        assert page.title() == "Ketamine workbench — study explorer: default"
        assert [t.split(" — ")[1] for t in _svg_headings(page)] == ["sub-01, 1.00 mg/kg"] * 2
        page.get_by_label("Subject", exact=True).select_option("sub-05")
        page.get_by_label("Dose", exact=True).select_option(label="0.50 mg/kg")
        page.get_by_label("Measure", exact=True).select_option("perm_entropy")
        page.get_by_role("button", name="Show").click()
        page.get_by_text("sub-05 at 0.50 mg/kg").first.wait_for(timeout=30_000)
        assert [t.split(" — ")[1] for t in _svg_headings(page)] == ["sub-05, 0.50 mg/kg"] * 2
        assert page.get_by_text("perm_entropy peaked").count() == 1
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))
        assert query["subject"] == "sub-05" and float(query["dose"]) == 0.5 and query["measure"] == "perm_entropy"
        page.get_by_role("link", name="Open the interactive explorer").click()
        page.get_by_text("sub-05 at 0.50 mg/kg").first.wait_for(timeout=30_000)
        app = served["sessions"]["explorer"][-1]
        assert (app.subject, app.dose_value, app.measure) == ("sub-05", 0.5, "perm_entropy")
        # blob: URLs name the page's own origin; data: URLs are inline
        hosts = {urllib.parse.urlsplit(u.removeprefix("blob:")).hostname for u in requests if not u.startswith("data:")}
        assert hosts == {"127.0.0.1"}, requests
        assert not errors, errors
    finally:
        page.close()


# Every figure BokehJS holds, with whether it is drawn (its canvas on the page with a non-zero size).
FIGURES_DRAWN = """() => {
  const canvases = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'CANVAS' && el.width > 0 && el.height > 0 && el.getBoundingClientRect().width > 0) canvases.push(el);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  const titles = [];
  for (const doc of window.Bokeh.documents)
    for (const m of doc.all_models)
      if (m.title && m.title.text !== undefined && m.renderers) titles.push(String(m.title.text));
  return {titles, canvases: canvases.length};
}"""


def test_every_tab_of_the_explorer_opens_and_draws_its_figures_in_the_browser(browser, served):
    """Each panel the explorer had before the first view was made static is one click away and drawn."""
    from pipelines.dashboards.explorer import TABS

    page, errors = _open(browser, served["base"] + "/explorer/interactive?subject=sub-02&dose=0.5")
    try:
        page.get_by_text("alpha suppression below").first.wait_for(timeout=30_000)
        seen = set()
        for title, names in TABS[1:]:
            page.get_by_text(title, exact=True).first.click()
            deadline = time.time() + 30
            while time.time() < deadline:
                state = page.evaluate(FIGURES_DRAWN)
                if len(set(state["titles"]) - seen) >= len(names) and state["canvases"] >= len(names):
                    break
                page.wait_for_timeout(250)
            new = set(state["titles"]) - seen
            assert len(new) == len(names) and state["canvases"] >= len(names), (title, state)
            seen |= new
        assert len(seen) == 9 and sum("sub-02" in t for t in seen) >= 7, seen
        assert not errors, errors
    finally:
        page.close()


# The "Tap a subject" figure as the browser holds it: its ranges and the points it draws.
SCATTER_IN_BROWSER = """() => {
  const col = (source, name) => {
    const data = source.data;
    return Array.from(data instanceof Map ? (data.get(name) || []) : (data[name] || []));
  };
  for (const doc of window.Bokeh.documents) {
    for (const model of doc.all_models) {
      const title = model.title && model.title.text;
      if (!title || !String(title).startsWith('Tap a subject')) continue;
      const renderer = model.renderers.find(r => r.data_source && col(r.data_source, 'participant_id').length);
      if (!renderer) return {title, xs: [], ys: []};
      return {title, xs: col(renderer.data_source, 'x'), ys: col(renderer.data_source, 'y'),
              x0: model.x_range.start, x1: model.x_range.end, y0: model.y_range.start, y1: model.y_range.end};
    }
  }
  return null;
}"""

# For each <select> (Panel renders them in shadow roots; Playwright locators pierce them): the width its
# longest option needs in the select's own font, its inner width, and its box against the sidebar's.
SELECT_FIT = """(el) => {
  const style = getComputedStyle(el);
  const ctx = document.createElement('canvas').getContext('2d');
  ctx.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const need = Math.max(...Array.from(el.options).map(o => ctx.measureText(o.text).width));
  const box = el.getBoundingClientRect();
  return {need, inner: el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight),
          scroll: el.scrollWidth, client: el.clientWidth, left: box.left, right: box.right};
}"""


def _scatter_state(page, title_part: str, timeout_s: float = 30.0) -> dict:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        state = page.evaluate(SCATTER_IN_BROWSER)
        if state and title_part in state["title"] and len(state["xs"]) == 12:
            return state
        page.wait_for_timeout(200)
    raise AssertionError(f"the scatter never showed {title_part!r}: {page.evaluate(SCATTER_IN_BROWSER)}")


def test_explorer_scatter_ranges_summary_and_selects_in_the_browser(browser, served):
    page, errors = _open(browser, served["base"] + "/explorer/interactive?subject=sub-04&dose=1&measure=lzc_median")
    try:
        page.get_by_text("lzc_median peaked").first.wait_for(timeout=30_000)
        page.get_by_text("Topomap, dose-response, selection").first.click()
        _scatter_state(page, "1.00 mg/kg")
        selects = page.locator("select")
        for measure, dose in (("perm_entropy", None), (None, "0.25 mg/kg"), ("higuchi_fd", "0.00 mg/kg")):
            if measure:
                page.get_by_label("Measure", exact=True).select_option(measure)
            if dose:
                page.get_by_label("Dose", exact=True).select_option(label=dose)
            app = served["sessions"]["explorer"][-1]
            shown = measure or app.measure
            page.get_by_text(f"{shown} peaked").first.wait_for(timeout=30_000)  # the summary names it
            state = _scatter_state(page, dose or viz_label(app.dose_value))
            page.wait_for_timeout(300)
            state = _scatter_state(page, dose or viz_label(app.dose_value))
            assert _inside(state["xs"], state["x0"], state["x1"]), state
            assert _inside(state["ys"], state["y0"], state["y1"]), state
        summary = page.get_by_text("alpha suppression below").first.inner_text()
        assert "higuchi_fd peaked" in summary and "lzc_median" not in summary, summary
        sidebar = page.locator(".kw-sidebar").first.bounding_box()
        assert selects.count() == 3
        for i in range(selects.count()):
            fit = selects.nth(i).evaluate(SELECT_FIT)
            assert fit["need"] <= fit["inner"] - 16, fit  # room for the longest option and the drop-down arrow
            assert fit["scroll"] <= fit["client"], fit
            assert sidebar["x"] <= fit["left"] and fit["right"] <= sidebar["x"] + sidebar["width"], (fit, sidebar)
        assert not errors, errors
    finally:
        page.close()


def viz_label(dose: float) -> str:
    from pipelines.figures import common as viz

    return viz.dose_label(dose)


def test_titration_monitor_raises_its_alert_in_the_browser(browser, served):
    page, errors = _open(browser, served["base"] + "/titration?recording=sub-01_ket100&speed=150")
    try:
        alert = page.locator(".kw-suppression-alert")
        page.get_by_text("0/240 windows").first.wait_for(timeout=30_000)
        assert not alert.first.is_visible()
        page.locator(".kw-play button").click()
        alert.first.wait_for(state="visible", timeout=30_000)
        assert "Sustained alpha suppression" in page.get_by_text("Sustained alpha suppression").first.inner_text()
        page.screenshot(path=str(Path(os.environ.get("KW_SCREENSHOTS", "/tmp")) / "kw_titration.png"), full_page=True)
        assert not errors, errors
    finally:
        page.close()

    page, errors = _open(browser, served["base"] + "/titration?recording=sub-01_placebo&speed=200")
    try:
        page.get_by_text("0/240 windows").first.wait_for(timeout=30_000)
        page.locator(".kw-play button").click()
        page.get_by_text("240/240 windows").first.wait_for(timeout=30_000)
        assert not page.locator(".kw-suppression-alert").first.is_visible()
        assert not errors, errors
    finally:
        page.close()


@pytest.fixture(scope="module")
def blind_served(default_study):
    """Both apps in blinded mode, configured as `serve --blind` does (KW_BLIND_SECRET), on 127.0.0.1."""
    import panel as pn

    from pipelines.dashboards import data, serve

    data.setup_extension()
    port = _free_port()
    mapping = serve.blinding_for(MANIFEST, True, environ={"KW_BLIND_SECRET": BLIND_SECRET})
    apps, options = serve.server_options(MANIFEST, "127.0.0.1", port, blinding=mapping)
    thread = pn.serve(apps, threaded=True, **options)
    base = f"http://127.0.0.1:{port}"
    _wait_http(base + "/explorer")
    yield {"base": base, "mapping": mapping}
    thread.stop()


def _record_frames(page) -> list[str]:
    """Every websocket message the page receives (the Bokeh document and each update)."""
    frames: list[str] = []

    def on_ws(ws):
        ws.on(
            "framereceived",
            lambda payload: frames.append(payload if isinstance(payload, str) else payload.decode("utf-8", "replace")),
        )

    page.on("websocket", on_ws)
    return frames


def test_blinded_pages_send_no_dose_to_the_browser(browser, blind_served):
    import urllib.request

    base = blind_served["base"]
    with urllib.request.urlopen(base + "/explorer?dose=0.5", timeout=60) as response:
        served_html = response.read().decode("utf-8")
    page = browser.new_page(viewport={"width": 1500, "height": 1200})
    frames = _record_frames(page)
    try:
        page.goto(base + "/explorer?dose=C")  # the first view: letters only, no dose anywhere
        page.get_by_text("at condition C").first.wait_for(timeout=30_000)
        first_view = page.content()
        assert page.get_by_label("Condition", exact=True).locator("option").all_inner_texts() == ["A", "B", "C", "D"]
        page.goto(base + "/explorer/interactive")
        page.get_by_text("alpha suppression below").first.wait_for(timeout=30_000)
        options = page.get_by_label("Condition", exact=True).locator("option").all_inner_texts()
        assert options == ["A", "B", "C", "D"], options
        page.get_by_label("Condition", exact=True).select_option("C")
        page.get_by_text("at condition C").first.wait_for(timeout=30_000)
        for title in ("Topomap, dose-response, selection", "Experience, mood, cytokines"):
            page.get_by_text(title).first.click()
            page.wait_for_timeout(1500)
        assert "dose=C" in page.url
        factors = page.evaluate("""() => { for (const m of window.Bokeh.documents[0].all_models)
            if (m.title && String(m.title.text).startsWith('Condition-response')) return Array.from(m.x_range.factors); }""")
        assert factors == ["A", "B", "C", "D"]
        seen = "\n".join(frames) + page.content() + page.url + served_html + first_view
        assert len(frames) >= 3 and "Condition-response" in seen  # the document and its updates were captured
        leak = DOSE_LEAKS.search(seen)
        assert leak is None, seen[max(0, leak.start() - 200) : leak.end() + 50]
        page.goto(base + "/titration")
        page.get_by_text("0/240 windows").first.wait_for(timeout=30_000)
        seen = "\n".join(frames) + page.content()
        options = page.get_by_label("Recording", exact=True).locator("option").all_inner_texts()
        assert len(options) == 48 and all(re.fullmatch(r"sub-\d\d · [ABCD]", o) for o in options), options[:4]
        leak = DOSE_LEAKS.search(seen)
        assert leak is None, seen[max(0, leak.start() - 200) : leak.end() + 50]
    finally:
        page.close()


# --- accessibility (axe-core in the browser) --------------------------------------------------------------


def _axe_js() -> Path:
    """axe-core's axe.min.js: $KW_AXE_JS, or build/node (npm install axe-core@4 there; .ci/run does).  Missing:
    a failure under CI, a skip on a developer machine."""
    candidates = [Path(os.environ["KW_AXE_JS"])] if os.environ.get("KW_AXE_JS") else []
    candidates.append(REPO / "build" / "node" / "node_modules" / "axe-core" / "axe.min.js")
    for path in candidates:
        if path.is_file():
            return path
    message = (
        "axe-core is missing: npm install --prefix build/node axe-core@4 (or set KW_AXE_JS to axe.min.js); "
        f"looked in {[str(c) for c in candidates]}"
    )
    if in_ci():
        pytest.fail(message)
    pytest.skip(message + " (never skipped in CI)")


AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
}"""


def _serious_violations(context, url: str, ready_text: str, click: tuple[str, ...] = ()) -> list[dict]:
    page = context.new_page()
    try:
        page.goto(url)
        page.get_by_text(ready_text).first.wait_for(timeout=60_000)
        for text in click:
            page.get_by_text(text).first.click()
        page.wait_for_timeout(1000)
        page.add_script_tag(path=str(_axe_js()))
        violations = page.evaluate(AXE_RUN)
        assert page.evaluate("document.documentElement.lang") == "en" and page.title()
        return [v for v in violations if v["impact"] in ("serious", "critical")]
    finally:
        page.close()


def test_dashboards_have_no_serious_accessibility_violations(browser, served):
    _axe_js()
    # bypass_csp: axe is injected as an inline script, which the pages' Content-Security-Policy would refuse.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1500, "height": 1200})
    try:
        for path, ready, clicks in (
            ("/explorer", "alpha suppression below", ()),
            ("/explorer/interactive", "alpha suppression below", ()),
            (
                "/explorer/interactive",
                "alpha suppression below",
                ("Topomap, dose-response, selection", "Experience, mood, cytokines"),
            ),
            ("/titration", "0/240 windows", ()),
        ):
            found = _serious_violations(context, served["base"] + path, ready, clicks)
            assert found == [], (path, clicks, found)
    finally:
        context.close()


def test_login_page_has_no_serious_accessibility_violations(browser, share_server):
    _axe_js()
    lines, port = share_server["lines"], share_server["port"]
    deadline = time.time() + 150
    while not any(line.startswith("Study explorer: ") for line in lines) and time.time() < deadline:
        time.sleep(0.3)
    _wait_http(f"http://127.0.0.1:{port}/login")
    context = browser.new_context(bypass_csp=True)
    try:
        for query in ("", "?error=invalid"):
            found = _serious_violations(context, f"http://127.0.0.1:{port}/login{query}", "Log in")
            assert found == [], (query, found)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/login")
        assert page.get_by_label("User name").count() == 1 and page.get_by_label("Password").count() == 1
        page.close()
    finally:
        context.close()


def test_share_mode_refuses_a_wrong_password_and_admits_the_right_one(browser, share_server):
    lines, port = share_server["lines"], share_server["port"]
    deadline = time.time() + 150
    while not any(line.startswith("Study explorer: ") for line in lines) and time.time() < deadline:
        assert share_server["proc"].poll() is None, "".join(lines)
        time.sleep(0.3)
    # make serve prints each dashboard's URL on its own line.
    assert f"Study explorer: http://127.0.0.1:{port}/explorer\n" in lines, lines
    assert f"Dose-titration monitor: http://127.0.0.1:{port}/titration\n" in lines, lines
    _wait_http(f"http://127.0.0.1:{port}/login")
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"http://127.0.0.1:{port}/explorer")
        page.wait_for_url("**/login**")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "wrong-password")
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_url("**error=**")
        assert page.locator("input[name=password]").count() == 1
        page.goto(f"http://127.0.0.1:{port}/explorer")
        assert "/login" in page.url  # still locked out
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", "correct-horse-battery")
        page.click("button[type=submit], input[type=submit]")
        page.get_by_text("alpha suppression below").first.wait_for(timeout=60_000)
        assert page.url.rstrip("/").endswith("/explorer")
        page.get_by_role("link", name="Open the interactive explorer").click()  # the same login holds there
        page.wait_for_url("**/explorer/interactive?**")
        page.get_by_text("alpha suppression below").first.wait_for(timeout=60_000)
    finally:
        context.close()


def test_static_export_is_self_contained(tmp_path, default_study):
    from pipelines.dashboards import export_static
    from pipelines.make.reporting import external_resources

    paths = export_static(MANIFEST, tmp_path)
    assert [p.name for p in paths] == ["eeg_by_subject.html", "dose_response.html", "titration_onsets.html"]
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert '<script src="http' not in text and "cdn.holoviz.org" not in text, path.name
        assert external_resources(text) == [], path.name
        assert "sub-01" in text and "Bokeh" in text
