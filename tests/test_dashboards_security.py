"""Security of the dashboards (issue 16): link values validated and escaped, errors without tracebacks, a
throttled self-contained login, and no accidental exposure.  Logic first (no server), then a real server on
127.0.0.1 in sharing mode, probed with HTTP requests and headless Chromium.

Browser tests skip only when chromium is missing on a developer machine; under CI (CI=true) that fails.
"""

from __future__ import annotations

import html
import logging
import re
import urllib.parse

import pytest

from tests.conftest import DEFAULT_MANIFEST, REPO

MANIFEST = str(DEFAULT_MANIFEST)

# Each payload, if it ran, would set window.__kwPwned (and call alert).
SCRIPT = "<script>window.__kwPwned=1;alert(1)</script>"
IMG = "<img src=x onerror=\"window.__kwPwned=1;alert(1)\">"
SVG = "<svg onload=window.__kwPwned=1>"
LINK = "[x](javascript:window.__kwPwned=1)"
PAYLOADS = [SCRIPT, IMG, SVG, LINK]


def _shown_text(markdown: str) -> str:
    """The HTML Panel's Markdown pane sends to the browser for ``markdown`` (transport escaping undone)."""
    import panel as pn

    pane = pn.pane.Markdown(markdown)
    return html.unescape(pane._transform_object(pane.object)["object"])


# --- logic, no server ----------------------------------------------------------------------------------

def test_escaped_values_render_as_text_not_markup():
    from pipelines.dashboards.safety import escape_markdown

    for payload in PAYLOADS + ["a & b 'q' \"d\"", "sub-01", "$$x$$", "**bold** _it_ `code`", "&lt;", "\\*"]:
        rendered = _shown_text(f"**{escape_markdown(payload)}** at 1 mg/kg")
        assert not re.search(r"<(script|img|svg|a|code|em)\b", rendered), (payload, rendered)
        text = html.unescape(re.sub(r"<[^>]+>", "", rendered))
        assert payload in text, (payload, text)  # shown literally, character for character
    for block in ["- item", "12. item", "# heading", "> quote", "+ item"]:  # block syntax at a line start
        rendered = _shown_text(escape_markdown(block))
        assert not re.search(r"<(ul|ol|li|h1|blockquote)\b", rendered), (block, rendered)
        assert html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip() == block


def test_link_validators_accept_only_the_allowed_values():
    from pipelines.dashboards import safety

    subject = safety.one_of(["sub-01", "sub-02"])
    assert subject("sub-02") == "sub-02"
    for bad in ("sub-03", "SUB-01", " sub-01", IMG, ""):
        with pytest.raises(safety.Rejected):
            subject(bad)
    dose = safety.closest_number([0.0, 0.25, 1.0], labels={"1.0 mg/kg": 1.0})
    assert dose("0.25") == 0.25 and dose("1") == 1.0 and dose("1.0 mg/kg") == 1.0
    for bad in ("abc", "0.3", "nan", "inf", "1e999", SCRIPT):
        with pytest.raises(safety.Rejected):
            dose(bad)
    time_s = safety.number_in(-60, 60, grid=[-60, 0, 60])
    assert time_s("14") == 0 and time_s("59") == 60
    with pytest.raises(safety.Rejected):
        time_s("61")
    assert safety.boolean("TRUE") is True and safety.boolean("0") is False
    with pytest.raises(safety.Rejected):
        safety.boolean("maybe")
    valid, rejected = safety.validate_query({"subject": "sub-01", "dose": "x" * 5000, "other": IMG},
                                            {"subject": subject, "dose": dose})
    assert valid == {"subject": "sub-01"} and rejected == ["dose"]
    assert safety.notice_text(["dose", "subject"]) == "Ignored an unknown value in the link for: dose, subject."


def _FakeLocation(search: str):
    """What QuerySync needs of pn.state.location: a ``search`` parameter that can be watched."""
    import param

    class Location(param.Parameterized):
        search = param.String(default="")

    return Location(search=search)


