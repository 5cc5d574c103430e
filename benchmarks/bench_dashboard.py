"""Load test of the study explorer: 20 concurrent visitors on 127.0.0.1, and a soak of 500 visits.

``run(quick=False)`` starts ``python -m pipelines.dashboards.serve`` as ``make serve`` does (its default number of
server processes for this machine, ``--num-procs``; the server loads the data before it prints its URLs), then,
for each of the explorer's two pages, opens a few warm-up visits (so that every worker process has served one)
and 20 visits at once:

* ``dashboard_20_sessions`` (the target): the explorer's first view, ``/explorer`` — one plain HTML page with
  the summary, the selectors and both time courses as SVG (:mod:`pipelines.dashboards.overview`);
* ``dashboard_20_sessions_interactive`` (reported, no target): the Panel app at ``/explorer/interactive``, one
  link away, which a visitor opens for hover, the topomap, the dose-response and the other views.

What is timed, per visitor (``p95_s``): **from the visitor's request until the page is drawn in their
browser**, in two measured parts:

* *server delivery*, under the 20-visitor load: the HTTP GET of the whole first view; for the interactive page,
  the GET of its page, then a websocket connection that pulls the whole Bokeh document (the Bokeh protocol
  spoken directly from one asyncio loop, so 20 clients cost next to nothing on a 2-core machine; the server
  builds every model of the first tab for it);
* *drawing in the browser*: headless Chromium (Playwright, ``/usr/bin/chromium``) opens the page three times
  with the server otherwise idle; the time from navigation until it is drawn (first view: the summary and both
  pictures in the document at an animation frame; interactive: the document idle in BokehJS, every view
  rendered, the summary shown) minus the server delivery of one visit timed alone just before.  A visitor's
  browser draws on the visitor's own machine, so this part does not grow with the number of visitors; it is
  measured once and added to each visitor's delivery time.

``p95_s`` = 95th percentile over the 20 visitors of (delivery + drawing); ``delivery_p95_s`` and
``browser_draw_s`` give the parts.  Without Chromium the drawing part is missing: the row says so
(``browser_draw_s`` null) and ``p95_s`` is the delivery only.  Memory per session is the growth of the resident
memory of every server process while the 20 visits are open, divided by 20.
``server_cpu_s_per_session`` is the CPU time of every server process during the burst divided by the visitors:
it depends far less on the machine's load than the times do (on a busy machine it still grows, by up to ~2x:
shared caches, lower clock), and ``cpu_bound_delivery_s`` (that CPU time over min(cores, server processes)) is
about the least time the burst's last visitor takes to arrive, even on an otherwise idle machine.

Then the soak (row ``dashboard_soak_500``), on the interactive page (the first view keeps nothing per visitor):
500 sessions opened and closed one after another (50 with
``quick``) against the same server.  The resident memory of all server processes together is read after 25
warm-up open/close sessions and again after the 500, each time once the server has destroyed the closed
sessions (10 s after a session's websocket closes, checked every 3 s: the benchmark waits 30 s);
``rss_growth_mb`` is the difference.  A server that kept anything per session would grow by that much times 500.

Every row records the machine's load average and CPU pressure (PSI) just before and after its measurement:
on a shared 2-core machine other work inflates the times.

Bounded: 20 sessions (5 with ``quick``), a 240 s deadline for the concurrent test and 900 s for the soak, and
the server is stopped at the end whatever happens.  ``python benchmarks/bench_dashboard.py [--quick]`` prints the
rows as JSON; ``KW_BENCH_SERVE_FLAGS="--num-procs 1"`` passes flags to the server (recorded in the row).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 240.0
SOAK_DEADLINE_S = 900.0
CLEANUP_WAIT_S = 30.0  # serve.py: a closed session is destroyed after 10 s, checked every 3 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FIRST_VIEW = "/explorer"  # the plain first view (pipelines.dashboards.overview): one HTML page, no websocket
INTERACTIVE = "/explorer/interactive"  # the Panel app: a page shell, then the Bokeh document over a websocket


async def _session(base: str, path: str = FIRST_VIEW) -> dict:
    """What a browser fetches before it can draw ``path``: the first view is one GET of the whole page; the
    interactive explorer is a GET of its page, then its whole document pulled over the websocket.

    Speaks the Bokeh protocol directly (ACK, then PULL-DOC-REQ -> PULL-DOC-REPLY) and does not decode the
    reply, so the client costs nothing next to the server on a 2-core machine.  The websocket stays open
    (returned) so that the session lives while memory is measured."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.websocket import websocket_connect

    t0 = time.perf_counter()
    response = await AsyncHTTPClient().fetch(f"{base}{path}", request_timeout=DEADLINE_S, connect_timeout=DEADLINE_S)
    html = response.body.decode("utf-8")
    t_get = time.perf_counter() - t0
    if path == FIRST_VIEW:
        assert "alpha suppression" in html and "<svg" in html, html[:500]
        return {"get_s": t_get, "total_s": t_get, "ws": None, "doc_bytes": len(html), "html_bytes": len(html)}
    token = re.search(r'"token"\s*:\s*"([^"]+)"', html).group(1)
    ws = await websocket_connect(
        f"{base.replace('http', 'ws', 1)}{path}/ws", subprotocols=["bokeh", token], max_message_size=1 << 30
    )

    async def read_message():
        header = json.loads(await ws.read_message())
        frames = [await ws.read_message(), await ws.read_message()]  # metadata, content
        for _ in range(2 * int(header.get("num_buffers", 0))):  # buffer header + payload
            frames.append(await ws.read_message())
        return header, sum(len(f) for f in frames)

    header, _ = await read_message()
    assert header["msgtype"] == "ACK", header
    for frame in (json.dumps({"msgid": "pull-1", "msgtype": "PULL-DOC-REQ"}), "{}", "{}"):
        await ws.write_message(frame)
    while True:
        header, size = await read_message()
        if header["msgtype"] == "PULL-DOC-REPLY":
            break
    total = time.perf_counter() - t0
    return {"get_s": t_get, "total_s": total, "ws": ws, "doc_bytes": size, "html_bytes": len(html)}


