"""ERB, as Kamal renders ``deploy.yml`` and every destination file before parsing the YAML.

Kamal runs ``ERB.new(template, trim_mode: "-").result``. When Ruby is installed (Debian's ``ruby``
package) the template is rendered by Ruby's own ``erb`` — exact behaviour, whatever Ruby the file holds
(``Kamal::Utils.docker_arch`` is provided, as Kamal does). Otherwise a documented subset is rendered
here, and anything outside it is an error naming the file, the line and the expression — never passed
through as text:

* tags: ``<%= expr %>``, ``<% code %>``, ``<%# comment %>``, ``<%%`` (a literal ``<%``); trim mode
  ``-``: ``<%-`` drops the indentation before it, ``-%>`` the newline after it;
* code: ``if EXPR`` / ``unless EXPR`` / ``elsif EXPR`` / ``else`` / ``end``;
* expressions: ``ENV["X"]``, ``ENV.fetch("X")``, ``ENV.fetch("X", default)``, string literals (no
  ``#{}``), integers, ``true`` / ``false`` / ``nil``, `` `command` `` (stdout, as Ruby's backticks),
  ``Kamal::Utils.docker_arch``, ``a ? b : c``, ``||``, ``&&``, ``!``, ``==``, ``!=``, parentheses,
  and the methods ``.strip``, ``.chomp``, ``.to_s``, ``.downcase``, ``.upcase``, ``.nil?``, ``.empty?``,
  and ActiveSupport's ``.blank?``, ``.present?``, ``.presence`` (Kamal loads ActiveSupport; the Ruby
  renderer defines these three the same way).

``DEPLOYER_ERB=ruby|subset`` forces one renderer (``auto``, the default, prefers Ruby).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

from deployer.errors import ConfigError

COMMAND_TIMEOUT = 60.0  # seconds, for backticks and for Ruby itself
Value = str | int | bool | None


class ErbError(ConfigError):
    """The template cannot be rendered; the message names the file, the line and the expression."""


def render(
    text: str, filename: str, *, env: Mapping[str, str] | None = None, renderer: str | None = None
) -> str:
    """Render ``text`` (read from ``filename``) as Kamal does, with ``env`` as ``ENV`` (default: this
    process's environment); text without ``<%`` is returned as is."""
    if "<%" not in text:
        return text
    env = os.environ if env is None else env
    choice = renderer or os.environ.get("DEPLOYER_ERB", "auto")
    if choice not in ("auto", "ruby", "subset"):
        raise ErbError(f"DEPLOYER_ERB={choice}: expected auto, ruby or subset")
    if choice == "ruby" or (choice == "auto" and shutil.which("ruby")):
        return render_with_ruby(text, filename, env)
    return render_subset(text, filename, env)


# --------------------------------------------------------------------------------------------------
# Ruby's own ERB

_RUBY = r"""
require "erb"
# Kamal loads ActiveSupport, so templates may use these three; defined here as ActiveSupport does.
class Object
  def blank? = respond_to?(:empty?) ? !!empty? : !self
  def present? = !blank?
  def presence = (self if present?)
end
class String
  def blank? = match?(/\A[[:space:]]*\z/)
end
module Kamal
  module Utils
    def self.docker_arch
      arch = `docker info --format '{{.Architecture}}'`.strip
      case arch
      when /aarch64/ then "arm64"
      when /x86_64/ then "amd64"
      else arch
      end
    end
  end
end
name = ARGV[0]
template = ERB.new($stdin.read, trim_mode: "-")
template.filename = name
begin
  $stdout.write(template.result)
rescue Exception => e
  where = (e.backtrace_locations || []).find { |l| l.path == name }
  line = where ? where.lineno : (e.message[/#{Regexp.escape(name)}:(\d+)/, 1] || 0)
  $stderr.write("#{line}\t#{e.message.lines.first.to_s.strip} (#{e.class})")
  exit 3
end
"""


def render_with_ruby(text: str, filename: str, env: Mapping[str, str] | None = None) -> str:
    ruby = shutil.which("ruby")
    if ruby is None:
        raise ErbError(f"{filename}: DEPLOYER_ERB=ruby but no `ruby` on PATH (Debian: apt-get install ruby)")
    try:
        proc = subprocess.run(
            [ruby, "-e", _RUBY, filename],
            input=text.encode(),
            env=dict(os.environ if env is None else env),
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ErbError(f"{filename}: ERB rendering took more than {COMMAND_TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        line_s, _, message = proc.stderr.decode(errors="replace").partition("\t")
        line = int(line_s) if line_s.isdigit() else 0
        source = _line_text(text, line)
        where = f"{filename}:{line}" if line else filename
        raise ErbError(
            f"{where}: ERB: {message.strip() or 'ruby failed'}" + (f" in `{source}`" if source else "")
        )
    return proc.stdout.decode()


def _line_text(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


# --------------------------------------------------------------------------------------------------
# The subset: tokens

_TAG = re.compile(r"<%%|<%[=#-]?")


@dataclass(frozen=True)
class Tag:
    kind: str  # "=", "#", "" (code)
    code: str
    line: int


def _tokens(text: str, filename: str) -> list[str | Tag]:
    out: list[str | Tag] = []
    pos = 0
    buf: list[str] = []
    while True:
        m = _TAG.search(text, pos)
        if not m:
            buf.append(text[pos:])
            break
        buf.append(text[pos : m.start()])
        if m.group() == "<%%":
            buf.append("<%")
            pos = m.end()
            continue
        line = text.count("\n", 0, m.start()) + 1
        end = text.find("%>", m.end())
        if end < 0:
            raise ErbError(f"{filename}:{line}: ERB: unterminated tag `{text[m.start() : m.start() + 40]}`")
        opener, body = m.group(), text[m.end() : end]
        pos = end + 2
        if opener == "<%-":
            _trim_indentation(buf)
        if body.endswith("-"):
            body = body[:-1]
            if text.startswith("\n", pos):
                pos += 1
        out.append("".join(buf))
        buf = []
        out.append(Tag({"<%=": "=", "<%#": "#"}.get(opener, ""), body.strip(), line))
    out.append("".join(buf))
    return [t for t in out if t != ""]


def _trim_indentation(buf: list[str]) -> None:
    """``<%-`` at the start of a line (after spaces/tabs only) drops those spaces."""
    text = "".join(buf)
    head, sep, tail = text.rpartition("\n")
    if tail.strip(" \t") == "":
        buf[:] = [head + sep]


# --------------------------------------------------------------------------------------------------
# The subset: blocks


@dataclass
class _Output:
    tag: Tag


@dataclass
class _If:
    branches: list[tuple[Tag, bool, list[_Node]]] = field(default_factory=list)  # (tag, negate, body)
    otherwise: list[_Node] = field(default_factory=list)


_Node = str | _Output | _If
_IF = re.compile(r"^(if|unless|elsif)\s+(.+?)(\s+then)?$", re.S)


def _parse_blocks(tokens: list[str | Tag], filename: str) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[_If, list[_Node]]] = []  # open ifs and the body being filled
    body = root
    for token in tokens:
        if isinstance(token, str):
            body.append(token)
            continue
        if token.kind == "#":
            continue
        if token.kind == "=":
            body.append(_Output(token))
            continue
        m = _IF.match(token.code)
        if m and m.group(1) in ("if", "unless"):
            block = _If()
            block.branches.append((token, m.group(1) == "unless", []))
            body.append(block)
            stack.append((block, body))
            body = block.branches[-1][2]
        elif m and stack:
            block = stack[-1][0]
            block.branches.append((token, False, []))
            body = block.branches[-1][2]
        elif token.code == "else" and stack:
            body = stack[-1][0].otherwise
        elif token.code == "end" and stack:
            body = stack.pop()[1]
        else:
            raise _unsupported(filename, token, f"`<% {token.code} %>`")
    if stack:
        tag = stack[-1][0].branches[0][0]
        raise ErbError(f"{filename}:{tag.line}: ERB: `<% {tag.code} %>` has no matching `<% end %>`")
    return root


def _unsupported(filename: str, tag: Tag, what: str) -> ErbError:
    return ErbError(
        f"{filename}:{tag.line}: ERB: {what} is outside the subset this deployer renders without Ruby "
        "(install Ruby — Debian: apt-get install ruby — to render any ERB)"
    )


# --------------------------------------------------------------------------------------------------
# The subset: expressions

_EXPR_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<cmd>`[^`]*`)
    | (?P<int>\d+)
    | (?P<op>==|!=|&&|\|\||::|[?:!().,\[\]])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*[?!]?)
    )""",
    re.X,
)
_METHODS = (
    "strip",
    "chomp",
    "to_s",
    "downcase",
    "upcase",
    "nil?",
    "empty?",
    "blank?",
    "present?",
    "presence",
)


class _Unsupported(Exception):
    pass


class _Expr:
    """A recursive-descent evaluator over the subset's expressions."""

    def __init__(self, code: str, env: Mapping[str, str]) -> None:
        self.env_vars = env
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        code = code.strip()
        while pos < len(code):
            m = _EXPR_TOKEN.match(code, pos)
            if not m or m.end() == pos:
                raise _Unsupported(code[pos:])
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
            while pos < len(code) and code[pos].isspace():
                pos += 1
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens) or (expected is not None and self.tokens[self.i][1] != expected):
            raise _Unsupported(expected or "end of expression")
        self.i += 1
        return self.tokens[self.i - 1]

    def evaluate(self) -> Value:
        value = self.ternary()
        if self.i != len(self.tokens):
            raise _Unsupported(self.tokens[self.i][1])
        return value

    def ternary(self) -> Value:
        cond = self.or_()
        if self.peek() != "?":
            return cond
        self.take("?")
        yes = self.ternary()
        self.take(":")
        no = self.ternary()
        return yes if _truthy(cond) else no

    def or_(self) -> Value:
        value = self.and_()
        while self.peek() in ("||", "or"):
            self.take()
            right = self.and_()
            value = value if _truthy(value) else right
        return value

    def and_(self) -> Value:
        value = self.not_()
        while self.peek() in ("&&", "and"):
            self.take()
            right = self.not_()
            value = right if _truthy(value) else value
        return value

    def not_(self) -> Value:
        if self.peek() in ("!", "not"):
            self.take()
            return not _truthy(self.not_())
        return self.equality()

    def equality(self) -> Value:
        value = self.postfix()
        while self.peek() in ("==", "!="):
            op = self.take()[1]
            right = self.postfix()
            value = (value == right) if op == "==" else (value != right)
        return value

    def postfix(self) -> Value:
        value = self.primary()
        while self.peek() == ".":
            self.take(".")
            method = self.take()[1]
            value = _call(value, method)
        return value

    def primary(self) -> Value:
        kind, text = self.take()
        if kind == "str":
            return _string(text)
        if kind == "int":
            return int(text)
        if kind == "cmd":
            return _backticks(text[1:-1], self.env_vars)
        if text == "(":
            value = self.ternary()
            self.take(")")
            return value
        if text in ("true", "false", "nil"):
            return {"true": True, "false": False, "nil": None}[text]
        if text == "ENV":
            return self.env()
        if text == "Kamal":
            for part in ("::", "Utils", "."):
                self.take(part)
            self.take("docker_arch")
            return docker_arch(self.env_vars)
        raise _Unsupported(text)

    def env(self) -> Value:
        if self.peek() == "[":
            self.take("[")
            name = self.ternary()
            self.take("]")
            return self.env_vars.get(str(name))
        self.take(".")
        self.take("fetch")
        self.take("(")
        name = str(self.ternary())
        default: Value = None
        has_default = False
        if self.peek() == ",":
            self.take(",")
            default, has_default = self.ternary(), True
        self.take(")")
        if name in self.env_vars:
            return self.env_vars[name]
        if has_default:
            return default
        raise KeyError(f'key not found: "{name}"')


def _truthy(value: Value) -> bool:
    return value is not None and value is not False


def _string(literal: str) -> str:
    body = literal[1:-1]
    if literal[0] == "'":
        return body.replace("\\'", "'").replace("\\\\", "\\")
    if "#{" in body:
        raise _Unsupported("string interpolation #{...}")
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "e": "\x1b", "0": "\0"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), body)


def _call(value: Value, method: str) -> Value:
    if method not in _METHODS:
        raise _Unsupported(f".{method}")
    if method == "nil?":
        return value is None
    if method in ("blank?", "present?", "presence"):
        blank = not _truthy(value) or (isinstance(value, str) and value.strip() == "")
        if method == "presence":
            return None if blank else value
        return blank if method == "blank?" else not blank
    if method == "to_s":
        return to_ruby_s(value)
    if not isinstance(value, str):
        raise TypeError(f"undefined method `{method}' for {to_ruby_inspect(value)}")
    if method == "strip":
        return value.strip(" \t\n\v\f\r\0")
    if method == "chomp":
        return value.removesuffix("\n").removesuffix("\r")
    if method == "downcase":
        return value.lower()
    if method == "upcase":
        return value.upper()
    return value == ""  # empty?


def _backticks(command: str, env: Mapping[str, str]) -> str:
    """Ruby's backticks: the command's stdout; its status is not checked; stderr passes through."""
    proc = subprocess.run(
        ["sh", "-c", command], stdout=subprocess.PIPE, env=dict(env), timeout=COMMAND_TIMEOUT, check=False
    )
    return proc.stdout.decode(errors="replace")


def docker_arch(env: Mapping[str, str]) -> str:
    """``Kamal::Utils.docker_arch``: the local Docker engine's architecture, as Docker names it."""
    arch = _backticks("docker info --format '{{.Architecture}}'", env).strip()
    if "aarch64" in arch:
        return "arm64"
    if "x86_64" in arch:
        return "amd64"
    return arch


def to_ruby_s(value: Value) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def to_ruby_inspect(value: Value) -> str:
    return "nil" if value is None else repr(value)


# --------------------------------------------------------------------------------------------------
# The subset: rendering


def render_subset(text: str, filename: str, env: Mapping[str, str] | None = None) -> str:
    nodes = _parse_blocks(_tokens(text, filename), filename)
    out: list[str] = []
    _Renderer(filename, os.environ if env is None else env).emit(nodes, out)
    return "".join(out)


@dataclass(frozen=True)
class _Renderer:
    filename: str
    env: Mapping[str, str]

    def emit(self, nodes: list[_Node], out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _Output):
                out.append(to_ruby_s(self.evaluate(node.tag, node.tag.code)))
            else:
                self.emit(self.chosen(node), out)

    def chosen(self, block: _If) -> list[_Node]:
        for tag, negate, body in block.branches:
            m = _IF.match(tag.code)
            assert m is not None
            if _truthy(self.evaluate(tag, m.group(2))) != negate:
                return body
        return block.otherwise

    def evaluate(self, tag: Tag, code: str) -> Value:
        return _evaluate(tag, code, self.filename, self.env)


def _evaluate(tag: Tag, code: str, filename: str, env: Mapping[str, str]) -> Value:
    try:
        return _Expr(code, env).evaluate()
    except _Unsupported as e:
        raise _unsupported(filename, tag, f"`{code}` (at `{e}`)") from None
    except (KeyError, TypeError) as e:
        message = e.args[0] if e.args else str(e)
        raise ErbError(f"{filename}:{tag.line}: ERB: {message} in `{code}`") from None
    except subprocess.TimeoutExpired:
        raise ErbError(
            f"{filename}:{tag.line}: ERB: `{code}` took more than {COMMAND_TIMEOUT:.0f}s"
        ) from None
