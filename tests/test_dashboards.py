"""The Panel dashboards: their logic without a browser, then the served apps in headless Chromium.

Browser tests use Debian's chromium (/usr/bin/chromium) through Playwright.  They skip only when chromium is
missing on a developer machine; under CI (CI=true) a missing browser is a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DEFAULT_MANIFEST, REPO, in_ci

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
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

def test_explorer_widgets_change_the_data_of_every_view(explorer_cls):
    app = explorer_cls(MANIFEST, subject="sub-01", dose=1.0)
    assert app.session == "ket100"
    alpha1, entropy1, topo1 = app.alpha_frame(), app.entropy_frame(), app.topo_frame()
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
    app.dose = 0.0  # placebo: no peak-experience ratings, alpha is flat
    assert app.profile_frame()["value"].isna().all()
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


def test_tapping_the_scatter_selects_the_subject(explorer_cls):
    app = explorer_cls(MANIFEST, subject="sub-01", dose=0.5)
    app.scatter_view()
    app._scatter()  # what rendering does: remembers the rows drawn
    rows, _, ylabel = app.scatter_frame()
    assert ylabel.startswith("MEQ30") and len(rows) == 12
    app._selection.event(index=[4])  # a tap in the browser arrives as this stream event
    assert app.subject == rows["participant_id"].iloc[4] != "sub-01"


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
    result = subprocess.run([sys.executable, "-m", "pipelines.dashboards.serve", "--share", "--users-file", str(users)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "KW_COOKIE_SECRET" in result.stderr
    assert serve.app_urls("127.0.0.1", 5006) == {"explorer": "http://127.0.0.1:5006/explorer",
                                                 "titration": "http://127.0.0.1:5006/titration"}


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
def browser():
    if not Path(CHROMIUM).exists():
        if in_ci():
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (browser tests must run in CI)")
        pytest.skip(f"{CHROMIUM} is missing (apt install chromium); browser tests need it (they never skip in CI)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def share_server(tmp_path_factory, default_study):
    """serve.py in sharing mode, as a user would start it (started early: it warms while other tests run)."""
    folder = tmp_path_factory.mktemp("share")
    users = folder / "users.txt"
    users.write_text("alice:correct-horse-battery\n")
    users.chmod(0o600)
    port = _free_port()
    env = dict(os.environ, KW_COOKIE_SECRET="t" * 48)
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.dashboards.serve", "--port", str(port), "--share",
                             "--users-file", str(users), "--manifest", MANIFEST],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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

    from pipelines.dashboards import data, explorer, titration

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

    thread = pn.serve({"explorer": make("explorer", explorer), "titration": make("titration", titration)}, port=port,
                      address="127.0.0.1", threaded=True, show=False,
                      websocket_origin=[f"127.0.0.1:{port}", f"localhost:{port}"])
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
  for (const doc of window.Bokeh.documents) {
    for (const model of doc.all_models) {
      if (model.type !== 'ColumnDataSource') continue;
      const entries = model.data instanceof Map ? [...model.data.entries()] : Object.entries(model.data);
      for (const [, column] of entries) {
        for (const v of column) {
          if (typeof v === 'number' && Number.isFinite(v)) { total += v * (1 + (count % 7)); count += 1; }
          else if (typeof v === 'string') { text += v[0] || ''; }
        }
      }
    }
  }
  return `${count}:${total.toFixed(6)}:${text.length}`;
}"""


def test_explorer_loads_without_errors_and_a_widget_updates_the_plots(browser, served):
    page, errors = _open(browser, served["base"] + "/explorer")
    try:
        page.get_by_text("alpha suppression below").first.wait_for(timeout=30_000)
        page.wait_for_timeout(500)
        before = page.evaluate(PLOT_DATA_DIGEST)
        assert int(before.split(":")[0]) > 1000, before  # the plots carry data
        page.locator("select").first.select_option("sub-05")
        page.get_by_text("sub-05 at").first.wait_for(timeout=30_000)
        deadline = time.time() + 30
        while page.evaluate(PLOT_DATA_DIGEST) == before and time.time() < deadline:
            page.wait_for_timeout(250)
        assert page.evaluate(PLOT_DATA_DIGEST) != before, "the plots did not change after selecting another subject"
        assert served["sessions"]["explorer"][-1].subject == "sub-05"
        page.screenshot(path=str(Path(os.environ.get("KW_SCREENSHOTS", "/tmp")) / "kw_explorer.png"), full_page=True)
        assert not errors, errors
    finally:
        page.close()


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
    finally:
        context.close()


def test_static_export_is_self_contained(tmp_path, default_study):
    from pipelines.dashboards import export_static
    from pipelines.reporting import external_resources

    paths = export_static(MANIFEST, tmp_path)
    assert [p.name for p in paths] == ["eeg_by_subject.html", "dose_response.html", "titration_onsets.html"]
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert '<script src="http' not in text and "cdn.holoviz.org" not in text, path.name
        assert external_resources(text) == [], path.name
        assert "sub-01" in text and "Bokeh" in text
