"""kamal-proxy's built-in error pages, and the raw HTTP/1.1 responses that carry them.

kamal-proxy embeds full-page HTML for 404, 413, 502, 503 and 504 (``internal/pages/*.html`` in
basecamp/kamal-proxy, MIT licensed). The markup here follows those pages: the same document
structure, inline CSS, ``<title>`` and paragraph texts. The originals draw the status code and
reason as SVG paths; here they are a real ``<h1>`` (big faded code with the reason on top), which
looks alike and is readable by screen readers and text browsers. The 503 page shows the
maintenance ``message`` (escaped exactly like Go's ``html/template``) when one is set, else the
generic paragraph. Every other status gets kamal-proxy's fallback ``<h1>{code} {reason}</h1>``.

Static bodies are rendered once at import; serving one is a dict lookup.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

from proxy.http.writer import response_head

__all__ = [
    "CONTENT_TYPE",
    "error_page",
    "escape_html",
    "http_date",
    "response_bytes",
    "status_text",
]

CONTENT_TYPE = "text/html; charset=utf-8"

# Go's http.StatusText where it differs from Python's HTTPStatus phrases (or where those changed
# between Python versions).
_GO_STATUS_TEXT: dict[int, str] = {
    413: "Request Entity Too Large",
    414: "Request URI Too Long",
    416: "Requested Range Not Satisfiable",
    418: "I'm a teapot",
    422: "Unprocessable Entity",
}


def status_text(status: int) -> str:
    """Go's ``http.StatusText``: the reason phrase, or ``""`` for an unknown code."""
    text = _GO_STATUS_TEXT.get(status)
    if text is not None:
        return text
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


# Go html/template's escaping of text in element content.
_HTML_ESCAPES = str.maketrans(
    {
        "\0": "\ufffd",
        '"': "&#34;",
        "&": "&amp;",
        "'": "&#39;",
        "+": "&#43;",
        "<": "&lt;",
        ">": "&gt;",
    }
)


def escape_html(text: str) -> str:
    """Escape ``text`` the way Go's ``html/template`` escapes ``{{ .Message }}``."""
    return text.translate(_HTML_ESCAPES)


_CSS = """
      *, *::before, *::after {
        box-sizing: border-box;
      }

      * {
        margin: 0;
      }

      html {
        font-size: 16px;
      }

      body {
        background: #0971D5;
        color: #FFF;
        display: grid;
        font-family: ui-sans-serif, system-ui, -apple-system, BlinkMacSystemFont, Aptos, Roboto, \
"Segoe UI", "Helvetica Neue", Helvetica, Arial, sans-serif, "Apple Color Emoji", "Segoe UI Emoji", \
"Segoe UI Symbol", "Noto Color Emoji";
        font-size: clamp(1rem, 2.5vw, 2rem);
        -webkit-font-smoothing: antialiased;
        font-style: normal;
        font-weight: 400;
        letter-spacing: -0.0025em;
        line-height: 1.4;
        min-height: 100vh;
        place-items: center;
        text-rendering: optimizeLegibility;
        -webkit-text-size-adjust: 100%;
      }

      a {
        color: inherit;
        font-weight: 700;
        text-decoration: underline;
        text-underline-offset: 0.0925em;
      }

      b, strong {
        font-weight: 700;
      }

      i, em {
        font-style: italic;
      }

      main {
        display: grid;
        gap: 1em;
        padding: 2em;
        place-items: center;
        text-align: center;
      }

      main header {
        width: min(100%, 18em);
      }

      main header h1 {
        display: grid;
        font-size: 1em;
        line-height: 1;
        place-items: center;
      }

      main header h1 > span {
        grid-area: 1 / 1;
      }

      main header .code {
        font-size: 6em;
        font-weight: 800;
        letter-spacing: -0.04em;
        opacity: 0.1;
      }

      main header .reason {
        font-size: 1.2em;
        font-weight: 700;
      }

      main header .sep {
        clip: rect(0 0 0 0);
        height: 1px;
        overflow: hidden;
        position: absolute;
        white-space: nowrap;
        width: 1px;
      }

      main article {
        width: min(100%, 30em);
      }

      main article p {
        font-size: 75%;
      }

      main article br {

        display: none;

        @media(min-width: 48em) {
          display: inline;
        }

      }
"""

