"""Security of the dashboards (issue 16): link values validated and escaped, errors without tracebacks, a
throttled self-contained login, and no accidental exposure.  Logic first (no server), then a real server on
127.0.0.1 in sharing mode, probed with HTTP requests and headless Chromium.

Browser tests skip only when chromium is missing on a developer machine; under CI (CI=true) that fails.
"""

from __future__ import annotations

import html
import http.client
import logging
import re
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

from tests.conftest import DEFAULT_MANIFEST, REPO, in_ci

MANIFEST = str(DEFAULT_MANIFEST)
SECRET = "s" * 48
USERS = {"alice": "alice-pw-123", "bob": "bob-pw-456", "carol": "carol-pw-789", "dora": "dora-pw-000"}

# Each payload, if it ran, would set window.__kwPwned (and call alert).
SCRIPT = "<script>window.__kwPwned=1;alert(1)</script>"
IMG = '<img src=x onerror="window.__kwPwned=1;alert(1)">'
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
    valid, rejected = safety.validate_query(
        {"subject": "sub-01", "dose": "x" * 5000, "other": IMG}, {"subject": subject, "dose": dose}
    )
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
    location = _FakeLocation(
        "?" + urllib.parse.urlencode({"subject": SCRIPT, "dose": "abc", "measure": IMG, "time_s": "1e9"})
    )
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
    assert app.summary_markdown().startswith(
        "**sub-05** at **0\\.25 mg/kg**"
    )  # each value escaped as if it began a line


def test_first_view_reads_only_the_study_values_and_escapes_everything(explorer_cls):
    from pipelines.dashboards import overview
    from pipelines.dashboards.selection import Choices

    choices = Choices(MANIFEST)
    selection, rejected = choices.read({"subject": SCRIPT, "dose": "0.5", "measure": IMG, "time_s": "1e9"})
    assert rejected == ["subject", "measure", "time_s"]
    assert selection == {**choices.defaults(), "dose": 0.5}
    url = overview.self_url(selection, rejected)
    assert "<" not in urllib.parse.unquote(url) and url.endswith("ignored=subject%2Cmeasure%2Ctime_s")
    assert overview._ignored_fields(f"subject,{SCRIPT},dose") == ["subject", "dose"]  # names only, never a value
    text = overview.page(MANIFEST, None, selection, ["subject", "measure"], choices)
    assert "Ignored an unknown value in the link for: subject, measure." in text
    assert "<script" not in text.lower() and "onerror" not in text and "javascript:" not in text
    assert f"<strong>{choices.subjects[0]}</strong> at <strong>0.50 mg/kg</strong>" in text
    assert len(re.findall(r"<option ", text)) == len(choices.subjects) + len(choices.conditions.options) + len(
        choices.measures
    )
    link = re.search(r'href="(explorer/interactive\?[^"]+)"', text).group(1)
    assert dict(urllib.parse.parse_qsl(html.unescape(link).split("?", 1)[1]))["dose"] == "0.5"


