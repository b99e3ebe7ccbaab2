"""The routing snapshot: host and path-prefix lookup rules."""

from __future__ import annotations

from proxy.service_map import ServiceMap, strip_port


def test_service_map_lookup_rules() -> None:
    m: ServiceMap[str] = ServiceMap(
        [
            ("app.example.com", "/", "exact"),
            ("app.example.com", "/api", "api"),
            ("app.example.com", "/api/internal", "internal"),
            ("*.example.com", "/", "wild"),
            ("", "/", "default"),
            ("only-prefix.test", "/x", "x"),
        ]
    )
    assert m.lookup("app.example.com", "/") == ("exact", "/")
    assert m.lookup("app.example.com:443", "/api/v1") == ("api", "/api")
    assert m.lookup("app.example.com", "/api") == ("api", "/api")
    assert m.lookup("app.example.com", "/apiary") == ("exact", "/")
    assert m.lookup("app.example.com", "/api/internal/x") == ("internal", "/api/internal")
    assert m.lookup("b.example.com", "/") == ("wild", "/")
    assert m.lookup("a.b.example.com", "/") == ("default", "/")
    assert m.lookup("only-prefix.test", "/y") is None  # exact host bound: no fall-through
    assert m.lookup("only-prefix.test", "/x/y") == ("x", "/x")
    assert ServiceMap[str]().lookup("a", "/") is None


def test_strip_port_handles_ipv6_literals() -> None:
    assert strip_port("a.com:80") == "a.com"
    assert strip_port("[::1]:8080") == "[::1]"
    assert strip_port("[::1]") == "[::1]"
    assert strip_port("a.com") == "a.com"


def test_service_map_lookup_is_one_dict_access_for_many_hosts() -> None:
    m: ServiceMap[int] = ServiceMap((f"s{i}.example.com", "/", i) for i in range(10_000))
    assert m.lookup("s9999.example.com", "/x") == (9999, "/")
    assert len(m) == 10_000


def test_conflicts_are_bindings_another_service_owns() -> None:
    m: ServiceMap[str] = ServiceMap([("a.test", "/", "one"), ("a.test", "/api", "two"), ("", "/", "default")])
    assert m.conflicts(None, ["a.test"], ["/"])  # a new service may not take one's binding
    assert not m.conflicts("one", ["a.test"], ["/"])  # its own: a redeploy
    assert m.conflicts("one", ["a.test"], ["/", "/api"])
    assert not m.conflicts(None, ["*.a.test", "b.test"], ["/"])  # wildcard vs exact: distinct bindings
    assert m.conflicts(None, [""], ["/"]) and not m.conflicts(None, [""], ["/x"])
