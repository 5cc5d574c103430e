"""The study explorer's first view (``/explorer``): one plain HTML page, built on the server, without JavaScript.

Why a page of its own: a Panel page makes every visitor's browser start ~2.9 MB of BokehJS/Panel JavaScript
(~0.8 s on a lab laptop before anything is drawn) and the server build a document per visitor.  What most
visitors come for — the study, a subject's summary in one condition, and the occipital-alpha and entropy time
courses — needs neither: this page holds the summary, the selectors (a plain GET form) and both time courses
as SVG, each drawn once per selection and server process and shared by every visitor (the same pictures as the
interactive explorer's first tab).  The interactive explorer (hover, save, topomap, dose-response, selection
scatter, experience, mood, cytokines) is one link away, at ``/explorer/interactive`` with the same selection.

Safety as in the interactive pages: query values are read through :class:`~pipelines.dashboards.selection.
Choices` (only the study's own values; an unknown one is ignored with a notice naming the field, never echoing
the value), every text is escaped, an error shows a short page with a reference (the traceback goes to the
server log), the page loads nothing from anywhere (a strict Content-Security-Policy), and in sharing mode it
is behind the same login as the apps."""

from __future__ import annotations

import html
import secrets
import urllib.parse

from pipelines.dashboards import data, safety
from pipelines.dashboards.blinding import Blinding
from pipelines.dashboards.selection import PARAMS, Choices

INTERACTIVE = "explorer/interactive"  # the Panel app's route, relative to the server's root (and prefix)
SUMMARY_CLASS = "kw-summary"
NOTE = (
    "Dashed line: infusion start; dotted: infusion end; red dashed: suppression threshold. Red is the selected "
    "subject (dash-dot: its suppression onset); the other curves are each condition's mean with its standard error. "
    "Measures: entropy / complexity, mean over channels, change from baseline."
)

_STYLE = """
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; background: #fff; }
.layout { display: flex; flex-wrap: wrap; gap: 16px; padding: 12px; }
aside { flex: 0 0 300px; }
main { flex: 1 1 640px; min-width: 0; }
h1 { font-size: 1.25em; margin: 0 0 0.4em; }
label { display: block; margin: 0.8em 0 0.2em; font-weight: 600; }
select { width: 100%; padding: 6px; font-size: 14px; }
button { margin-top: 1em; padding: 8px 18px; background: #0b5cad; color: #fff; border: 0; font-size: 14px; }
.note { font-size: 13px; color: #333; }
.kw-summary { font-size: 15px; }
.kw-url-notice { background: #fff3cd; border: 1px solid #8a6d00; padding: 8px; }
.kw-error { background: #f8d7da; border: 1px solid #842029; padding: 8px; }
a { color: #0b5cad; }
"""


def _options(values: dict, selected) -> str:
    """``<option>`` elements: label → value (both escaped), the selected one marked."""
    return "".join(
        f'<option value="{html.escape(safety.serialize(value))}"{" selected" if value == selected else ""}>'
        f"{html.escape(str(label))}</option>"
        for label, value in values.items()
    )


def _summary_html(markdown_text: str) -> str:
    """The explorer's summary line (Markdown whose every value is already escaped) as HTML; raw HTML stays off."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).renderInline(markdown_text)


def _sidebar(choices: Choices, selection: dict, study_name: str) -> str:
    cond = choices.conditions
    blind = "<strong>Blinded:</strong> conditions are shown as letters; doses are hidden until unblinding. "
    return (
        f"<aside><h1>Study {html.escape(study_name)}</h1>"
        f"<p>{len(choices.subjects)} participants (pseudonymous IDs only).</p>"
        '<form method="get" action="explorer">'
        f'<label for="subject">Subject</label><select id="subject" name="subject">'
        f"{_options({s: s for s in choices.subjects}, selection['subject'])}</select>"
        f'<label for="dose">{"Condition" if cond.blinded else "Dose"}</label><select id="dose" name="dose">'
        f"{_options(cond.options, selection['dose'])}</select>"
        '<label for="measure">Measure</label><select id="measure" name="measure">'
        f"{_options({m: m for m in choices.measures}, selection['measure'])}</select>"
        f'<input type="hidden" name="time_s" value="{html.escape(safety.serialize(selection["time_s"]))}">'
        '<button type="submit">Show</button></form>'
        f'<p class="note">{blind if cond.blinded else ""}{NOTE}</p></aside>'
    )


IGNORED = "ignored"  # the fields a link held unknown values for (names only), after the redirect that dropped them


def _ignored_fields(raw: str) -> list[str]:
    return [name for name in PARAMS if name in raw.split(",")]


def self_url(selection: dict, ignored: list[str]) -> str:
    """This page's relative URL for ``selection`` (and the names of the fields a link's values were ignored for)."""
    query = {k: safety.serialize(selection[k]) for k in PARAMS}
    if ignored:
        query[IGNORED] = ",".join(ignored)
    return "explorer?" + urllib.parse.urlencode(query)


def page(
    manifest: str, blinding: Blinding | None, selection: dict, ignored: list[str], choices: Choices | None = None
) -> str:
    """The first view of ``selection`` (valid values: :meth:`Choices.read`); ``ignored``: the fields whose values
    a link held but this study does not have (named in a notice, never echoed). Served through :func:`respond`,
    which checks the study's inputs first."""
    from pipelines.dashboards import explorer

    choices = choices or Choices(manifest, blinding)
    study_name = data.study(manifest).name
    cond = choices.conditions
    subject, measure = selection["subject"], selection["measure"]
    dose = cond.dose_of(selection["dose"])
    summary = explorer._summary(manifest, subject, dose, measure, cond.label(dose), cond.blinded)
    figures = explorer.overview_figures(manifest, cond, subject, dose, measure)
    link = INTERACTIVE + "?" + urllib.parse.urlencode({k: safety.serialize(selection[k]) for k in PARAMS})
    notice = (
        f'<p class="{safety.NOTICE_CLASS}" role="alert">{safety.notice_text(ignored, html.escape)}</p>'
        if ignored
        else ""
    )
    body = (
        f'<div class="layout">{_sidebar(choices, selection, study_name)}<main>{notice}'
        f'<p class="{SUMMARY_CLASS}" id="explorer-summary">{_summary_html(summary)}{_elsewhere(choices, selection)}</p>'
        f'<p><a href="{html.escape(link)}">Open the interactive explorer</a> for this selection: hover and save '
        "the figures, the topomap, the dose-response, the selection scatter, and the experience, mood and "
        f"cytokine views.</p>{figures}</main></div>"
    )
    return safety.html_document(f"Ketamine workbench — study explorer: {study_name}", _STYLE, body)


