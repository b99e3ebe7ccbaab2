"""ERB as Kamal renders deploy.yml (trim mode "-"): Ruby's own erb and the built-in subset, over the
same templates, must give the same text; outside the subset, an error naming file, line, expression."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from deployer.erb import ErbError, render, render_subset, render_with_ruby

Renderer = Callable[[str, str, Mapping[str, str]], str]
RENDERERS = [
    pytest.param(render_subset, id="subset"),
    pytest.param(
        render_with_ruby,
        id="ruby",
        marks=pytest.mark.skipif(shutil.which("ruby") is None, reason="needs the Debian package ruby"),
    ),
]
ENV = {"PATH": "/usr/bin:/bin", "USER_NAME": "deploy-bot", "STAGING": "1", "EMPTY": "", "ONE": "1"}

TEMPLATES = [
    ('user: <%= ENV["USER_NAME"] %>\n', "user: deploy-bot\n"),
    ("user: <%= ENV['USER_NAME'] %>\n", "user: deploy-bot\n"),
    ('missing: <%= ENV["NOT_SET"] %>|\n', "missing: |\n"),
    (
        'd: <%= ENV.fetch("NOT_SET", "fallback") %> <%= ENV.fetch("USER_NAME", "x") %>\n',
        "d: fallback deploy-bot\n",
    ),
    ('arch: <%= ENV["ARM"] ? "arm64" : "amd64" %>\n', "arch: amd64\n"),
    ('empty-is-truthy: <%= ENV["EMPTY"] ? "yes" : "no" %>\n', "empty-is-truthy: yes\n"),
    (
        '<% if ENV["STAGING"] -%>\nservers: [s]\n<% else -%>\nservers: [p]\n<% end -%>\nx: 1\n',
        "servers: [s]\nx: 1\n",
    ),
    ('<% unless ENV["STAGING"] %>\na: 1\n<% end %>\nb: 2\n', "\nb: 2\n"),
    (
        '<% if ENV["ONE"] == "2" -%>\ntwo\n<% elsif ENV["ONE"] == "1" -%>\none\n<% else -%>\nnone\n<% end -%>\n',
        "one\n",
    ),
    ('  <%- if !ENV["NOPE"] && ENV["ONE"] != "0" -%>\nyes\n  <%- end -%>\n', "yes\n"),
    ('v: <%= (ENV["NOPE"] || "dflt").upcase %>\n', "v: DFLT\n"),
    ("sha: <%= `printf 'abc\\n'`.strip %>|<%= `printf 'x\\n'`.chomp %>|\n", "sha: abc|x|\n"),
    ('n: <%= nil %>|<%= true %>|<%= 42 %>|<%= ENV["NOPE"].nil? %>\n', "n: |true|42|true\n"),
    ('lit: "<%%= kept %>"\n<%# a comment %>\nafter\n', 'lit: "<%= kept %>"\n\nafter\n'),
    ('s: <%= "a \\"quoted\\" \\\\ word" %>\n', 's: a "quoted" \\ word\n'),
    (
        'p: <%= ENV["EMPTY"].presence || "d" %> <%= ENV["USER_NAME"].present? %> <%= ENV["NOPE"].blank? %>\n',
        "p: d true true\n",
    ),
]


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize(("template", "expected"), TEMPLATES)
def test_both_renderers_give_kamals_text(renderer: Renderer, template: str, expected: str) -> None:
    assert renderer(template, "config/deploy.yml", ENV) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "a: 1\nb: <%= Time.now %>\n",
            "config/deploy.yml:2: ERB: `Time.now` (at `Time`) is outside the subset",
        ),
        ("a: <%= ENV['X'].split(',') %>\n", "config/deploy.yml:1: ERB: `ENV['X'].split(',')` (at `.split`)"),
        (
            "<% [1, 2].each do |i| %>\n<% end %>\n",
            "config/deploy.yml:1: ERB: `<% [1, 2].each do |i| %>` is outside",
        ),
        ('a: <%= "#{ENV["X"]}" %>\n', "(at `string interpolation #{...}`) is outside the subset"),
        (
            "\n\n<% if ENV['X'] %>\nno end\n",
            "config/deploy.yml:3: ERB: `<% if ENV['X'] %>` has no matching `<% end %>`",
        ),
        ("a: <%= ENV['X'] \n", "config/deploy.yml:1: ERB: unterminated tag"),
        ('a: <%= ENV.fetch("NOT_SET") %>\n', 'config/deploy.yml:1: ERB: key not found: "NOT_SET"'),
        ('a: <%= ENV["NOT_SET"].strip %>\n', "config/deploy.yml:1: ERB: undefined method `strip' for nil"),
    ],
)
def test_subset_refuses_what_it_cannot_render_naming_file_line_and_expression(
    template: str, message: str
) -> None:
    with pytest.raises(ErbError) as exc:
        render_subset(template, "config/deploy.yml", ENV)
    assert message in str(exc.value)


@pytest.mark.skipif(shutil.which("ruby") is None, reason="needs the Debian package ruby")
def test_ruby_renders_beyond_the_subset_and_reports_errors_with_file_and_line() -> None:
    assert render_with_ruby("y: <%= [1, 2].map { |i| i * 2 }.join(',') %>\n", "deploy.yml", ENV) == "y: 2,4\n"
    with pytest.raises(
        ErbError, match=r"^config/deploy.yml:3: ERB: undefined local variable or method `nope'"
    ):
        render_with_ruby("a: 1\nb: 2\nc: <%= nope %>\n", "config/deploy.yml", ENV)
    with pytest.raises(ErbError, match=r'config/deploy.yml:1: ERB: key not found: "NOT_SET" \(KeyError\)'):
        render_with_ruby('a: <%= ENV.fetch("NOT_SET") %>\n', "config/deploy.yml", ENV)


def test_text_without_tags_is_not_rendered_and_the_choice_is_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEPLOYER_ERB", "ruby")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert render("a: 1 # no tags\n", "f.yml") == "a: 1 # no tags\n"
    with pytest.raises(ErbError, match=r"f.yml: DEPLOYER_ERB=ruby but no `ruby` on PATH"):
        render("a: <%= 1 %>\n", "f.yml")
    monkeypatch.setenv("DEPLOYER_ERB", "perl")
    with pytest.raises(ErbError, match=r"DEPLOYER_ERB=perl: expected auto, ruby or subset"):
        render("a: <%= 1 %>\n", "f.yml")


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize(("engine", "arch"), [("x86_64", "amd64"), ("aarch64", "arm64"), ("s390x", "s390x")])
def test_kamal_utils_docker_arch_asks_the_local_docker(
    renderer: Renderer, engine: str, arch: str, tmp_path: Path
) -> None:
    docker = tmp_path / "docker"
    docker.write_text(f'#!/bin/sh\n[ "$1 $2" = "info --format" ] && echo {engine}\n')
    docker.chmod(0o755)
    env = {**ENV, "PATH": f"{tmp_path}:/usr/bin:/bin"}
    assert renderer("arch: <%= Kamal::Utils.docker_arch %>\n", "deploy.yml", env) == f"arch: {arch}\n"
