"""Serve the study explorer (/explorer, interactive at /explorer/interactive) and the dose-titration monitors
(/titration, /live).

    python -m pipelines.dashboards.serve [--host 127.0.0.1] [--port 5006] [--manifest data_manifests/default.yml]
    python -m pipelines.dashboards.serve --share --users-file ~/.config/ketamine-workbench/users.txt
                                         [--allow-websocket-origin dash.example.org] [--prefix /kw] [--use-xheaders]
    KW_BLIND_SECRET=... python -m pipelines.dashboards.serve --blind [--unblind-key key.txt]

Binds 127.0.0.1 unless told otherwise and prints each dashboard's URL (with the address really bound) on
its own line.  Any other address serves every participant's data to the network, so it needs ``--share`` (a
login) — or the loudly named opt-out ``--insecure-no-login``, which prints a warning.

Sharing mode (``--share``) puts a login page in front of both apps (:mod:`pipelines.dashboards.login`:
throttled, constant-time, self-contained): the users file holds one ``user:password`` per line (``#``
comments allowed; keep it outside the repository, ``chmod 600``), and the secret that signs the login cookie
comes from the environment variable ``KW_COOKIE_SECRET`` — the server refuses to start in sharing mode
without both.  Behind a reverse proxy (nginx, see docs/dashboards.md) pass the public host name with
``--allow-websocket-origin`` and ``--use-xheaders``; or terminate TLS here with ``--ssl-certfile``/``--ssl-keyfile``.

Blinded mode (``--blind``, :mod:`pipelines.dashboards.blinding`) shows conditions as letters A, B, C … (a
permutation drawn from the secret in ``KW_BLIND_SECRET`` or ``--blind-secret-file``) and hides every dose and
session label; ``--unblind-key`` with the matching letter → dose table shows doses again.

Several processes (``--num-procs N``; default: one per usable core, at most ``MAX_DEFAULT_PROCS``) serve
the one port: the data are loaded once and then the server forks, so every process shares them; the
kernel hands each new connection to one of them.  A visitor's page is answered from a cached page shell
(Panel's ``reuse_sessions``), so the document is built once, in the process that the page's websocket
reaches.  The login throttle is then shared through an SQLite file under the study's build folder
(:class:`pipelines.dashboards.login.SharedLoginThrottle`), so a lockout holds in every process.

A refusal to start (busy port, missing manifest, missing secret, …) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import socket
import stat
import sys
from pathlib import Path

APPS = {
    "explorer": "Study explorer",
    "explorer/interactive": "Study explorer, interactive",
    "titration": "Dose-titration monitor",
    "live": "Live titration monitor (LSL stream)",
}
COOKIE_ENV = "KW_COOKIE_SECRET"
MIN_SECRET_LENGTH = 32
MAX_DEFAULT_PROCS = 4  # more processes than this need more memory than a lab's visitors need CPU


def default_num_procs() -> int:
    """One server process per core this process may run on, at most MAX_DEFAULT_PROCS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_DEFAULT_PROCS))


class ServeError(Exception):
    """A refusal to start, with the reason (printed, exit code 2)."""