def _elsewhere(choices: Choices, selection: dict) -> str:
    """Where the subject was recorded when not in the selected condition (parallel arms: one condition each)."""
    cond, subject = choices.conditions, selection["subject"]
    recs = data.recordings(choices.manifest)
    doses = sorted(set(recs.loc[recs["participant_id"] == subject, "dose_mg_per_kg"].astype(float)))
    if any(abs(d - cond.dose_of(selection["dose"])) < 1e-12 for d in doses):
        return ""
    links = [
        f'<a href="{html.escape(self_url({**selection, "dose": cond.value_of(d)}, []))}">{html.escape(cond.label(d))}</a>'
        for d in sorted(doses, key=cond.order.index)
    ]
    return f" Recorded in: {', '.join(links)}." if links else ""


def respond(manifest: str, blinding: Blinding | None, query: dict[str, str]) -> tuple[int, str]:
    """(200, the page) for a link's ``query``, or (303, the URL to go to) when it held an unknown value: the
    address bar never keeps a rejected value; the page it leads to names the ignored fields."""
    data.ensure_fresh(manifest)  # before anything reads the caches: a rebuilt study is what this visitor sees
    choices = Choices(manifest, blinding)
    selection, rejected = choices.read(query)
    if rejected:
        return 303, self_url(selection, rejected)
    return 200, page(manifest, blinding, selection, _ignored_fields(query.get(IGNORED, "")), choices)


def error_page(ref: str) -> str:
    text = html.escape(safety.ERROR_TEXT.format(ref=ref))
    return safety.html_document(
        "Ketamine workbench — study explorer", _STYLE, f'<main><p class="kw-error" role="alert">{text}</p></main>'
    )


def handler(manifest: str, blinding: Blinding | None):
    """The Tornado handler of ``/explorer`` (pass as ``pn.serve(extra_patterns=[(r"/explorer", handler, {})])``):
    behind the server's login in sharing mode, as Panel's own pages are."""
    import tornado.web

    class ExplorerOverviewHandler(tornado.web.RequestHandler):
        def set_default_headers(self):
            for name, value in safety.SECURITY_HEADERS.items():
                self.set_header(name, value)

        # The login as on Panel's pages: the server's auth provider decides (no login when not sharing).
        def get_login_url(self):
            provider = self.application.auth_provider
            return provider.get_login_url(self) if provider.get_login_url is not None else provider.login_url

        def get_current_user(self):
            provider = self.application.auth_provider
            return provider.get_user(self) if provider.get_user is not None else "default_user"

        async def prepare(self):
            provider = self.application.auth_provider
            if provider.get_user_async is not None:
                self.current_user = await provider.get_user_async(self)

        @tornado.web.authenticated
        def get(self):
            query = {k: self.get_query_argument(k) for k in (*PARAMS, IGNORED) if k in self.request.query_arguments}
            try:
                status, text = respond(manifest, blinding, query)
                if status == 303:
                    self.redirect(text, status=303)
                    return
            except Exception:
                ref = secrets.token_hex(4)
                safety.log.exception("explorer overview failed (reference %s)", ref)
                self.set_status(500)
                text = error_page(ref)
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.write(text)

    return ExplorerOverviewHandler
