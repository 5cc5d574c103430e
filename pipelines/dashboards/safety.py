"""What keeps visitor input harmless: URL values checked against the allowed set, text escaped, errors hidden.

Every value that arrives in a link (``/explorer?subject=…``) is parsed by a per-field validator that returns
one of the app's own allowed values or raises :class:`Rejected`; rejected values are dropped (the app shows a
short notice naming the field, never the value) and the URL is rewritten to the state actually shown.  Text
built from data is escaped before it goes into Markdown or HTML (:func:`escape_markdown`).  A session that
fails to build shows :data:`ERROR_TEXT` and a reference; the traceback goes to the server log only.
"""

from __future__ import annotations

import html
import logging
import math
import re
import secrets
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger("pipelines.dashboards")

ERROR_TEXT = "Sorry, this dashboard could not be shown. The error was logged on the server (reference {ref})."
NOTICE_CLASS = "kw-url-notice"
MAX_QUERY_VALUE = 200  # longer URL values are rejected before parsing

# Inline syntax anywhere; block syntax (list, heading, quote markers) only matters at the start of a line.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()!|~$])")
_LINE_START = re.compile(r"^([-+#]|\d+[.)])")  # ">" needs nothing: html.escape makes it &gt;


class Rejected(ValueError):
    """A URL value outside the allowed set (the field is ignored)."""


def escape_markdown(text: Any) -> str:
    """``text`` as literal characters in Markdown: Markdown syntax backslash-escaped (no links, images, emphasis,
    maths or code spans made by the value), then HTML-escaped (no tags; the entities render as the characters)."""
    one_line = " ".join(str(text).splitlines())
    # A leading "- x" becomes \- x and "12. x" becomes 12\. x (a backslash escapes punctuation only).
    escaped = _LINE_START.sub(
        lambda m: m.group(0)[:-1] + "\\" + m.group(0)[-1], _MARKDOWN_SPECIAL.sub(r"\\\1", one_line)
    )
    return html.escape(escaped, quote=True)


# --- validators: raw URL string in, one of the app's own values out ---------------------------------


def one_of(allowed: Iterable) -> Callable[[str], Any]:
    """Exact match against ``allowed`` (strings); returns the allowed object, not the visitor's string."""
    table = {str(v): v for v in allowed}

    def parse(raw: str):
        if raw not in table:
            raise Rejected(raw)
        return table[raw]

    return parse


def closest_number(allowed: Iterable[float], labels: Mapping[str, float] | None = None, rel_tol: float = 1e-9):
    """A number equal (within ``rel_tol``) to one of ``allowed``, or one of ``labels``' keys; returns the
    allowed float."""
    values = [float(v) for v in allowed]
    labels = dict(labels or {})

    def parse(raw: str):
        if raw in labels:
            return float(labels[raw])
        number = finite_float(raw)
        for v in values:
            if math.isclose(number, v, rel_tol=rel_tol, abs_tol=1e-12):
                return v
        raise Rejected(raw)

    return parse


def number_in(lo: float, hi: float, grid: Iterable[float] | None = None) -> Callable[[str], float]:
    """A finite number in [lo, hi]; with ``grid``, snapped to the nearest grid value."""
    points = None if grid is None else [float(g) for g in grid]

    def parse(raw: str):
        number = finite_float(raw)
        if not lo <= number <= hi:
            raise Rejected(raw)
        return min(points, key=lambda g: abs(g - number)) if points else number

    return parse


def boolean(raw: str) -> bool:
    word = raw.strip().lower()
    if word in ("true", "1", "yes"):
        return True
    if word in ("false", "0", "no"):
        return False
    raise Rejected(raw)


def finite_float(raw: str) -> float:
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise Rejected(raw) from None
    if not math.isfinite(number):
        raise Rejected(raw)
    return number


def validate_query(query: Mapping[str, str], fields: Mapping[str, Callable[[str], Any]]) -> tuple[dict, list[str]]:
    """(valid values by field, names of the fields whose value was rejected).  Unknown query keys are ignored."""
    valid, rejected = {}, []
    for name, parse in fields.items():
        if name not in query:
            continue
        raw = str(query[name])
        try:
            if len(raw) > MAX_QUERY_VALUE:
                raise Rejected(raw[:20])
            valid[name] = parse(raw)
        except Rejected:
            rejected.append(name)
    return valid, rejected