_TEMPLATE = """<!doctype html>

<html lang="en">

  <head>

    <title>{code} \u2014 {reason}</title>

    <meta charset="utf-8">
    <meta name="viewport" content="initial-scale=1, width=device-width">
    <meta name="robots" content="noindex, nofollow">

    <style>
{css}
    </style>

  </head>

  <body>

    <main>
      <header>
        <h1><span class="code">{code}</span><span class="sep"> \u2014 </span>\
<span class="reason">{reason}</span></h1>
      </header>
      <article>
        {paragraph}
      </article>
    </main>

  </body>

</html>
"""

# Reason shown in the title/heading, and the generic paragraph, of each built-in page.
_FULL_PAGES: dict[int, tuple[str, str]] = {
    404: (
        "Not Found",
        "<p><strong>The page you were looking for doesn\u2019t exist.</strong> You may have mistyped "
        "the address or the page may have moved. If you are the application owner check the logs "
        "for more information.</p>",
    ),
    413: (
        "Content Too Large",
        "<p><strong>The file or data you are trying to upload exceeds the allowed size.</strong> "
        "Please try again<br> with a smaller file. If you continue to see this error, contact the "
        "application owner.</p>",
    ),
    502: (
        "Bad Gateway",
        "<p><strong>The server received an invalid response.</strong> Please try again later.<br> "
        "If you continue to see this error, please contact the application owner.</p>",
    ),
    503: (
        "Service Temporarily Unavailable",
        "<p><strong>The service is temporarily unavailable.</strong> It may be overloaded,<br> or "
        "undergoing scheduled maintenance. Please try again later.</p>",
    ),
    504: (
        "Gateway Timeout",
        "<p><strong>The service did not respond within the allowed time limit.</strong> It may be "
        "overloaded,<br> or there may be a temporary technical issue. Please try again later.</p>",
    ),
}


def _render_full(status: int, paragraph: str) -> bytes:
    reason = _FULL_PAGES[status][0]
    html = _TEMPLATE.format(code=status, reason=reason, css=_CSS.strip("\n"), paragraph=paragraph)
    return html.encode("utf-8")


def _render_simple(status: int) -> bytes:
    return f"<h1>{status} {status_text(status)}</h1>".encode()


def _prerender() -> dict[int, bytes]:
    pages = {int(s): _render_simple(int(s)) for s in HTTPStatus if s >= 400}
    for status, (_, paragraph) in _FULL_PAGES.items():
        pages[status] = _render_full(status, paragraph)
    return pages


_PAGES: dict[int, bytes] = _prerender()


def error_page(status: int, *, message: str = "") -> bytes:
    """The HTML body kamal-proxy serves for a proxy-generated ``status``.

    ``message`` only matters for 503 (the ``kamal-proxy stop --message`` text).
    """
    if message and status == 503:
        return _render_full(503, f"<p>{escape_html(message)}</p>")
    page = _PAGES.get(status)
    if page is None:
        page = _render_simple(status)
    return page


class _DateCache:
    __slots__ = ("second", "value")

    def __init__(self) -> None:
        self.second = -1
        self.value = ""


_date_cache = _DateCache()


def http_date(now: float | None = None) -> str:
    """An IMF-fixdate ``Date`` value (``Sun, 06 Nov 1994 08:49:37 GMT``), cached per second."""
    stamp = time.time() if now is None else now
    second = int(stamp)
    if second != _date_cache.second:
        _date_cache.value = formatdate(second, usegmt=True)
        _date_cache.second = second
    return _date_cache.value


def _body_allowed(status: int) -> bool:
    return not (100 <= status < 200 or status in (204, 304))


def response_bytes(
    status: int,
    *,
    body: bytes,
    keep_alive: bool,
    head: bool = False,
    content_type: str = CONTENT_TYPE,
    location: str = "",
) -> bytes:
    """A complete HTTP/1.1 response carrying ``body`` (an HTML page unless ``content_type`` says otherwise).

    For HEAD the headers (including ``Content-Length`` of the body that would have been sent) go
    out without the body, as Go's net/http does. An empty ``content_type`` sends no Content-Type.
    """
    reason = status_text(status) or f"status code {status}"
    lines = []
    if location:
        lines.append(b"Location: " + location.encode("latin-1"))
    if content_type:
        lines.append(b"Content-Type: " + content_type.encode("latin-1"))
    allowed = _body_allowed(status)
    if allowed:
        lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Date: " + http_date().encode("latin-1"))
    if not keep_alive:
        lines.append(b"Connection: close")
    head_bytes = response_head(status, reason.encode("latin-1"), lines)
    if head or not allowed:
        return head_bytes
    return head_bytes + body
