"""Custom error pages (``--error-pages DIR``): ``NNN.html`` files rendered with a Go-template subset.

kamal-proxy parses every ``*.html`` in the directory as Go ``html/template`` and renders the one named
after the status with ``.Message`` (set only for the stop page). Kamal's uploaded pages use
``{{ .Message }}`` and ``{{ if .Message }}…{{ else }}…{{ end }}``; this module implements exactly that
subset (plus ``{{- … -}}`` trim markers and ``{{/* comments */}}``), escaping ``.Message`` as
``html/template`` escapes element text. Any other action is a template error, so the deploy fails with
``unable to load error pages`` and changes nothing — a page is never served half-understood.

Templates are parsed once at deploy; rendering is a walk over a small tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from proxy.http.pages import escape_html

MAX_PAGE_BYTES = 1 << 20  # one page; a directory of pages is bounded by MAX_PAGES too
MAX_PAGES = 100
_NAME = re.compile(r"^([1-5][0-9][0-9])\.html$")
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


class TemplateError(ValueError):
    """A page that the subset cannot render: the message names the file, the line and the action."""


@dataclass(frozen=True, slots=True)
class _If:
    then: tuple[Node, ...]
    otherwise: tuple[Node, ...]


Node = str | _If | None  # text, a conditional on .Message, or None for {{ .Message }}


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    nodes: tuple[Node, ...]

    def render(self, *, message: str = "") -> bytes:
        out: list[str] = []
        _render(self.nodes, message, out)
        return "".join(out).encode()


def _render(nodes: tuple[Node, ...], message: str, out: list[str]) -> None:
    for node in nodes:
        if node is None:
            out.append(escape_html(message))
        elif isinstance(node, str):
            out.append(node)
        else:
            _render(node.then if message else node.otherwise, message, out)


def parse_template(text: str, *, name: str) -> Template:
    """Parse one page; raise ``TemplateError`` for anything outside the subset."""
    # Each frame: (nodes so far, then-branch when inside {{ else }}, line of the opening {{ if }})
    stack: list[tuple[list[Node], list[Node] | None, int]] = [([], None, 0)]
    position = 0
    pending_trim = False
    for match in _ACTION.finditer(text):
        literal = text[position : match.start()]
        if pending_trim:
            literal = literal.lstrip()
        if match.group(1):
            literal = literal.rstrip()
        if literal:
            stack[-1][0].append(literal)
        pending_trim = bool(match.group(3))
        position = match.end()
        line = text.count("\n", 0, match.start()) + 1
        _action(match.group(2).strip(), stack, name=name, line=line)
    tail = text[position:]
    if "{{" in tail:
        raise TemplateError(f"{name}:{text.count(chr(10), 0, position) + 1}: unclosed action")
    if pending_trim:
        tail = tail.lstrip()
    if tail:
        stack[-1][0].append(tail)
    if len(stack) != 1:
        raise TemplateError(f"{name}:{stack[-1][2]}: unexpected EOF: {{{{ if }}}} without {{{{ end }}}}")
    return Template(name=name, nodes=tuple(stack[0][0]))


def _action(
    action: str, stack: list[tuple[list[Node], list[Node] | None, int]], *, name: str, line: int
) -> None:
    words = action.split()
    if action.startswith("/*") and action.endswith("*/"):
        return
    if words == [".Message"]:
        stack[-1][0].append(None)
    elif words == ["if", ".Message"]:
        stack.append(([], None, line))
    elif words == ["else"] and len(stack) > 1 and stack[-1][1] is None:
        nodes, _, opened = stack.pop()
        stack.append(([], nodes, opened))
    elif words == ["end"] and len(stack) > 1:
        nodes, then, _ = stack.pop()
        node = (
            _If(then=tuple(nodes), otherwise=())
            if then is None
            else _If(then=tuple(then), otherwise=tuple(nodes))
        )
        stack[-1][0].append(node)
    else:
        raise TemplateError(f"{name}:{line}: unsupported action {{{{{action}}}}}")


@dataclass(frozen=True, slots=True)
class ErrorPages:
    """The parsed pages of one service, by status."""

    directory: str
    pages: dict[int, Template]

    def render(self, status: int, *, message: str = "") -> bytes | None:
        """The custom page for ``status``, or None to fall back to the built-in one."""
        template = self.pages.get(status)
        return None if template is None else template.render(message=message)


def load_error_pages(directory: str) -> ErrorPages:
    """Read and parse every ``NNN.html`` in ``directory`` (kamal-proxy's ``*.html``).

    Raises ``TemplateError`` when the directory is missing or unreadable, holds no ``*.html``, holds
    too many or too large pages, or when a page does not parse.
    """
    root = Path(directory)
    try:
        files = sorted(p for p in root.iterdir() if p.name.endswith(".html") and p.is_file())
    except OSError as exc:
        raise TemplateError(f"{directory}: {exc.strerror or exc}") from exc
    if not files:
        raise TemplateError(f"{directory}: pattern matches no files: *.html")
    if len(files) > MAX_PAGES:
        raise TemplateError(f"{directory}: more than {MAX_PAGES} pages")
    pages: dict[int, Template] = {}
    for path in files:
        try:
            if path.stat().st_size > MAX_PAGE_BYTES:
                raise TemplateError(f"{path.name}: larger than {MAX_PAGE_BYTES} bytes")
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"{path.name}: {exc}") from exc
        template = parse_template(text, name=path.name)
        found = _NAME.match(path.name)
        if found:  # other *.html files parse (as in Go) but no status uses them
            pages[int(found.group(1))] = template
    return ErrorPages(directory=directory, pages=pages)