def read_users(path) -> dict[str, str]:
    """``user:password`` lines (the password may contain ':'); blank lines and ``#`` comments are ignored."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ServeError(f"{path}: no such users file")
    users = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            raise ServeError(f"{path}:{number}: expected 'user:password'")
        users[user.strip()] = password
    if not users:
        raise ServeError(f"{path}: no users")
    return users


def share_settings(users_file, environ=os.environ) -> dict:
    """The users (``basic_auth``) and ``cookie_secret`` for sharing mode, or a ServeError saying what is missing."""
    if not users_file:
        raise ServeError("--share needs --users-file (one 'user:password' per line)")
    secret = environ.get(COOKIE_ENV, "")
    if not secret:
        raise ServeError(
            f"--share needs a cookie secret in the environment variable {COOKIE_ENV} "
            f"(e.g. export {COOKIE_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))'))"
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise ServeError(f"{COOKIE_ENV} is too short ({len(secret)} characters; use at least {MIN_SECRET_LENGTH})")
    users = read_users(users_file)
    mode = Path(users_file).expanduser().stat().st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"warning: {users_file} is readable by other users; chmod 600 it", file=sys.stderr)
    return {"basic_auth": users, "cookie_secret": secret}


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a public interface


def check_exposure(host: str, share: bool, insecure_no_login: bool) -> str | None:
    """ServeError when a non-loopback address would serve the data without a login; the warning to print
    when the opt-out was given."""
    if is_loopback(host) or share:
        return None
    where = "every network interface" if host in ("", "0.0.0.0", "::") else host
    if not insecure_no_login:
        raise ServeError(
            f"--host {host or '0.0.0.0'} would serve every participant's data on {where} without a "
            f"login; add --share (see docs/dashboards.md), or --insecure-no-login if you really mean it"
        )
    return (
        f"WARNING: --insecure-no-login: every participant's data is served WITHOUT A LOGIN to anyone who can "
        f"reach {where}"
    )


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(host: str, port: int) -> None:
    """ServeError now (before the data are loaded) when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Tornado binds
        try:
            s.bind((host or "0.0.0.0", port))
        except OSError as exc:
            raise ServeError(bind_problem(host, port, exc)) from None


def bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host or '0.0.0.0'} is already in use (another server?); pick another with --port, or --port 0 for any free one"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot bind {host}: not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"not allowed to bind port {port} (ports below 1024 need root); pick another with --port"
    return f"cannot bind {host or '0.0.0.0'}:{port}: {exc.strerror or exc}"


def app_urls(host: str, port: int, prefix: str = "", scheme: str = "http") -> dict[str, str]:
    """Each dashboard's URL at the address really bound (0.0.0.0 stays 0.0.0.0: it is not a local-only URL)."""
    shown = host or "0.0.0.0"
    shown = f"[{shown}]" if ":" in shown else shown
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    return {name: f"{scheme}://{shown}:{port}{prefix}/{name}" for name in APPS}


def check_manifest(manifest) -> None:
    from pipelines.dashboards import data

    path = Path(data.manifest_key(manifest))
    if not path.is_file():
        raise ServeError(f"{manifest or path}: no such manifest (see data_manifests/ for the studies)")


def blinding_for(manifest, blind: bool, secret_file=None, unblind_key=None, environ=os.environ):
    """The study's Blinding when serving blinded (None when not blinded, or unblinded by a matching key)."""
    from pipelines.dashboards import blinding

    if not blind:
        if unblind_key or secret_file:
            raise ServeError("--unblind-key and --blind-secret-file only make sense with --blind")
        return None
    try:
        secret = blinding.read_secret(secret_file, environ)
        if not secret:
            raise ServeError(
                f"--blind needs the blinding secret in the environment variable {blinding.SECRET_ENV} "
                "(or --blind-secret-file)"
            )
        mapping = blinding.for_study(manifest, secret)
    except blinding.BlindingError as exc:
        raise ServeError(str(exc)) from None
    if unblind_key:
        path = Path(unblind_key).expanduser()
        if not path.is_file():
            raise ServeError(f"{path}: no such unblinding key file")
        try:
            ok = mapping.matches_key(path.read_text(encoding="utf-8"))
        except blinding.BlindingError as exc:
            raise ServeError(str(exc)) from None
        if not ok:
            raise ServeError(f"{path}: this unblinding key does not match the blinding secret of this study")
        return None  # unblinded: doses are shown
    return mapping