@pytest.fixture(scope="module")
def explorer_cls(default_study):
    from pipelines.dashboards import data

    data.setup_extension()
    from pipelines.dashboards.explorer import ExplorerApp

    return ExplorerApp


def test_explorer_ignores_unknown_link_values_and_never_adds_options(explorer_cls):
    from pipelines.dashboards import safety

    app = explorer_cls(MANIFEST)
    subjects, doses = list(app.param.subject.objects), dict(app.param.dose.objects)
    measures = list(app.param.measure.objects)
    with pytest.raises(ValueError):
        app.subject = IMG  # the parameter itself refuses (param would otherwise add it as an option)
    location = _FakeLocation("?" + urllib.parse.urlencode(
        {"subject": SCRIPT, "dose": "abc", "measure": IMG, "time_s": "1e9"}))
    safety.QuerySync(app, app.url_fields(), app._show_rejected).start(location)
    assert app.notice.visible and app.notice.object == safety.notice_text(["subject", "dose", "measure", "time_s"])
    assert (app.param.subject.objects, app.param.dose.objects, app.param.measure.objects) == (subjects, doses, measures)
    assert app.subject == subjects[0] and len(subjects) == 12
    query = urllib.parse.parse_qs(location.search.lstrip("?"))
    assert query["subject"] == [subjects[0]] and "<" not in urllib.parse.unquote(location.search)  # link repaired
    # A valid link is applied; a later bad value (the browser's back button) changes nothing and is reported.
    location.search = "?subject=sub-05&dose=0.5&measure=perm_entropy&time_s=-60"
    times = list(app.settings["time_s"])
    nearest = min(times, key=lambda t: abs(t + 60))  # a time between windows snaps to the nearest window
    assert (app.subject, app.dose, app.measure, app.time_s) == ("sub-05", 0.5, "perm_entropy", nearest)
    assert not app.notice.visible
    location.search = "?subject=sub-99&dose=0.25"
    assert (app.subject, app.dose) == ("sub-05", 0.25) and app.notice.object.endswith("for: subject.")
    assert "sub-99" not in app.notice.object
    assert app.summary_markdown().startswith("**sub-05** at **0\\.25 mg/kg**")  # each value escaped as if it began a line


def test_titration_ignores_unknown_link_values(default_study):
    from pipelines.dashboards import safety
    from pipelines.dashboards.titration import TitrationApp

    app = TitrationApp(MANIFEST)
    options = dict(app.param.recording.objects)
    start = app.recording
    location = _FakeLocation("?" + urllib.parse.urlencode({"recording": IMG, "speed": "1e6", "playing": SCRIPT}))
    safety.QuerySync(app, app.url_fields(), app._show_rejected).start(location)
    assert app.param.recording.objects == options and app.recording == start and not app.playing
    assert app.notice.visible and "recording, speed, playing" in app.notice.object
    location.search = "?recording=sub-02_placebo&speed=25"
    assert (app.recording, app.speed) == ("sub-02_placebo", 25.0) and not app.notice.visible


def test_a_failing_session_shows_a_short_message_and_logs_the_traceback(caplog):
    from bokeh.document import Document
    from panel.io.state import set_curdoc

    from pipelines.dashboards import safety

    def broken():
        raise RuntimeError(f"secret detail from {REPO}")

    doc = Document()
    with caplog.at_level(logging.ERROR, logger="pipelines.dashboards"), set_curdoc(doc):
        safety.guarded(broken, "test")()
    shown = str([getattr(m, "text", "") or getattr(m, "object", "") for m in doc.roots[0].references()])
    assert "could not be shown" in shown and "reference" in shown
    assert "Traceback" not in shown and str(REPO) not in shown and "RuntimeError" not in shown
    assert "Traceback" in caplog.text and "secret detail" in caplog.text  # the server log keeps everything
