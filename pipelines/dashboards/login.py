"""The login of sharing mode (``serve --share``): Panel's basic-auth provider with a hardened login handler.

What it adds to ``panel.auth.BasicLoginHandler``:

* **Throttling** per user name *and* per client address (:class:`LoginThrottle`): the first
  ``FREE_FAILURES`` wrong passwords are answered at once; after that the next attempt is not even checked
  until an exponentially growing back-off has passed (``BACKOFF_BASE_S`` × 2ⁿ, at most ``BACKOFF_MAX_S``) —
  earlier attempts get ``429 Too Many Requests`` with ``Retry-After`` and count as failures; after
  ``LOCKOUT_FAILURES`` failures the user name / address is locked for ``LOCKOUT_S`` and every attempt,
  the right password included, gets 429.  A successful login clears the counters.
* **Constant-time** password comparison (:func:`hmac.compare_digest` of SHA-256 digests; unknown users are
  compared against a dummy so they take as long).
* **Cookies** ``user``/``id_token``/``next_url`` with ``HttpOnly`` and ``SameSite=Lax`` (Lax, not Strict:
  a dashboard link opened from e-mail still arrives logged in; cross-site POSTs never carry the cookie), and
  ``Secure`` whenever the request came over TLS (``--use-xheaders`` behind a proxy that sends
  ``X-Forwarded-Proto: https``, or ``--ssl-certfile``).
* A **self-contained** login/logout page: inline CSS, no images, fonts or scripts, no URL to any other host,
  a Content-Security-Policy that forbids loading anything, and fixed error messages (the page never echoes
  text from the URL).

Client addresses come from the connection, or from ``X-Real-IP``/``X-Forwarded-For`` only with
``--use-xheaders`` (Tornado ignores those headers otherwise, so a visitor cannot pick their own address).
A lockout by user name can be triggered by anyone who knows the name: that is the price of stopping
password guessing; the lockout ends by itself after ``LOCKOUT_S`` (or restart the server).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import math
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from pipelines.dashboards import safety

FREE_FAILURES = 3  # wrong passwords answered without back-off (typos happen)
BACKOFF_BASE_S = 1.0  # back-off after failure FREE_FAILURES + k is BACKOFF_BASE_S * 2**k ...
BACKOFF_MAX_S = 60.0  # ... but never longer than this
LOCKOUT_FAILURES = 10  # this many failures (wrong or refused attempts) lock the user name / client address ...
LOCKOUT_S = 15 * 60.0  # ... for this long
TRACKED_KEYS_MAX = 10_000  # user names / addresses remembered at most (oldest forgotten first)

log = logging.getLogger("pipelines.dashboards.login")


@dataclass
class _Record:
    failures: int = 0
    not_before: float = 0.0  # no attempt is checked before this (back-off)
    locked_until: float = 0.0
    last_seen: float = 0.0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    locked: bool = False
    retry_after_s: float = 0.0


class LoginThrottle:
    """Failure counts, back-off and lockout per key (``("user", name)``, ``("ip", address)``); thread-safe.

    Kept in this process's memory: right for one server process.  Several processes serving one port
    (``serve --num-procs``) must share one :class:`SharedLoginThrottle`, or each would grant its own
    allowance of guesses."""

    def __init__(
        self,
        free_failures: int = FREE_FAILURES,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        lockout_failures: int = LOCKOUT_FAILURES,
        lockout_s: float = LOCKOUT_S,
        max_keys: int = TRACKED_KEYS_MAX,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free_failures, self.backoff_base_s, self.backoff_max_s = free_failures, backoff_base_s, backoff_max_s
        self.lockout_failures, self.lockout_s, self.max_keys = lockout_failures, lockout_s, max_keys
        self.clock = clock
        self._records: OrderedDict[tuple, _Record] = OrderedDict()
        self._lock = threading.Lock()

    def backoff_s(self, failures: int) -> float:
        """Wait required after ``failures`` failures (0 while failures <= FREE_FAILURES - 1)."""
        extra = failures - self.free_failures
        if extra < 0:
            return 0.0
        return min(self.backoff_max_s, self.backoff_base_s * 2.0 ** min(extra, 60))

    def check(self, keys: Iterable[tuple]) -> Verdict:
        """May an attempt for these keys be checked now?  The strictest key decides."""
        now = self.clock()
        verdict = Verdict(True)
        with self._transaction() as txn:
            for key in keys:
                record = self._get(txn, key)
                if record is None:
                    continue
                if record.locked_until > now:
                    wait = record.locked_until - now
                    if not verdict.locked or wait > verdict.retry_after_s:
                        verdict = Verdict(False, True, wait)
                elif record.not_before > now and not verdict.locked:
                    verdict = Verdict(False, False, max(verdict.retry_after_s, record.not_before - now))
        return verdict

    def failure(self, keys: Iterable[tuple]) -> None:
        """Count a failed (or refused) attempt; sets the back-off and, at LOCKOUT_FAILURES, the lockout."""
        now = self.clock()
        with self._transaction() as txn:
            for key in keys:
                record = self._get(txn, key) or _Record()
                if record.locked_until and record.locked_until <= now:
                    record = _Record()  # a lockout that has ended starts afresh
                if record.locked_until > now:
                    self._put(txn, key, record)  # attempts while locked do not extend the lockout
                    continue
                record.failures += 1
                record.last_seen = now
                record.not_before = now + self.backoff_s(record.failures)
                if record.failures >= self.lockout_failures:
                    record.locked_until = now + self.lockout_s
                    log.warning("login locked for %s after %d failures (%.0f s)", key, record.failures, self.lockout_s)
                self._put(txn, key, record)  # most recent last
            self._forget(txn, now)

    def success(self, keys: Iterable[tuple]) -> None:
        with self._transaction() as txn:
            for key in keys:
                self._drop(txn, key)

    def failure_count(self, key: tuple) -> int:
        """Failures counted for one key (0 when it has no record)."""
        with self._transaction() as txn:
            record = self._get(txn, key)
        return 0 if record is None else record.failures

    # --- storage: this process's memory (SharedLoginThrottle: an SQLite file) ----------------------------

    @contextmanager
    def _transaction(self):
        with self._lock:
            yield None

    def _get(self, txn, key: tuple) -> _Record | None:
        record = self._records.get(key)
        return None if record is None else replace(record)  # a copy: changes count only once _put

    def _put(self, txn, key: tuple, record: _Record) -> None:
        self._records.pop(key, None)
        self._records[key] = record  # most recently touched last

    def _drop(self, txn, key: tuple) -> None:
        self._records.pop(key, None)

    def _forget(self, txn, now: float) -> None:
        # Records idle for longer than a lockout are dropped; beyond max_keys the oldest go first.
        while self._records:
            key, record = next(iter(self._records.items()))
            idle = now - record.last_seen > self.lockout_s and record.locked_until <= now
            if idle or len(self._records) > self.max_keys:
                del self._records[key]
            else:
                break


class SharedLoginThrottle(LoginThrottle):
    """:class:`LoginThrottle` whose records live in an SQLite file, so that every process of one server
    (``serve --num-procs``, forked workers behind one port) counts the same failures and honours the same
    back-off and lockout.  Each check or update is one ``BEGIN IMMEDIATE`` transaction (SQLite's file lock
    serialises the processes).  ``clock`` must be one clock for all of them: CLOCK_MONOTONIC is system-wide
    on Linux.  The file is private (0600): it holds the user names and addresses of failed attempts."""

    def __init__(self, path, *, fresh: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh:  # a new server starts with no counts (as the in-memory throttle would)
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, name TEXT NOT NULL, "
                "failures INTEGER NOT NULL, not_before REAL NOT NULL, locked_until REAL NOT NULL, "
                "last_seen REAL NOT NULL, PRIMARY KEY (kind, name))"
            )
            db.execute("CREATE INDEX IF NOT EXISTS records_last_seen ON records (last_seen)")

    @contextmanager
    def _transaction(self):
        # A connection per transaction: nothing is shared across fork(), and SQLite's lock serialises processes.
        with self._lock:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                db.close()

    def _get(self, db, key: tuple) -> _Record | None:
        row = db.execute(
            "SELECT failures, not_before, locked_until, last_seen FROM records WHERE kind = ? AND name = ?",
            (str(key[0]), str(key[1])),
        ).fetchone()
        return None if row is None else _Record(*row)

    def _put(self, db, key: tuple, record: _Record) -> None:
        db.execute(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)",
            (str(key[0]), str(key[1]), record.failures, record.not_before, record.locked_until, record.last_seen),
        )

    def _drop(self, db, key: tuple) -> None:
        db.execute("DELETE FROM records WHERE kind = ? AND name = ?", (str(key[0]), str(key[1])))

    def _forget(self, db, now: float) -> None:
        db.execute("DELETE FROM records WHERE last_seen < ? AND locked_until <= ?", (now - self.lockout_s, now))
        (count,) = db.execute("SELECT COUNT(*) FROM records").fetchone()
        if count > self.max_keys:
            db.execute(
                "DELETE FROM records WHERE rowid IN (SELECT rowid FROM records ORDER BY last_seen LIMIT ?)",
                (count - self.max_keys,),
            )

    def tracked(self) -> int:
        """How many user names / addresses have records (tests)."""
        with self._transaction() as db:
            return db.execute("SELECT COUNT(*) FROM records").fetchone()[0]


def password_matches(users: Mapping[str, str], username: str, password: str) -> bool:
    """Constant-time check (the time does not depend on where the password differs, on its length, or on
    whether the user exists)."""
    expected = users.get(username)
    given = hashlib.sha256(password.encode("utf-8")).digest()
    wanted = hashlib.sha256((expected if expected is not None else "\0no such user\0").encode("utf-8")).digest()
    return hmac.compare_digest(given, wanted) and expected is not None


# --- the pages: self-contained (no URL to another host), fixed messages -------------------------------

MESSAGES = {
    "invalid": "Wrong user name or password.",
    "wait": "Too many failed attempts: wait {seconds} s before trying again.",
    "locked": "Too many failed attempts: login is locked for {minutes} min.",
}

_STYLE = """
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
         background: #f5f5f5; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; }
  main { background: #fff; border: 1px solid #ddd; padding: 2em; width: 320px; }
  h1 { font-size: 1.2em; margin: 0 0 1em; }
  label { display: block; margin-bottom: 0.3em; }
  input { box-sizing: border-box; width: 100%; padding: 10px; margin-bottom: 1em; border: 1px solid #ccc; }
  button { width: 100%; padding: 10px; background: #107bba; color: #fff; border: 0; cursor: pointer; }
  .message { color: #b00020; font-weight: bold; }
"""


def _page(title: str, body: str) -> str:
    return safety.html_document(f"Ketamine workbench — {title}", _STYLE, f"<main>\n{body}\n</main>")


_LOGIN_FORM = """<h1>Ketamine workbench dashboards</h1>
<p class="message" role="alert">{message}</p>
<form action="{action}" method="post">
  <label for="username">User name</label>
  <input id="username" name="username" type="text" autocomplete="username" autocapitalize="off" required>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button type="submit">Log in</button>
</form>"""

_LOGOUT = """<h1>Logged out</h1>
<p><a href="{login}">Log in again</a></p>"""


def login_page(action: str, message: str = "") -> str:
    return _page("log in", _LOGIN_FORM.format(action=html.escape(action), message=html.escape(message)))


def logout_page(login: str) -> str:
    return _page("logged out", _LOGOUT.format(login=html.escape(login)))


def _hardened_handler():
    """The base of the login and logout pages: security headers, and cookie flags that follow the protocol."""
    import tornado.web
    from panel.config import config

    class _Hardened(tornado.web.RequestHandler):
        def set_default_headers(self):
            for name, value in safety.SECURITY_HEADERS.items():
                self.set_header(name, value)

        def _cookie_flags(self) -> dict:
            # Secure only over TLS: a Secure cookie set over plain http (the loopback) would never come back.
            return {
                "httponly": True,
                "samesite": "Lax",
                "secure": self.request.protocol == "https",
                "path": config.cookie_path,
            }

    return _Hardened


def _login_handler(base, users: dict[str, str], throttle: LoginThrottle):
    """The login page: throttled (back-off, then lockout, per user and per address), constant-time check."""
    from panel.auth import _validate_next_url
    from panel.config import config
    from panel.io.state import state

    class LoginHandler(base):
        endpoint = "/login"

        def get(self):
            next_url = _validate_next_url(self.get_argument("next", state.base_url))
            if next_url:
                self.set_cookie("next_url", next_url, **self._cookie_flags())
            code = self.get_argument("error", "")
            self.write(login_page("." + self.endpoint, MESSAGES["invalid"] if code == "invalid" else ""))

        def post(self):
            username = self.get_argument("username", "").strip()
            password = self.get_argument("password", "")
            keys = [("user", username), ("ip", self.request.remote_ip or "")]
            verdict = throttle.check(keys)
            if not verdict.allowed:
                throttle.failure(keys)  # hammering during a back-off moves towards the lockout
                log.info(
                    "refused login for user %r from %s (%s)",
                    username[:64],
                    self.request.remote_ip,
                    "locked" if verdict.locked else "back-off",
                )
                seconds = max(1, math.ceil(verdict.retry_after_s))
                self.set_status(429)
                self.set_header("Retry-After", str(seconds))
                message = (
                    MESSAGES["locked"].format(minutes=max(1, math.ceil(seconds / 60)))
                    if verdict.locked
                    else MESSAGES["wait"].format(seconds=seconds)
                )
                self.write(login_page("." + self.endpoint, message))
                return
            if password_matches(users, username, password):
                throttle.success(keys)
                self.set_current_user(username)
                self.redirect(_validate_next_url(self.get_cookie("next_url", state.base_url)) or state.base_url)
            else:
                throttle.failure(keys)
                log.info("failed login for user %r from %s", username[:64], self.request.remote_ip)
                self.redirect(self.request.path + "?error=invalid", status=303)

        def set_current_user(self, user):
            # As panel.auth.BasicLoginHandler, with the cookie flags above.
            import json

            from panel.util import base64url_encode

            self.clear_cookie("is_guest", path=config.cookie_path)
            self.set_secure_cookie("user", user, expires_days=config.oauth_expiry, **self._cookie_flags())
            id_token = base64url_encode(json.dumps({"user": user}))
            if state.encryption:
                id_token = state.encryption.encrypt(id_token.encode("utf-8"))
            self.set_secure_cookie("id_token", id_token, expires_days=config.oauth_expiry, **self._cookie_flags())

    return LoginHandler


def _logout_handler(base):
    from panel.config import config

    class LogoutHandler(base):
        endpoint = "/login"

        def get(self):
            for name in ("user", "id_token", "access_token", "refresh_token", "oauth_expiry"):
                self.clear_cookie(name, path=config.cookie_path)
            self.write(logout_page("." + self.endpoint))

    return LogoutHandler


def make_auth_provider(users: Mapping[str, str], throttle: LoginThrottle | None = None):
    """A Bokeh/Panel auth provider (pass as ``pn.serve(..., auth_provider=…, cookie_secret=…)``)."""
    from panel.auth import BasicAuthProvider

    throttle = throttle or LoginThrottle()
    base = _hardened_handler()
    LoginHandler = _login_handler(base, dict(users), throttle)
    LogoutHandler = _logout_handler(base)

    class Provider(BasicAuthProvider):
        @property
        def login_handler(self):
            LoginHandler.endpoint = self._login_endpoint
            return LoginHandler

        @property
        def logout_handler(self):
            LogoutHandler.endpoint = self._login_endpoint
            return LogoutHandler

    provider = Provider()
    provider.throttle = throttle
    return provider