def server_options(
    manifest=None,
    host: str = "127.0.0.1",
    port: int = 5006,
    share: bool = False,
    users_file=None,
    allow_websocket_origin=(),
    prefix: str = "",
    use_xheaders: bool = False,
    ssl_certfile=None,
    ssl_keyfile=None,
    environ=os.environ,
    throttle=None,
    blinding=None,
) -> tuple[dict, dict]:
    """(apps, keyword arguments) for ``pn.serve``: both apps behind the error guard, the login in sharing mode."""
    from pipelines.dashboards import data, explorer, live, login, overview, safety, titration

    key = data.manifest_key(manifest)
    options = {}
    if share:
        settings = share_settings(users_file, environ)
        # Our provider instead of pn.serve(basic_auth=...): throttled, constant-time, self-contained page.
        options["auth_provider"] = login.make_auth_provider(settings["basic_auth"], throttle)
        options["cookie_secret"] = settings["cookie_secret"]
    if ssl_certfile:
        options.update(ssl_certfile=str(ssl_certfile), ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None)
    origins = {f"localhost:{port}", f"127.0.0.1:{port}"}
    if host not in ("", "0.0.0.0", "::"):
        origins.add(f"{host}:{port}")
    origins.update(allow_websocket_origin or ())
    titles = {name: f"Ketamine workbench — {title}" for name, title in APPS.items()}
    # The explorer's first view is one plain page (pipelines.dashboards.overview); the Panel app is a link away.
    apps = {
        overview.INTERACTIVE: safety.guarded(
            lambda: explorer.app(key, blinding=blinding), titles[overview.INTERACTIVE]
        ),
        "titration": safety.guarded(lambda: titration.app(key, blinding=blinding), titles["titration"]),
        "live": safety.guarded(lambda: live.app(key, blinding=blinding), titles["live"]),
    }
    options["extra_patterns"] = [(r"/explorer", overview.handler(key, blinding))]
    options.update(
        port=port,
        address=host,
        websocket_origin=sorted(origins),
        show=False,
        title={name: titles[name] for name in apps},
        prefix=prefix or "",
        use_xheaders=use_xheaders,
        # A closed tab's session is destroyed (and its memory freed) 10 s after its websocket closed,
        # checked every 3 s (Bokeh: 15 s / 17 s); 10 s still covers a slow GET-to-websocket gap (several
        # processes: 2 s, see make_server).
        unused_session_lifetime_milliseconds=10_000,
        check_unused_sessions_milliseconds=3_000,
    )
    return apps, options


def make_server(
    manifest=None,
    host: str = "127.0.0.1",
    port: int = 5006,
    share: bool = False,
    users_file=None,
    allow_websocket_origin=(),
    prefix: str = "",
    use_xheaders: bool = False,
    warm: bool = True,
    environ=os.environ,
    ssl_certfile=None,
    ssl_keyfile=None,
    blind: bool = False,
    blind_secret_file=None,
    unblind_key=None,
    num_procs: int = 1,
):
    """A configured, not yet started Panel (Bokeh/Tornado) server with both apps; returns (server, urls).
    Raises ServeError (one line for the user) for every foreseeable refusal.

    With ``num_procs`` > 1 the process forks inside this call (after the data are loaded): each of the
    ``num_procs`` workers returns from it with its own server, the parent never returns (it waits for them,
    see :func:`_forked_workers`)."""
    import dask
    import panel as pn

    from pipelines.dashboards import data, login

    check_manifest(manifest)
    if ssl_certfile and not Path(ssl_certfile).is_file():
        raise ServeError(f"{ssl_certfile}: no such certificate file")
    if port:
        check_port(host, port)  # before the data are loaded: a busy port fails at once
    port = port or free_port(host)
    key = data.manifest_key(manifest)
    _check_applies(key)
    if num_procs < 1:
        raise ServeError(f"--num-procs must be at least 1 (got {num_procs})")
    mapping = blinding_for(key, blind, blind_secret_file, unblind_key, environ)
    throttle = None
    if share:
        from pipelines.core.paths import build_dir

        # One file per server (port), emptied at start: every worker process reads and counts the same failures.
        throttle = login.SharedLoginThrottle(
            build_dir(data.study(key).name) / "dashboards" / f"login-throttle-{port}.sqlite", fresh=True
        )
    apps, options = server_options(
        key,
        host,
        port,
        share,
        users_file,
        allow_websocket_origin,
        prefix,
        use_xheaders,
        ssl_certfile,
        ssl_keyfile,
        environ,
        throttle=throttle,
        blinding=mapping,
    )
    # The server reads small slices: no thread pool (a pool started before fork() would be dead in the workers).
    dask.config.set(scheduler="synchronous")
    # Bokeh checks every new document's models for layout mistakes (a developer's aid, ~12 % of the server's
    # time per visitor, profiled); the explorer's figures are fixed code, checked by the tests, which keep it on.
    from bokeh.settings import settings as bokeh_settings

    bokeh_settings.perform_document_validation.set_value(False)
    data.setup_extension()
    if warm:
        _warm(key)
    if num_procs > 1:
        _share_between_processes(options, num_procs)
    try:
        with _forked_workers(num_procs):
            server = pn.serve(apps, start=False, **options)
    except OSError as exc:  # the port was taken between the check and the bind
        raise ServeError(bind_problem(host, port, exc)) from None
    return server, app_urls(host, server.port, prefix, "https" if ssl_certfile else "http")


