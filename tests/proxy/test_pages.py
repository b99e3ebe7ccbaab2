"""Tests for kamal-proxy's built-in error pages and the raw responses carrying them."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser

import pytest

from proxy.http import pages
from proxy.http.pages import error_page, escape_html, http_date, response_bytes, status_text

FULL_PAGES = {
    404: "404 \u2014 Not Found",
    413: "413 \u2014 Content Too Large",
    502: "502 \u2014 Bad Gateway",
    503: "503 \u2014 Service Temporarily Unavailable",
    504: "504 \u2014 Gateway Timeout",
}


class _Outline(HTMLParser):
    """Collects the title, the h1 text, the paragraph texts and whether tags balance."""

    VOID = frozenset({"meta", "br", "link", "img", "input", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.title = ""
        self.h1 = ""
        self.paragraphs: list[str] = []
        self.tags: list[str] = []
        self.balanced = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "p":
            self.paragraphs.append("")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.balanced = False

    def handle_data(self, data: str) -> None:
        if "title" in self.stack:
            self.title += data
        if "h1" in self.stack:
            self.h1 += data
        if "p" in self.stack:
            self.paragraphs[-1] += data


def outline(body: bytes) -> _Outline:
    parser = _Outline()
    parser.feed(body.decode("utf-8"))
    parser.close()
    return parser


@pytest.mark.parametrize(("status", "title"), FULL_PAGES.items())
def test_full_pages(status: int, title: str) -> None:
    body = error_page(status)
    assert body.startswith(b"<!doctype html>")
    doc = outline(body)
    assert doc.balanced and not doc.stack
    assert doc.title == title
    assert doc.h1 == title  # the visible heading reads the same as the title
    assert "style" in doc.tags and "main" in doc.tags and "article" in doc.tags
    assert b'<html lang="en">' in body
    assert b'<meta charset="utf-8">' in body
    assert b'<meta name="viewport"' in body
    assert b"background: #0971D5;" in body
    assert len(doc.paragraphs) == 1 and doc.paragraphs[0]
    # no template syntax left behind, no external resources
    assert b"{{" not in body and b"{" + b"code}" not in body
    assert b"http://" not in body and b"https://" not in body


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (404, "The page you were looking for doesn\u2019t exist."),
        (413, "The file or data you are trying to upload exceeds the allowed size."),
        (502, "The server received an invalid response."),
        (503, "The service is temporarily unavailable."),
        (504, "The service did not respond within the allowed time limit."),
    ],
)
def test_page_texts(status: int, text: str) -> None:
    assert text in outline(error_page(status)).paragraphs[0]


def test_503_message_replaces_generic_text() -> None:
    body = error_page(503, message="Back at 5pm")
    doc = outline(body)
    assert doc.title == FULL_PAGES[503]
    assert doc.paragraphs == ["Back at 5pm"]
    assert b"temporarily unavailable." not in body


def test_503_message_is_escaped_like_go_html_template() -> None:
    body = error_page(503, message="<script>alert('x')</script> & \"1+1\"\0")
    assert b"<script>" not in body
    assert (
        "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;1&#43;1&#34;\ufffd</p>".encode()
        in body
    )
    assert outline(body).paragraphs == ["<script>alert('x')</script> & \"1+1\"\ufffd"]


def test_message_ignored_for_other_statuses() -> None:
    assert error_page(502, message="hi") == error_page(502)
    assert error_page(400, message="hi") == b"<h1>400 Bad Request</h1>"


def test_empty_message_is_the_generic_page() -> None:
    assert error_page(503, message="") is error_page(503)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b"<h1>400 Bad Request</h1>"),
        (403, b"<h1>403 Forbidden</h1>"),
        (405, b"<h1>405 Method Not Allowed</h1>"),
        (408, b"<h1>408 Request Timeout</h1>"),
        (414, b"<h1>414 Request URI Too Long</h1>"),
        (421, b"<h1>421 Misdirected Request</h1>"),
        (431, b"<h1>431 Request Header Fields Too Large</h1>"),
        (500, b"<h1>500 Internal Server Error</h1>"),
        (501, b"<h1>501 Not Implemented</h1>"),
        (505, b"<h1>505 HTTP Version Not Supported</h1>"),
        (599, b"<h1>599 </h1>"),  # Go's StatusText is "" for unknown codes
    ],
)
def test_simple_pages(status: int, body: bytes) -> None:
    assert error_page(status) == body


def test_static_pages_are_prerendered() -> None:
    for status in (*FULL_PAGES, 400, 431, 500):
        assert error_page(status) is pages._PAGES[status]
    assert error_page(404) is error_page(404)


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (200, "OK"),
        (404, "Not Found"),
        (413, "Request Entity Too Large"),
        (416, "Requested Range Not Satisfiable"),
        (418, "I'm a teapot"),
        (422, "Unprocessable Entity"),
        (503, "Service Unavailable"),
        (599, ""),
    ],
)
def test_status_text_matches_go(status: int, text: str) -> None:
    assert status_text(status) == text


def test_escape_html() -> None:
    assert escape_html("a<b>&'\"+") == "a&lt;b&gt;&amp;&#39;&#34;&#43;"
    assert escape_html("plain text") == "plain text"


# --------------------------------------------------------------------------------------------
# Raw responses


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(": ")
        assert name.lower() not in headers
        headers[name.lower()] = value
    return status_line, headers, body


def test_response_keep_alive() -> None:
    body = error_page(502)
    status_line, headers, rest = split_response(response_bytes(502, body=body, keep_alive=True))
    assert status_line == "HTTP/1.1 502 Bad Gateway"
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-length"] == str(len(body))
    assert "connection" not in headers
    assert rest == body
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", headers["date"])
    assert parsedate_to_datetime(headers["date"]).tzinfo is not None


def test_response_close() -> None:
    body = error_page(413)
    raw = response_bytes(413, body=body, keep_alive=False)
    status_line, headers, rest = split_response(raw)
    assert status_line == "HTTP/1.1 413 Request Entity Too Large"
    assert headers["connection"] == "close"
    assert rest == body


def test_response_head_has_length_but_no_body() -> None:
    body = error_page(404)
    raw = response_bytes(404, body=body, keep_alive=True, head=True)
    assert raw.endswith(b"\r\n\r\n")
    status_line, headers, rest = split_response(raw)
    assert status_line == "HTTP/1.1 404 Not Found"
    assert headers["content-length"] == str(len(body))
    assert rest == b""


def test_response_unknown_status_reason() -> None:
    raw = response_bytes(599, body=error_page(599), keep_alive=True)
    assert raw.startswith(b"HTTP/1.1 599 status code 599\r\n")


def test_response_without_body_status() -> None:
    raw = response_bytes(304, body=b"ignored", keep_alive=True)
    status_line, headers, rest = split_response(raw)
    assert status_line == "HTTP/1.1 304 Not Modified"
    assert "content-length" not in headers
    assert rest == b""


def test_http_date_cached_per_second() -> None:
    assert http_date(784111777.2) == "Sun, 06 Nov 1994 08:49:37 GMT"
    first = http_date(784111777.9)
    assert first == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date(784111777.0) is first
    assert http_date(784111778.0) == "Sun, 06 Nov 1994 08:49:38 GMT"
