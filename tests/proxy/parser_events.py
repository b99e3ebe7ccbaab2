"""Parser events as comparable tuples, shared by the byte-table and the differential parser tests."""

from __future__ import annotations

from proxy.http.parser import RequestHead, ResponseHead


def head_tuple(e: RequestHead | ResponseHead) -> tuple[object, ...]:
    """Every field of a head that framing and forwarding depend on."""
    if isinstance(e, RequestHead):
        return (
            "req",
            e.method,
            e.target,
            e.version,
            tuple(e.headers),
            e.keep_alive,
            e.upgrade,
            e.expect_continue,
            e.content_length,
            e.chunked,
        )
    return (
        "resp",
        e.status,
        e.reason,
        e.version,
        tuple(e.headers),
        e.keep_alive,
        e.content_length,
        e.chunked,
    )