def _check_applies(key: str) -> None:
    """Refuse a study the dashboards do not serve (no EEG, or no window before the infusion) in one line."""
    from pipelines.dashboards import data

    reason = data.not_applicable(key)
    if reason:
        raise ServeError(
            f"the dashboards do not apply to study {data.study(key).name!r}: {reason}; its reports "
            "(make all, reports/index.html) show every analysis this design supports"
        )


def _warm(key: str) -> None:
    """Load every cached table before visitors come; a branch that cannot load is named on stderr."""
    from pipelines.dashboards import data

    problems = data.warm(key)
    for branch, problem in problems.items():
        if problem:
            print(f"note: {branch} view will be empty: {problem}", file=sys.stderr)


def _share_between_processes(options: dict, num_procs: int) -> None:
    """Serving options for ``num_procs`` > 1 processes on one port."""
    import panel as pn

    # The page shell comes from one cached session per process; the visitor's document is built where the
    # websocket lands (otherwise a GET and its websocket in two processes would each build it).
    pn.config.reuse_sessions = True
    options["num_procs"] = num_procs
    # A session then exists only once its websocket has connected: there is no page-to-websocket gap to
    # cover, and a closed tab's session goes 2-3 s after it closed.  (Closed sessions awaiting destruction
    # set the servers' memory high-water mark, which the allocator does not give back: at 10 s, a soak of
    # quick visits held ~100 of them at once and grew the servers by ~50 MB.)
    options.update(unused_session_lifetime_milliseconds=2_000, check_unused_sessions_milliseconds=1_000)


class _forked_workers:
    """Around the fork in ``pn.serve(num_procs=N)`` (tornado.process.fork_processes): workers die with the
    parent (PR_SET_PDEATHSIG), and a parent told to stop (SIGTERM, Ctrl+C) stops its workers and exits
    quietly instead of restarting them."""

    def __init__(self, num_procs: int):
        self.num_procs = num_procs

    def __enter__(self):
        if self.num_procs > 1:
            import signal

            self._parent = os.getpid()
            self._handlers = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _stop(self, signum, _frame):
        import signal

        if os.getpid() != self._parent:  # a worker got the signal before restoring its handlers
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        try:
            import psutil

            for child in psutil.Process().children():
                child.terminate()
        except Exception:
            pass
        os._exit(0)

    def __exit__(self, *exc):
        if self.num_procs > 1:  # only workers get here (the parent stays in fork_processes)
            import signal

            import tornado.netutil

            for sig, handler in self._handlers.items():
                signal.signal(sig, handler)
            _die_with_parent()
            # All workers wait on the one listening socket; Tornado accepts up to 128 waiting connections per
            # wake-up, so the first worker to wake took a whole burst of visitors and the others idled.  One at a
            # time: a worker busy building a document leaves the next connection to an idle one.
            tornado.netutil._DEFAULT_BACKLOG = 1  # read by the accept loop at each wake-up (not the listen backlog)
        return False