def _close(sessions) -> None:
    for s in sessions:
        if s["ws"] is not None:
            s["ws"].close()


async def _sessions(base: str, n: int, timeout: float, path: str = FIRST_VIEW) -> tuple[list[dict], list[str]]:
    import asyncio

    from tornado.httpclient import AsyncHTTPClient

    # Tornado's client queues requests beyond 10 at once (and times queued ones out): allow all n together.
    AsyncHTTPClient.configure(None, max_clients=max(n, 10))
    tasks = [asyncio.ensure_future(_session(base, path)) for _ in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    ok = [t.result() for t in done if t.exception() is None]
    errors = [repr(t.exception()) for t in done if t.exception() is not None] + ["timeout"] * len(pending)
    return ok, errors


async def _soak(base: str, n: int, deadline: float) -> tuple[int, list[str]]:
    """Open and close ``n`` sessions one after another (each fully loaded before it is closed)."""
    import asyncio

    done, errors = 0, []
    for _ in range(n):
        if time.time() > deadline:
            errors.append("deadline")
            break
        try:
            s = await asyncio.wait_for(_session(base, INTERACTIVE), timeout=60)
            s["ws"].close()
            done += 1
        except Exception as exc:
            errors.append(repr(exc))
    return done, errors


def _settled_processes(server, settle_s: float = 1.0, timeout_s: float = 15.0) -> int:
    """Number of server processes once the server has forked all of them.  The first worker prints the URLs as
    soon as it is ready, possibly before the parent has forked the others: counting at once sometimes saw 1
    of 2 (fewer warm-up visits, a wrong ``cpu_bound_delivery_s``)."""
    count, since, deadline = -1, time.time(), time.time() + timeout_s
    while time.time() < deadline:
        now = max(1, len(server.children()))
        if now != count:
            count, since = now, time.time()
        elif time.time() - since >= settle_s:
            break
        time.sleep(0.1)
    return count


def _server_cpu_s(server) -> float:
    """CPU seconds (user + system) used so far by the server and its worker processes."""
    import psutil

    total = 0.0
    for p in [server, *server.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _server_rss(server) -> int:
    """Resident memory of the server and its worker processes (bytes)."""
    import psutil

    total = 0
    for p in [server, *server.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


CHROMIUM = "/usr/bin/chromium"
# BokehJS has drawn every view of the page (Document.is_idle) and the explorer's summary is on screen.
DRAWN = """() => {
  const docs = (window.Bokeh && window.Bokeh.documents) || [];
  if (!docs.length || !docs.every(d => d.is_idle)) return false;
  const shown = (root) => [...root.querySelectorAll('*')].some(
    e => e.shadowRoot && (e.shadowRoot.textContent.includes('alpha suppression') || shown(e.shadowRoot)));
  return shown(document);  // Panel draws inside nested shadow roots
}"""


def _browser_visits(base: str, path: str = FIRST_VIEW, n: int = 3) -> list[float] | None:
    """Seconds from navigation until ``path`` is drawn, for ``n`` visits in headless Chromium (one unmeasured
    visit first, which loads the static JavaScript into the browser's cache); None without Chromium."""
    if not Path(CHROMIUM).exists():
        return None
    from playwright.sync_api import sync_playwright

    drawn, polling = (FIRST_VIEW_DRAWN, "raf") if path == FIRST_VIEW else (DRAWN, 20)
    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(viewport={"width": 1500, "height": 1000})
            for i in range(n + 1):
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(f"{base}{path}", wait_until="commit")
                page.wait_for_function(drawn, timeout=120_000, polling=polling)
                if i:
                    times.append(time.perf_counter() - t0)
                page.close()
        finally:
            browser.close()
    return times


def _load(when: str) -> dict:
    """Load average (1/5/15 min) and CPU pressure (PSI some avg60, %) right now, keyed by ``when``."""
    from benchmarks._machine import cpu_pressure

    return {
        f"measured_load_avg_{when}": [round(x, 2) for x in os.getloadavg()],
        f"measured_cpu_pressure_{when}": cpu_pressure(),
    }


# The first view: the document parsed (its summary and both SVG time courses in it), checked in an animation
# frame (polling="raf"), i.e. when the browser is about to paint it.
FIRST_VIEW_DRAWN = """() => document.readyState !== 'loading' && !!document.getElementById('explorer-summary')
  && document.querySelectorAll('svg[role=img]').length === 2"""


def _percentile(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def run(quick: bool = False) -> list[dict]:
    import asyncio

    import psutil

    n_sessions = 5 if quick else 20
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.pop("KW_COOKIE_SECRET", None)
    flags = shlex.split(os.environ.get("KW_BENCH_SERVE_FLAGS", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.dashboards.serve", "--port", str(port), *flags],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    start = time.time()
    try:
        while not any("Press Ctrl+C" in line for line in lines):
            if proc.poll() is not None or time.time() - start > DEADLINE_S:
                raise RuntimeError(f"the dashboard server did not start: {''.join(lines)[-2000:]}")
            time.sleep(0.2)
        server = {
            "process": psutil.Process(proc.pid),
            "startup_s": time.time() - start,
            "flags": flags,
            "loop": asyncio.new_event_loop(),
        }
        server["n_procs"] = _settled_processes(server["process"])
        rows = []
        for path in (FIRST_VIEW, INTERACTIVE):
            rows.append(_burst_row(base, server, path, n_sessions, quick, start))
        rows.append(_soak_row(server["loop"], base, server["process"], 50 if quick else 500, start))
        return rows
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _burst_row(base: str, server: dict, path: str, n_sessions: int, quick: bool, start: float) -> dict:
    """``n_sessions`` visitors at once to ``path``: the row of what each waited until the page was drawn."""
    loop, process, n_procs = server["loop"], server["process"], server["n_procs"]
    # First-session costs (per worker process) are not per-session: enough warm-up visits to reach every worker.
    for _ in range(2):
        warm, _ = loop.run_until_complete(_sessions(base, 2 * n_procs, 120.0, path))
        _close(warm)
    time.sleep(1.0)
    alone, _ = loop.run_until_complete(_sessions(base, 1, 120.0, path))  # one session, idle server
    _close(alone)
    delivery_alone = alone[0]["total_s"] if alone else None
    visits = _browser_visits(base, path)
    browser_visit = _percentile(visits, 50) if visits else None
    draw = max(0.0, browser_visit - delivery_alone) if visits and delivery_alone is not None else None
    if path == INTERACTIVE:
        time.sleep(CLEANUP_WAIT_S)  # the browser's sessions are destroyed before memory is read
    rss_before = _server_rss(process)
    load_before = _load("before")
    cpu_before = _server_cpu_s(process)
    t0 = time.perf_counter()
    sessions, errors = loop.run_until_complete(
        _sessions(base, n_sessions, max(10.0, DEADLINE_S - (time.time() - start)), path)
    )
    wall = time.perf_counter() - t0
    cpu_s = _server_cpu_s(process) - cpu_before
    rss_after = _server_rss(process)
    load_after = _load("after")
    _close(sessions)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # A session that did not finish counts at the time it was given up on (never left out of p95).
    delivery = [s["total_s"] for s in sessions] + [wall] * len(errors)
    gets = [s["get_s"] for s in sessions]
    if not delivery:
        raise RuntimeError(f"no session completed: {errors[:3]}")
    seen = [d + (draw or 0.0) for d in delivery]  # until drawn in the visitor's browser
    p50, p95 = _percentile(seen, 50), _percentile(seen, 95)
    r3 = lambda v: None if v is None else round(v, 3)
    name = "dashboard_20_sessions" if not quick else "dashboard_5_sessions_quick"
    return {
        "benchmark": name if path == FIRST_VIEW else name + "_interactive",
        "page": path,
        "ours_s": round(p50, 3),
        "p50_s": round(p50, 3),
        "p95_s": round(p95, 3),
        "delivery_p50_s": r3(_percentile(delivery, 50)),
        "delivery_p95_s": r3(_percentile(delivery, 95)),
        "delivery_max_s": r3(max(delivery)),
        "browser_draw_s": r3(draw),
        "browser_visit_alone_s": r3(browser_visit),
        "browser_visits_s": [r3(v) for v in visits or []],
        "delivery_alone_s": r3(delivery_alone),
        "get_p50_s": round(_percentile(gets, 50), 3) if gets else None,
        "get_p95_s": round(_percentile(gets, 95), 3) if gets else None,
        "wall_s": round(wall, 3),
        "sessions_ok": len(sessions),
        "sessions_failed": len(errors),
        "server_processes": n_procs,
        "serve_flags": " ".join(server["flags"]),
        "server_cpu_s_per_session": round(cpu_s / max(len(sessions), 1), 3),
        "cores": cores,
        "cpu_bound_delivery_s": round(cpu_s / min(cores, n_procs), 3),
        "mb_per_session": round((rss_after - rss_before) / 1e6 / max(len(sessions), 1), 2),
        "server_rss_mb_before": round(rss_before / 1e6, 1),
        "server_rss_mb_after": round(rss_after / 1e6, 1),
        "server_startup_s": round(server["startup_s"], 2),
        "document_mb": round(sessions[0]["doc_bytes"] / 1e6, 2) if sessions else None,
        "baseline": "none",
        "baseline_s": None,
        "speedup": None,
        "notes": _burst_notes(path, n_sessions, server, draw, errors),
        **load_before,
        **load_after,
    }


def _burst_notes(path: str, n_sessions: int, server: dict, draw, errors: list[str]) -> str:
    what = (
        "HTTP GET of the whole first view (/explorer: summary, selectors and both time courses as SVG, no JavaScript)"
        if path == FIRST_VIEW
        else "HTTP GET of /explorer/interactive + websocket pull of the whole Bokeh document, raw Bokeh protocol"
    )
    return (
        f"{n_sessions} concurrent visitors of {path} on 127.0.0.1 against `python -m pipelines.dashboards.serve "
        f"{' '.join(server['flags'])}` ({server['n_procs']} server process(es), data loaded at start). Timed per "
        f"visitor: request until the page is drawn in the visitor's browser = server delivery under this load ({what}) "
        "+ the browser's drawing (headless Chromium, median of 3 visits to an idle server, minus one visitor's "
        "delivery alone; it happens on each visitor's own machine, so it is added, not loaded). "
        + ("No Chromium: browser drawing NOT included. " if draw is None else "")
        + "p50/p95 over the visitors; the load average and CPU pressure beside it are the whole machine's (other "
        "users' work included). mb_per_session = RSS growth of all server processes with every session open / "
        "sessions. server_cpu_s_per_session = CPU time (user + system) of all server processes during the burst / "
        "sessions; cpu_bound_delivery_s = that CPU time / min(cores, server processes): about the least time the "
        "burst's last visitor waits, even on an otherwise idle machine. " + (f"errors: {errors[:3]}" if errors else "")
    )


def _soak_row(loop, base: str, server, n: int, start: float) -> dict:
    warm, _ = loop.run_until_complete(_soak(base, 25, time.time() + 300))
    time.sleep(CLEANUP_WAIT_S)
    rss_before = _server_rss(server)
    load_before = _load("before")
    t0 = time.perf_counter()
    done, errors = loop.run_until_complete(_soak(base, n, time.time() + SOAK_DEADLINE_S))
    wall = time.perf_counter() - t0
    rss_peak = _server_rss(server)
    load_after = _load("after")
    time.sleep(CLEANUP_WAIT_S)
    rss_after = _server_rss(server)
    return {
        "benchmark": "dashboard_soak_500" if n == 500 else f"dashboard_soak_{n}_quick",
        "ours_s": round(wall / max(done, 1), 3),
        "rss_growth_mb": round((rss_after - rss_before) / 1e6, 1),
        "rss_before_mb": round(rss_before / 1e6, 1),
        "rss_end_of_soak_mb": round(rss_peak / 1e6, 1),
        "rss_after_cleanup_mb": round(rss_after / 1e6, 1),
        "sessions_ok": done,
        "sessions_failed": len(errors),
        "wall_s": round(wall, 1),
        "baseline": "none",
        "baseline_s": None,
        "speedup": None,
        **load_before,
        **load_after,
        "server_processes": max(1, len(server.children())),
        "notes": (
            f"{n} explorer sessions opened (GET + websocket pull of the whole document) and closed one after "
            f"another on one server; ours_s = mean time per session; rss_growth_mb = RSS of all server processes after the soak "
            f"minus RSS after {warm} warm-up sessions, each read {CLEANUP_WAIT_S:.0f} s after the last close "
            "(when Bokeh has destroyed the closed sessions). " + (f"errors: {errors[:3]}" if errors else "")
        ),
    }


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
