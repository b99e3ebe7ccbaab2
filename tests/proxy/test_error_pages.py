"""Custom error pages: the Go-template subset Kamal's pages use, and the directory loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.error_pages import TemplateError, load_error_pages, parse_template

KAMAL_503 = """<html><body>
{{ if .Message }}
  <p>{{ .Message }}</p>
{{ else }}
  <p>Down for maintenance</p>
{{ end }}
</body></html>"""


def render(text: str, message: str = "") -> str:
    return parse_template(text, name="t.html").render(message=message).decode()


def test_message_is_substituted_and_escaped_like_html_template() -> None:
    assert render("<p>{{ .Message }}</p>", "Back at <5pm> & 'soon'") == (
        "<p>Back at &lt;5pm&gt; &amp; &#39;soon&#39;</p>"
    )
    assert render("<p>{{.Message}}</p>", 'a"b') == "<p>a&#34;b</p>"


def test_if_else_end_chooses_on_a_non_empty_message() -> None:
    with_message = render(KAMAL_503, "Upgrading")
    assert "<p>Upgrading</p>" in with_message and "Down for maintenance" not in with_message
    without = render(KAMAL_503)
    assert "Down for maintenance" in without and "<p></p>" not in without


def test_if_without_else_and_nested_ifs() -> None:
    assert render("a{{ if .Message }}b{{ end }}c", "x") == "abc"
    assert render("a{{ if .Message }}b{{ end }}c") == "ac"
    text = "{{ if .Message }}[{{ if .Message }}{{ .Message }}{{ else }}no{{ end }}]{{ end }}"
    assert render(text, "m") == "[m]"


def test_trim_markers_and_comments() -> None:
    assert render("a  {{- .Message -}}  b", "M") == "aMb"
    assert render("a {{/* a comment */}}b") == "a b"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{{ .Other }}", "t.html:1: unsupported action {{.Other}}"),
        ("x\n{{ range .Items }}{{ end }}", "t.html:2: unsupported action"),
        ("{{ if .Message }}open", "t.html:1: unexpected EOF"),
        ("{{ end }}", "unsupported action {{end}}"),
        ("{{ if .Message }}a{{ else }}b{{ else }}c{{ end }}", "unsupported action {{else}}"),
        ('{{ template "x" }}', "unsupported action"),
        ("ok {{ .Message ", "unclosed action"),
    ],
)
def test_anything_outside_the_subset_is_an_error_naming_file_line_and_action(
    text: str, fragment: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template(text, name="t.html")
    assert fragment in str(caught.value)


def test_directory_loads_pages_by_status_and_falls_back_for_missing_codes(tmp_path: Path) -> None:
    (tmp_path / "503.html").write_text(KAMAL_503)
    (tmp_path / "404.html").write_text("<h1>nope</h1>")
    (tmp_path / "layout.html").write_text("{{ .Message }}")  # parsed, but no status uses it
    (tmp_path / "notes.txt").write_text("{{ broken")  # not a page
    pages = load_error_pages(str(tmp_path))
    assert sorted(pages.pages) == [404, 503]
    assert pages.render(404) == b"<h1>nope</h1>"
    assert b"<p>Gone fishing</p>" in (pages.render(503, message="Gone fishing") or b"")
    assert pages.render(502) is None


def test_a_missing_or_empty_directory_or_a_bad_page_fails_to_load(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="No such file"):
        load_error_pages(str(tmp_path / "missing"))
    with pytest.raises(TemplateError, match="matches no files"):
        load_error_pages(str(tmp_path))
    (tmp_path / "500.html").write_text("{{ .Nope }}")
    with pytest.raises(TemplateError, match=r"500\.html:1"):
        load_error_pages(str(tmp_path))


def test_a_page_that_is_not_utf8_or_too_large_fails_to_load(tmp_path: Path) -> None:
    (tmp_path / "500.html").write_bytes(b"\xff\xfe")
    with pytest.raises(TemplateError, match=r"500\.html"):
        load_error_pages(str(tmp_path))
    (tmp_path / "500.html").write_bytes(b"x" * ((1 << 20) + 1))
    with pytest.raises(TemplateError, match="larger than"):
        load_error_pages(str(tmp_path))