def _die_with_parent() -> None:
    """Linux: this process gets SIGTERM when the process that forked it exits (no orphaned workers)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.dashboards.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", default=None, help="study manifest (default: data_manifests/default.yml)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=5006, help="port (0: any free port)")
    parser.add_argument("--share", action="store_true", help=f"require a login (needs --users-file and ${COOKIE_ENV})")
    parser.add_argument("--users-file", default=None, help="'user:password' lines, kept outside the repository")
    parser.add_argument(
        "--allow-websocket-origin",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="public host a browser reaches the server through (reverse proxy); repeatable",
    )
    parser.add_argument("--prefix", default="", help="URL prefix when a proxy serves the apps under a sub-path")
    parser.add_argument("--use-xheaders", action="store_true", help="trust X-Forwarded-* headers (behind a proxy only)")
    parser.add_argument("--ssl-certfile", default=None, help="serve https with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", default=None, help="private key of --ssl-certfile (if not in it)")
    parser.add_argument(
        "--insecure-no-login",
        action="store_true",
        help="allow a non-loopback --host WITHOUT --share: anyone who can reach it sees every participant",
    )
    parser.add_argument(
        "--blind",
        action="store_true",
        help="dose-blinded: conditions shown as letters (needs $KW_BLIND_SECRET or --blind-secret-file)",
    )
    parser.add_argument(
        "--blind-secret-file", default=None, help="file holding the blinding secret (instead of the env)"
    )
    parser.add_argument(
        "--unblind-key", default=None, help="with --blind: the letter = dose table; if it matches, doses are shown"
    )
    parser.add_argument(
        "--num-procs",
        type=int,
        default=default_num_procs(),
        help=f"server processes sharing the port (default {default_num_procs()}: one per core, "
        f"at most {MAX_DEFAULT_PROCS}); 1 = a single process",
    )
    return parser


def _announce(args, urls: dict[str, str], warning: str | None) -> None:
    """What the first server process prints: the exposure warning, the real URLs, the mode."""
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if args.num_procs > 1:
        print(f"{args.num_procs} server processes", flush=True)
    for name, url in urls.items():
        print(f"{APPS[name]}: {url}", flush=True)
    if args.blind:
        print(
            "Blinded mode: conditions are shown as letters"
            if not args.unblind_key
            else "Unblinded with a matching key: doses are shown",
            flush=True,
        )
    if args.share:
        print("Sharing mode: log in at " + urls["explorer"].rsplit("/", 1)[0] + "/login", flush=True)
    print("Press Ctrl+C to stop.", flush=True)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    _log_to_stderr()
    try:
        warning = check_exposure(args.host, args.share, args.insecure_no_login)
        server, urls = make_server(
            args.manifest,
            args.host,
            args.port,
            args.share,
            args.users_file,
            args.allow_websocket_origin,
            args.prefix,
            args.use_xheaders,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            blind=args.blind,
            blind_secret_file=args.blind_secret_file,
            unblind_key=args.unblind_key,
            num_procs=args.num_procs,
        )
    except ServeError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # e.g. the study's derived data are not built (make all)
        print(
            f"refusing to start: {exc.filename or exc}: not found (has `make all` built this study?)", file=sys.stderr
        )
        return 2
    from tornado.process import task_id

    if task_id() in (None, 0):  # other workers of the same server stay quiet: the first one prints
        _announce(args, urls, warning)
    return _run(server)


def _run(server) -> int:
    server.start()
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _log_to_stderr() -> None:
    # Tracebacks of failed sessions and login warnings go to the server's stderr (never to the visitor).
    logger = logging.getLogger("pipelines.dashboards")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [pid %(process)d]: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


if __name__ == "__main__":
    sys.exit(main())
