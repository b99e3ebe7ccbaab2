"""Choosing a parser backend: the parser kinds and the factories the listeners use."""

from __future__ import annotations

from typing import Literal

from proxy.http.parser import RequestParser, ResponseParser

ParserKind = Literal["httptools", "h11"]
PARSER_KINDS: tuple[ParserKind, ...] = ("httptools", "h11")


def make_request_parser(kind: ParserKind, *, max_head_size: int) -> RequestParser:
    if kind == "h11":
        from proxy.http.h11_parser import H11RequestParser

        return H11RequestParser(max_head_size=max_head_size)
    from proxy.http.httptools_parser import HttptoolsRequestParser

    return HttptoolsRequestParser(max_head_size=max_head_size)


def make_response_parser(kind: ParserKind, *, max_head_size: int) -> ResponseParser:
    if kind == "h11":
        from proxy.http.h11_parser import H11ResponseParser

        return H11ResponseParser(max_head_size=max_head_size)
    from proxy.http.httptools_parser import HttptoolsResponseParser

    return HttptoolsResponseParser(max_head_size=max_head_size)
