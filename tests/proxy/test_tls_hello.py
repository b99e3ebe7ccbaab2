"""The ClientHello reader: real hellos from OpenSSL, fragmented, truncated, malformed, oversized."""

from __future__ import annotations

import ssl

import pytest

from proxy.tls_hello import (
    MAX_HELLO_BYTES,
    ClientHello,
    HelloError,
    Incomplete,
    parse_client_hello,
)


def real_hello(server_name: str | None = "app.example.com", alpn: list[str] | None = None) -> bytes:
    """The bytes OpenSSL's client sends first."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def refragment(hello: bytes, split: int) -> bytes:
    """The same handshake message carried by two records, the first with ``split`` bytes."""
    body = hello[5:]
    header = hello[:3]
    first, second = body[:split], body[split:]
    return header + len(first).to_bytes(2, "big") + first + header + len(second).to_bytes(2, "big") + second


def test_reads_server_name_and_alpn_from_a_real_client_hello() -> None:
    hello = real_hello("App.Example.COM", ["acme-tls/1", "http/1.1"])
    assert parse_client_hello(hello) == ClientHello(
        server_name="app.example.com", alpn=("acme-tls/1", "http/1.1")
    )


def test_hello_without_sni_or_alpn_has_empty_fields() -> None:
    assert parse_client_hello(real_hello(None)) == ClientHello(server_name="", alpn=())


def test_every_truncation_asks_for_more_bytes_than_it_has() -> None:
    hello = real_hello("app.example.com", ["http/1.1"])
    for cut in range(len(hello)):
        result = parse_client_hello(hello[:cut])
        assert isinstance(result, Incomplete), cut
        assert result.need > cut
    assert isinstance(parse_client_hello(hello), ClientHello)


def test_hello_split_over_two_records_is_reassembled() -> None:
    hello = real_hello("two.example.com", ["h2", "http/1.1"])
    for split in (1, 3, 4, 40, len(hello) - 6):
        data = refragment(hello, split)
        assert parse_client_hello(data) == ClientHello(server_name="two.example.com", alpn=("h2", "http/1.1"))
        assert isinstance(parse_client_hello(data[: len(data) - 1]), Incomplete)


def test_bytes_after_the_hello_are_ignored() -> None:
    hello = real_hello("a.example.com")
    assert parse_client_hello(hello + b"\x17\x03\x03garbage").server_name == "a.example.com"  # type: ignore[union-attr]


def _with_ext(exts: bytes) -> bytes:
    """A minimal ClientHello carrying these raw extensions."""
    body = b"\x03\x03" + b"\0" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += len(exts).to_bytes(2, "big") + exts
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(msg).to_bytes(2, "big") + msg


def _sni(name: bytes) -> bytes:
    entry = b"\x00" + len(name).to_bytes(2, "big") + name
    data = len(entry).to_bytes(2, "big") + entry
    return b"\x00\x00" + len(data).to_bytes(2, "big") + data


def test_minimal_hand_built_hello_parses() -> None:
    assert parse_client_hello(_with_ext(_sni(b"x.example.org."))) == ClientHello(
        server_name="x.example.org", alpn=()
    )


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "plain HTTP on the TLS port"),
        (b"\x16\x02\x00\x00\x10" + b"\0" * 16, "SSLv2-era record version"),
        (b"\x16\x03\x01\x00\x00", "empty record"),
        (b"\x16\x03\x01\x40\x01", "record longer than 16 KiB"),
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "a ServerHello"),
        (_with_ext(_sni(b"bad name")), "space in the server name"),
        (_with_ext(_sni(b"caf\xc3\xa9.example")), "non-ASCII server name"),
        (_with_ext(_sni(b"")), "empty server name"),
        (_with_ext(_sni(b"a" * 300)), "overlong server name"),
        (_with_ext(_sni(b"a.com") + _sni(b"b.com")), "duplicate extension"),
        (_with_ext(b"\x00\x10\x00\x03\x00\x01\x00"), "empty ALPN name"),
        (_with_ext(b"\x00\x10\x00\x05\x00\x09ab"), "ALPN list longer than its extension"),
        (_with_ext(b"\x00\x00\x00\x09"), "extension longer than the list"),
    ],
)
def test_malformed_input_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(HelloError):
        parse_client_hello(data)


def test_hello_longer_than_the_bound_is_refused_before_it_is_buffered() -> None:
    hello = real_hello("a.example.com")
    # a handshake message claiming 20 KiB spread over two full-size records
    msg = b"\x01" + (20000).to_bytes(3, "big") + b"\0" * (16384 - 4)
    data = b"\x16\x03\x01" + (16384).to_bytes(2, "big") + msg
    result = parse_client_hello(data)
    assert isinstance(result, Incomplete)
    with pytest.raises(HelloError):
        parse_client_hello(data + b"\x16\x03\x01\x10\x00")
    assert len(hello) < MAX_HELLO_BYTES


def test_mutated_hellos_only_ever_parse_ask_for_more_or_raise_hello_error() -> None:
    import random

    rng = random.Random(8)
    hello = real_hello("mutate.example.com", ["h2", "http/1.1"])
    for _ in range(3000):
        data = bytearray(hello)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = rng.randint(0, len(data))
        try:
            result = parse_client_hello(bytes(data[:cut]))
        except HelloError:
            continue
        assert isinstance(result, ClientHello | Incomplete)