def test_first_view_checks_the_study_inputs_before_reading_any_cache(explorer_cls, monkeypatch):
    """A rebuilt study is what the next visitor of /explorer sees: the freshness check (which drops stale caches)
    comes before the options and the page are read from them; a rejected value is a redirect, never a page."""
    from pipelines.dashboards import data, overview

    calls: list[str] = []
    for name in ("ensure_fresh", "recordings", "eeg_settings"):
        original = getattr(data, name)
        monkeypatch.setattr(data, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    status, text = overview.respond(MANIFEST, None, {"subject": "sub-02", overview.IGNORED: "dose"})
    assert status == 200 and "<strong>sub-02</strong>" in text and "link for: dose." in text
    assert calls[0] == "ensure_fresh" and calls.count("ensure_fresh") == 1, calls
    calls.clear()
    status, url = overview.respond(MANIFEST, None, {"subject": SCRIPT})
    assert (status, calls[0]) == (303, "ensure_fresh") and url.startswith("explorer?subject=sub-01&")
    assert url.endswith("ignored=subject")


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


def test_throttle_backs_off_exponentially_then_locks_out():
    from pipelines.dashboards import login

    now = [1000.0]
    throttle = login.LoginThrottle(clock=lambda: now[0])
    keys = [("user", "alice"), ("ip", "10.0.0.1")]
    for _ in range(login.FREE_FAILURES):
        assert throttle.check(keys).allowed
        throttle.failure(keys)
    waits = []
    for _ in range(login.LOCKOUT_FAILURES - login.FREE_FAILURES - 1):
        verdict = throttle.check(keys)
        assert not verdict.allowed and not verdict.locked
        waits.append(verdict.retry_after_s)
        now[0] += verdict.retry_after_s  # a patient guesser waits out each back-off ...
        assert throttle.check(keys).allowed
        throttle.failure(keys)  # ... and is wrong again
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert throttle.backoff_s(40) == login.BACKOFF_MAX_S
    now[0] += 60
    throttle.failure(keys)  # failure number LOCKOUT_FAILURES
    verdict = throttle.check(keys)
    assert verdict.locked and verdict.retry_after_s == pytest.approx(login.LOCKOUT_S)
    throttle.failure(keys)  # attempts while locked do not extend the lockout
    now[0] += login.LOCKOUT_S - 1
    assert throttle.check(keys).locked
    assert throttle.check([("user", "bob"), ("ip", "10.0.0.2")]).allowed  # other user, other address
    assert throttle.check([("user", "bob"), ("ip", "10.0.0.1")]).locked  # the address is locked too
    now[0] += 2
    assert throttle.check(keys).allowed
    throttle.failure(keys)  # a fresh start after the lockout: one failure, no back-off
    assert throttle.check(keys).allowed
    throttle.success(keys)
    assert throttle._records == {}


def test_throttle_memory_is_bounded():
    from pipelines.dashboards import login

    throttle = login.LoginThrottle(max_keys=50, clock=lambda: 0.0)
    for i in range(500):
        throttle.failure([("user", f"guess-{i}")])
    assert len(throttle._records) <= 51


def test_password_check_is_constant_time(monkeypatch):
    import hmac

    from pipelines.dashboards import login

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(login.hmac, "compare_digest", lambda a, b: calls.append((len(a), len(b))) or real(a, b))
    assert login.password_matches(USERS, "alice", USERS["alice"])
    assert not login.password_matches(USERS, "alice", USERS["alice"] + "x")
    assert not login.password_matches(USERS, "nobody", "")
    assert calls == [(32, 32)] * 3  # digests of equal length whatever the password or user


def test_login_page_is_self_contained_and_escapes_its_message():
    from pipelines.dashboards import login

    page = login.login_page("./login", "<b>hi</b>")
    assert "<b>hi</b>" not in page and "&lt;b&gt;hi&lt;/b&gt;" in page
    assert not re.search(r"(https?:)?//", page.replace("<!DOCTYPE html>", "")), "no URL to any host"
    assert not re.search(r"<(script|img|link rel=\"stylesheet\")", page)


def test_exposure_rules_and_printed_urls():
    from pipelines.dashboards import serve

    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert serve.check_exposure(host, share=False, insecure_no_login=False) is None
    for host in ("0.0.0.0", "::", "192.168.1.20", "dash.example.org"):
        with pytest.raises(serve.ServeError, match="--share"):
            serve.check_exposure(host, share=False, insecure_no_login=False)
        assert serve.check_exposure(host, share=True, insecure_no_login=False) is None
        assert "WITHOUT A LOGIN" in serve.check_exposure(host, share=False, insecure_no_login=True)
    assert serve.app_urls("0.0.0.0", 5006)["explorer"] == "http://0.0.0.0:5006/explorer"
    assert serve.app_urls("::1", 80, "/kw/", "https")["titration"] == "https://[::1]:80/kw/titration"


def _run_serve(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "pipelines.dashboards.serve", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_refusals_are_one_line_with_exit_code_2(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = _run_serve("--port", str(port), "--manifest", MANIFEST)
        assert time.monotonic() - started < 60  # refused before the data are loaded
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and f"port {port}" in result.stderr and "in use" in result.stderr
    result = _run_serve("--manifest", str(tmp_path / "missing.yml"))
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "missing.yml: no such manifest" in result.stderr and "Traceback" not in result.stderr
    result = _run_serve("--host", "0.0.0.0", "--manifest", MANIFEST)
    assert result.returncode == 2 and "--share" in result.stderr and "Traceback" not in result.stderr


# --- a real server on 127.0.0.1 in sharing mode ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, method: str, path: str, fields: dict | None = None, headers: dict | None = None):
    """(status, headers, body) of one request, redirects not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = urllib.parse.urlencode(fields) if fields is not None else None
        all_headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        all_headers.update(headers or {})
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.msg, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _login(port: int, user: str, password: str, address: str, **headers):
    return _request(port, "POST", "/login", {"username": user, "password": password}, {"X-Real-IP": address, **headers})


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory, default_study):
    """Both apps (as serve.py builds them) plus one app that always fails, in sharing mode, in-process on
    127.0.0.1.  --use-xheaders lets the throttle tests pose as different client addresses (X-Real-IP)."""
    import panel as pn

    from pipelines.dashboards import data, overview, safety, serve

    folder = tmp_path_factory.mktemp("secure")
    users = folder / "users.txt"
    users.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
    users.chmod(0o600)
    data.setup_extension()
    data.warm(MANIFEST)
    port = _free_port()
    apps, options = serve.server_options(
        MANIFEST,
        "127.0.0.1",
        port,
        share=True,
        users_file=users,
        use_xheaders=True,
        environ={"KW_COOKIE_SECRET": SECRET},
    )

    def broken():
        raise RuntimeError(f"internal detail {REPO}")

    apps["broken"] = safety.guarded(broken, "broken")
    # The first view of a study whose manifest is gone: its page fails on the server.
    options["extra_patterns"].append((r"/broken-first-view", overview.handler(str(folder / "missing.yml"), None)))
    # Deliberately unescaped: proves the browser checks below would see a payload that runs.
    apps["canary"] = lambda: pn.pane.Markdown(f"unescaped {IMG}")
    options["title"].update(broken="broken", canary="canary")
    thread = pn.serve(apps, threaded=True, **options)
    deadline = time.time() + 60
    while True:
        try:
            if _request(port, "GET", "/login")[0] == 200:
                break
        except OSError:
            assert time.time() < deadline, "the sharing-mode server did not answer within 60 s"
            time.sleep(0.2)
    yield {"port": port, "base": f"http://127.0.0.1:{port}", "throttle": options["auth_provider"].throttle}
    thread.stop()


def test_served_login_page_has_no_external_url(secure_server):
    status, headers, body = _request(secure_server["port"], "GET", "/login?next=%2Fexplorer")
    assert status == 200 and 'name="password"' in body
    urls = re.findall(r"(?:https?:)?//([^/\"'\s)>]+)", body)
    assert all(host.split(":")[0] in ("127.0.0.1", "localhost") for host in urls), urls
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # A message can only be one of the fixed ones: the URL's text is never echoed.
    _, _, body = _request(secure_server["port"], "GET", "/login?error=" + urllib.parse.quote(IMG))
    assert "onerror" not in body and "<img" not in body
    status, headers, body = _request(secure_server["port"], "GET", "/logout")
    assert status == 200 and "Log in again" in body and not re.search(r"(https?:)?//", body.split("\n", 1)[1])
    assert "default-src 'none'" in headers["Content-Security-Policy"]


def test_wrong_passwords_back_off_then_lock_out_even_the_right_password(secure_server):
    port, address = secure_server["port"], "10.0.0.1"
    results = []
    started = time.monotonic()
    for attempt in range(15):  # bounded, as fast as the server answers
        status, headers, body = _login(port, "alice", f"guess-{attempt}", address)
        results.append((status, headers.get("Retry-After"), headers.get("Location"), body))
    elapsed = time.monotonic() - started
    statuses = [r[0] for r in results]
    assert statuses[:3] == [303] * 3 and all(r[2].endswith("/login?error=invalid") for r in results[:3])
    assert statuses[3:] == [429] * 12, statuses
    waits = [int(r[1]) for r in results[3:10]]
    assert waits[0] == 1 and waits == sorted(waits) and waits[-1] >= 32, waits  # 1, 2, 4, ... s
    assert all(int(r[1]) > 60 and "locked" in r[3] for r in results[10:])  # locked for minutes
    print(f"\n15 wrong logins took {elapsed:.2f} s; statuses {statuses}; Retry-After {[r[1] for r in results]}")
    # Locked: the right password from the same address, or for this user from elsewhere, is refused.
    status, headers, body = _login(port, "alice", USERS["alice"], address)
    assert status == 429 and "user" not in headers.get("Set-Cookie", "")
    assert _login(port, "alice", USERS["alice"], "10.0.0.2")[0] == 429  # the user name is locked
    assert _login(port, "bob", USERS["bob"], address)[0] == 429  # the address is locked
    status, headers, _ = _login(port, "bob", USERS["bob"], "10.0.0.3")  # bob elsewhere is not affected
    assert status == 302 and headers["Location"] == "/"


def test_back_off_passes_and_the_right_password_then_works_with_safe_cookies(secure_server):
    port, address = secure_server["port"], "10.0.0.4"
    for attempt in range(3):
        assert _login(port, "carol", f"typo-{attempt}", address)[0] == 303
    status, headers, _ = _login(port, "carol", USERS["carol"], address)  # too soon, even when right
    assert status == 429 and headers["Retry-After"] == "1"
    time.sleep(2.2)  # the refused attempt counted: the back-off is now 2 s
    status, headers, _ = _login(port, "carol", USERS["carol"], address)
    assert status == 302
    cookies = {c.split("=", 1)[0]: c for c in headers.get_all("Set-Cookie")}
    assert {"user", "id_token"} <= set(cookies)
    for name in ("user", "id_token"):
        flags = cookies[name].lower()
        assert "httponly" in flags and "samesite=lax" in flags and "secure" not in flags.replace("_secure", "")
    # Behind a TLS proxy (X-Forwarded-Proto: https with --use-xheaders) the cookies are Secure as well.
    status, headers, _ = _login(port, "carol", USERS["carol"], address, **{"X-Forwarded-Proto": "https"})
    assert status == 302
    assert all("; secure" in c.lower() for c in headers.get_all("Set-Cookie") if c.startswith(("user=", "id_token=")))


def test_with_a_certificate_the_server_speaks_https_and_cookies_are_secure(tmp_path, default_study):
    import shutil
    import ssl

    import panel as pn

    from pipelines.dashboards import serve

    openssl = shutil.which("openssl")
    if openssl is None:
        if in_ci():
            pytest.fail("openssl is missing (needed to make a test certificate)")
        pytest.skip("openssl is missing (needed to make a test certificate; never skipped in CI)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    users = tmp_path / "users.txt"
    users.write_text("erin:erin-pw-111\n")
    users.chmod(0o600)
    port = _free_port()
    apps, options = serve.server_options(
        MANIFEST,
        "127.0.0.1",
        port,
        share=True,
        users_file=users,
        ssl_certfile=cert,
        ssl_keyfile=key,
        environ={"KW_COOKIE_SECRET": SECRET},
    )
    thread = pn.serve(apps, threaded=True, **options)
    context = ssl._create_unverified_context()  # self-signed test certificate
    try:
        deadline = time.time() + 60
        while True:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
                conn.request(
                    "POST",
                    "/login",
                    body="username=erin&password=erin-pw-111",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                response = conn.getresponse()
                break
            except OSError:
                assert time.time() < deadline, "the TLS server did not answer within 60 s"
                time.sleep(0.2)
        assert response.status == 302
        cookies = [c for c in response.msg.get_all("Set-Cookie") if c.startswith(("user=", "id_token="))]
        assert len(cookies) == 2 and all("; secure" in c.lower() and "httponly" in c.lower() for c in cookies)
        conn.close()
    finally:
        thread.stop()


# --- in headless Chromium -------------------------------------------------------------------------------

# Runs before any page script: records alert() calls instead of showing them.
HOOK_ALERT = "window.__kwAlerts = []; window.alert = (m) => window.__kwAlerts.push(String(m));"

# Everything the page holds, shadow roots included (Panel renders into them).
INJECTED_ELEMENTS = """() => {
  const found = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      const tag = el.tagName.toLowerCase();
      if ((tag === 'img' && (el.getAttribute('src') === 'x' || el.hasAttribute('onerror'))) || tag === 'svg' && el.hasAttribute('onload')
          || (tag === 'script' && el.textContent.includes('__kwPwned'))
          || (tag === 'a' && (el.getAttribute('href') || '').startsWith('javascript:'))) found.push(el.outerHTML);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return found;
}"""


ALL_TEXT = """() => {
  let text = '';
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) { text += el.shadowRoot.innerHTML; walk(el.shadowRoot); }
    }
  };
  text += document.documentElement.outerHTML;
  walk(document);
  return text;
}"""


def _assert_nothing_ran(page):
    assert page.evaluate("window.__kwPwned") is None
    assert page.evaluate("window.__kwAlerts") == []
    assert page.evaluate(INJECTED_ELEMENTS) == []


@pytest.fixture(scope="module")
def logged_in(browser, secure_server):
    """A browser context logged in through the login page, recording every request it makes."""
    context = browser.new_context(viewport={"width": 1500, "height": 1200})
    context.add_init_script(HOOK_ALERT)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.goto(secure_server["base"] + "/explorer")
    page.wait_for_url("**/login**")
    page.wait_for_load_state("networkidle")
    login_requests = list(requests)
    page.fill("input[name=username]", "dora")
    page.fill("input[name=password]", USERS["dora"])
    page.click("button[type=submit]")
    page.get_by_text("alpha suppression below").first.wait_for(timeout=60_000)
    page.close()
    yield {"context": context, "requests": requests, "login_requests": login_requests}
    context.close()


def test_the_login_page_loads_nothing_from_other_hosts(logged_in, secure_server):
    hosts = {urllib.parse.urlsplit(url).hostname for url in logged_in["login_requests"]}
    assert hosts == {"127.0.0.1"}, logged_in["login_requests"]
    assert any("/login" in url for url in logged_in["login_requests"])


def test_the_payload_detector_sees_a_payload_that_runs(logged_in, secure_server):
    page = logged_in["context"].new_page()
    try:
        page.goto(secure_server["base"] + "/canary")
        page.get_by_text("unescaped").first.wait_for(timeout=30_000)
        page.wait_for_function("window.__kwPwned === 1", timeout=10_000)
        assert page.evaluate("window.__kwAlerts") == ["1"] and page.evaluate(INJECTED_ELEMENTS)
    finally:
        page.close()


EXPLORER_ATTACKS = [
    {"subject": SCRIPT},
    {"subject": IMG, "dose": SCRIPT},
    {"measure": IMG, "time_s": SVG, "subject": LINK},
    {"dose": IMG, "measure": SCRIPT},
]


@pytest.mark.parametrize("path", ["/explorer", "/explorer/interactive"])
@pytest.mark.parametrize("attack", EXPLORER_ATTACKS, ids=lambda a: "+".join(a))
def test_injected_link_values_do_not_run_in_the_explorer(logged_in, secure_server, attack, path):
    page = logged_in["context"].new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(secure_server["base"] + path + "?" + urllib.parse.urlencode(attack))
        page.get_by_text("alpha suppression below").first.wait_for(timeout=30_000)
        notice = page.locator(".kw-url-notice").get_by_text("Ignored an unknown value in the link").first
        notice.wait_for(state="visible", timeout=10_000)
        assert all(name in notice.inner_text() for name in attack), notice.inner_text()
        page.wait_for_timeout(500)  # time for an onerror / late script to fire
        _assert_nothing_ran(page)
        options = page.locator("select").first.locator("option").all_inner_texts()
        assert options == [f"sub-{i:02d}" for i in range(1, 13)], options  # unchanged: nothing added
        assert page.get_by_text("12 participants").count() == 1
        assert "<" not in urllib.parse.unquote(page.url)  # the link now shows the state actually shown
        assert not errors, errors
    finally:
        page.close()
    elsewhere = [
        url
        for url in logged_in["requests"]
        if not url.startswith("data:")  # blob: URLs are in-page
        and urllib.parse.urlsplit(url.removeprefix("blob:")).hostname != "127.0.0.1"
    ]
    assert not elsewhere, elsewhere


def test_url_encoded_and_raw_payloads_do_not_run_in_the_titration_monitor(logged_in, secure_server):
    page = logged_in["context"].new_page()
    try:
        # Raw (the browser encodes it) and double-encoded (decoded once by the server: still just text).
        raw = f"/titration?recording={IMG}&speed={SCRIPT}&playing={SVG}"
        double = "/titration?recording=" + urllib.parse.quote(urllib.parse.quote(SCRIPT)) + "&speed=abc"
        for path in (raw, double):
            page.goto(secure_server["base"] + path)
            page.get_by_text("0/240 windows").first.wait_for(timeout=30_000)
            notice = page.locator(".kw-url-notice").get_by_text("Ignored an unknown value in the link").first
            notice.wait_for(state="visible", timeout=10_000)
            assert "recording" in notice.inner_text() and "speed" in notice.inner_text()
            page.wait_for_timeout(500)
            _assert_nothing_ran(page)
            assert page.locator("select").first.locator("option").count() == 48  # 12 subjects x 4 doses, no more
    finally:
        page.close()


def test_a_failing_app_shows_no_traceback_to_a_logged_in_visitor(logged_in, secure_server):
    page = logged_in["context"].new_page()
    try:
        page.goto(secure_server["base"] + "/broken")
        message = page.get_by_text("could not be shown").first
        message.wait_for(timeout=30_000)
        assert re.search(r"reference [0-9a-f]{8}", message.inner_text())
        shown = page.evaluate(ALL_TEXT)
        assert "could not be shown" in shown  # ALL_TEXT sees into Panel's shadow roots
        for secret in ("Traceback", "RuntimeError", "internal detail", str(REPO)):
            assert secret not in shown, secret
    finally:
        page.close()


def test_the_first_view_needs_the_login_and_fails_without_a_traceback(logged_in, secure_server):
    port = secure_server["port"]
    for path in ("/explorer", "/explorer?subject=sub-02", "/explorer/interactive"):
        status, headers, _ = _request(port, "GET", path)
        assert status == 302 and "/login" in headers["Location"], (path, status)
    page = logged_in["context"].new_page()
    try:
        response = page.goto(secure_server["base"] + "/broken-first-view")
        assert response.status == 500
        message = page.get_by_text("could not be shown").first
        assert re.search(r"reference [0-9a-f]{8}", message.inner_text())
        shown = page.content()
        for secret in ("Traceback", "FileNotFoundError", "missing.yml", str(REPO)):
            assert secret not in shown, secret
        response = page.goto(secure_server["base"] + "/explorer")
        headers = response.headers
        assert "default-src 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
    finally:
        page.close()


# --- several server processes share one login throttle ------------------------------------------------------


def _fail_in_child(path: str, keys: list, n: int, lockout_failures: int) -> None:
    from pipelines.dashboards import login

    throttle = login.SharedLoginThrottle(path, lockout_failures=lockout_failures)
    for _ in range(n):
        throttle.failure([tuple(k) for k in keys])


def test_shared_throttle_counts_the_failures_of_every_process(tmp_path):
    """Two processes writing one SQLite store at once lose no failure, and the lockout they reach together
    holds for a third (in-memory throttles, one per process, would each have seen only their share)."""
    import multiprocessing

    from pipelines.dashboards import login

    path = tmp_path / "throttle.sqlite"
    parent = login.SharedLoginThrottle(path, fresh=True, lockout_failures=1000)
    keys = [("user", "alice"), ("ip", "10.0.0.1")]
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_fail_in_child, args=(str(path), keys, 40, 1000)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert parent.failure_count(keys[0]) == 80  # no update lost between the processes
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    # Each process contributes half of the failures that lock a name out; the lockout then holds everywhere.
    fresh = login.SharedLoginThrottle(path, fresh=True)
    assert fresh.check(keys).allowed and fresh.tracked() == 0
    half = login.LOCKOUT_FAILURES // 2
    workers = [
        ctx.Process(target=_fail_in_child, args=(str(path), keys, n, login.LOCKOUT_FAILURES))
        for n in (half, login.LOCKOUT_FAILURES - half)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    verdict = login.SharedLoginThrottle(path).check(keys)
    assert not verdict.allowed and verdict.locked and verdict.retry_after_s > login.LOCKOUT_S - 60
    fresh.success(keys)
    assert fresh.check(keys).allowed


def test_a_lockout_holds_in_every_process_of_a_multi_process_server(tmp_path, default_study):
    """serve --num-procs 2 --share: after the lockout, the right password is refused whichever worker process
    answers (the server log names the process of each refusal: both must have answered)."""
    import os
    import threading

    import psutil

    from pipelines.dashboards import login

    users = tmp_path / "users.txt"
    users.write_text("alice:alice-pw-123\n")
    users.chmod(0o600)
    port = _free_port()
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
            "--num-procs",
            "2",
            "--use-xheaders",
        ],
        cwd=REPO,
        env=dict(os.environ, KW_COOKIE_SECRET=SECRET),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log_lines: list[str] = []
    threading.Thread(target=lambda: log_lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    workers = []
    try:
        deadline = time.time() + 180
        while True:
            try:
                if _request(port, "GET", "/login")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, f"the server did not start: {log_lines[-5:]}"
            time.sleep(0.3)
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2, workers
        # Wrong passwords (then attempts during the back-off), each on a new connection, until locked out.
        for _ in range(login.LOCKOUT_FAILURES):
            _login(port, "alice", "wrong", "10.9.9.9")

        def refused_by() -> set[str]:
            return {
                m
                for line in list(log_lines)
                for m in re.findall(r"\[pid (\d+)\]: refused login for user 'alice'.*\(locked\)", line)
            }

        for attempt in range(300):  # the kernel hands each new connection to either worker
            status, _, body = _login(port, "alice", "alice-pw-123", f"10.8.{attempt // 250}.{attempt % 250}")
            assert status == 429 and "locked" in body, (attempt, status)
            if attempt >= 20 and len(refused_by()) >= 2:
                break
            if attempt % 20 == 19:
                time.sleep(0.3)  # let the log lines arrive
        assert refused_by() == {str(w.pid) for w in workers}, (refused_by(), workers)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, "worker processes outlived the server"