def serialize(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class QuerySync:
    """Two-way link between some parameters of ``target`` and the page's URL query, with validation.

    Panel's ``pn.state.location.sync`` would set whatever the URL holds (a Selector then grows the visitor's
    value as a new option); here the URL is read through ``fields`` only, and the URL is rewritten to the
    state actually shown, so a link never keeps a rejected value."""

    def __init__(self, target, fields: Mapping[str, Callable[[str], Any]], on_rejected: Callable[[list[str]], None]):
        self.target, self.fields, self.on_rejected = target, dict(fields), on_rejected
        self._busy = False
        self.location = None

    def start(self, location) -> None:
        self.location = location
        self.apply(location.search)
        location.param.watch(lambda event: self.apply(event.new), "search")
        self.target.param.watch(lambda *_: self.push(), list(self.fields))

    def apply(self, search: str) -> list[str]:
        """Set the valid values of ``search`` (``?a=1&b=2``) on the target; returns the rejected field names."""
        if self._busy:
            return []
        query = dict(urllib.parse.parse_qsl((search or "").lstrip("?"), keep_blank_values=True))
        valid, rejected = validate_query(query, self.fields)
        self._busy = True
        try:
            changed = {k: v for k, v in valid.items() if getattr(self.target, k) != v}
            if changed:
                self.target.param.update(**changed)
        finally:
            self._busy = False
        self.on_rejected(rejected)
        if valid or rejected:  # the link named some of our fields: make it show the state actually shown
            self.push()
        return rejected

    def push(self) -> None:
        """Write the target's current values into the URL (replacing anything the visitor sent)."""
        if self._busy or self.location is None:
            return
        self._busy = True
        try:
            query = dict(urllib.parse.parse_qsl((self.location.search or "").lstrip("?"), keep_blank_values=True))
            query.update({k: serialize(getattr(self.target, k)) for k in self.fields})
            search = "?" + urllib.parse.urlencode(query)
            if search != self.location.search:
                self.location.search = search
        finally:
            self._busy = False


def notice_text(rejected: list[str], escape: Callable[[str], str] = escape_markdown) -> str:
    """What the visitor reads about ignored link values (field names only; the values are never echoed), escaped
    for Markdown (``escape=html.escape`` for an HTML page)."""
    if not rejected:
        return ""
    return f"Ignored an unknown value in the link for: {', '.join(escape(r) for r in rejected)}."


def guarded(build: Callable[[], Any], title: str) -> Callable[[], None]:
    """A pn.serve factory that renders ``build()`` into the session's document, or, when that fails, a short
    error message with a reference; the traceback is logged on the server only (Panel would show it)."""

    def factory():
        import panel as pn

        doc = pn.state.curdoc
        try:
            pn.panel(build()).server_doc(doc, title=title)
        except Exception:
            ref = secrets.token_hex(4)
            log.exception("dashboard session failed (reference %s)", ref)
            doc.clear()
            pn.pane.Alert(
                ERROR_TEXT.format(ref=ref), alert_type="danger", css_classes=["kw-error"], sizing_mode="stretch_width"
            ).server_doc(doc, title=title)
        return None  # the document is filled; nothing more for Panel to render

    return factory


def url_notice():
    """The hidden warning a page shows above its content when a link held an unknown value (one per page)."""
    import panel as pn  # kept out of module import: the validators above are used without Panel

    return pn.pane.Alert(
        "",
        alert_type="warning",
        visible=False,
        css_classes=[NOTICE_CLASS],
        name="url-notice",
        sizing_mode="stretch_width",
    )


# --- the server's own pages (login, logout, the explorer's first view): self-contained HTML ------------------

# Nothing may load or run: inline styles only, no script, image, font or frame, forms post to this server.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # participants' data and login forms: never kept by a browser or a shared proxy
}

_DOCUMENT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
</body>
</html>
"""


def html_document(title: str, style: str, body: str) -> str:
    """A whole page: ``title`` is escaped here; ``style`` and ``body`` are the caller's (already escaped) HTML."""
    return _DOCUMENT.format(title=html.escape(title), style=style, body=body)
