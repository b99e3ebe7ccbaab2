"""The access log's quoting of repeated values: the same JSON as quoting each time, within bounds."""

from __future__ import annotations

import json

import pytest

from proxy import access_log


@pytest.mark.parametrize(
    "value", ["", "app.example.com", 'a "quoted" \\ value', "tab\there\n", "é ü 日本", "\x00\x1f"]
)
def test_a_quoted_value_is_the_json_string_of_it_also_when_it_comes_from_the_cache(value: str) -> None:
    first = access_log._quoted(value)
    assert json.loads(first) == value
    assert access_log._quoted(value) == first


def test_the_quote_cache_never_holds_more_than_its_bound_of_entries() -> None:
    for i in range(access_log._QUOTED_ENTRIES * 3):
        value = f"client-{i}"
        assert json.loads(access_log._quoted(value)) == value
        assert len(access_log._QUOTED) <= access_log._QUOTED_ENTRIES


def test_long_values_are_quoted_but_not_kept() -> None:
    value = "x" * (access_log._QUOTED_LENGTH + 1)
    assert json.loads(access_log._quoted(value)) == value
    assert value not in access_log._QUOTED
