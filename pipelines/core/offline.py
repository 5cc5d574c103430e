"""Making HTML open offline, and checking that it does.

Panel and Bokeh embed their JavaScript inline when asked, but Panel still points its component stylesheets
(and its icon font) at its CDN from inside the embedded document JSON, where no tag attribute shows them.
``inline_panel_assets`` replaces each such URL by a ``data:`` URL of the copy installed with Panel;
``external_resources`` finds what a page would still fetch: resource attributes of tags, CSS imports, and
known CDN hosts anywhere in the text (including inside scripts).
"""

from __future__ import annotations

import base64
import mimetypes
import re
from functools import lru_cache
from pathlib import Path

CDN_HOSTS = (
    "cdn.holoviz.org",
    "cdn.bokeh.org",
    "cdn.jsdelivr.net",
    "cdnjs.cloudflare.com",
    "unpkg.com",
    "cdn.plot.ly",
    "code.jquery.com",
    "fonts.googleapis.com",
)

_RESOURCE_ATTR = re.compile(
    r"<(script|link|img|iframe|source|embed|audio|video)\b[^>]*?\b(src|href)\s*=\s*[\"']?\s*((?:https?:)?//[^\"' >]+)",
    re.IGNORECASE,
)
_CSS_IMPORT = re.compile(r"@import\s+(?:url\()?[\"']?((?:https?:)?//[^\"') ]+)", re.IGNORECASE)
_CDN_ANYWHERE = re.compile(r"(?:https?:)?//(?:" + "|".join(re.escape(h) for h in CDN_HOSTS) + r")[^\"'\\\s)<>]*")
_PANEL_CDN = re.compile(r"https://cdn\.holoviz\.org/panel/[^/]+/dist/([^\"'\\?\s)]+)(\?[^\"'\\\s)]*)?")
# Lazy loaders in the bundled JavaScript: Panel's icon font and Bokeh's MathJax provider fetch these only when
# an icon or LaTeX text is drawn.  Our reports draw neither, so the URLs are emptied (nothing can be fetched),
# not inlined (megabytes for a feature that is never used).
_LAZY_LOADER_URLS = (
    "https://cdn.jsdelivr.net/npm/@tabler/icons-webfont@latest",
    "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-svg.js",
)


def external_resources(html_text: str) -> list[str]:
    """URLs a page would fetch from the network when opened (sorted, unique)."""
    found = [m.group(3) for m in _RESOURCE_ATTR.finditer(html_text)]
    found += [m.group(1) for m in _CSS_IMPORT.finditer(html_text)]
    found += [m.group(0) for m in _CDN_ANYWHERE.finditer(html_text)]
    return sorted(set(found))


@lru_cache(maxsize=64)
def _data_url(relative: str) -> str | None:
    import panel

    local = Path(panel.__file__).parent / "dist" / relative
    if not local.is_file():
        return None
    mime = mimetypes.guess_type(local.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(local.read_bytes()).decode()}"


def inline_panel_assets(text: str) -> str:
    """Replace Panel's CDN asset URLs by data: URLs of its installed files; drop favicon links."""
    text = re.sub(r'<link[^>]*rel="(?:apple-touch-)?icon"[^>]*>', "", text)
    text = _PANEL_CDN.sub(lambda m: _data_url(m.group(1)) or m.group(0), text)
    for url in _LAZY_LOADER_URLS:
        text = text.replace(url, "")
    return text
