"""One JSON line per request, with kamal-proxy's fields in kamal-proxy's order (msg "Request").

The line is rendered by hand rather than through json.dumps of a dict: this runs once per request
and the fields are known. Strings from the client go through ``quote`` (JSON escaping); values the
proxy itself made (service and target names, generated request IDs, the peer address) are quoted
once, where they are made.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from proxy.log import JsonLog, quote

if TYPE_CHECKING:
    from proxy.http.parser import Headers
    from proxy.http.record import ExchangeRecord

PROTO: Final = {b"1.1": "HTTP/1.1", b"1.0": "HTTP/1.0", b"2.0": "HTTP/2.0"}
_METHODS: Final[dict[bytes, str]] = {}
_EMPTY_STRING: Final = '""'  # a JSON empty string
# Values that repeat from request to request (Host, User-Agent, content types, the client's
# address), quoted once: a look-up costs a fifth of quoting. Bounded in entries and in value length,
# and emptied when full, so values a client varies cost what quoting costs and never grow it.
_QUOTED: Final[dict[str, str]] = {}
_QUOTED_ENTRIES: Final = 512
_QUOTED_LENGTH: Final = 256


def _header(headers: Headers, lname: bytes) -> str:
    values = [v.decode("latin-1") for n, v in headers if n.lower() == lname]
    return ",".join(values)


def _method(method: bytes) -> str:
    quoted = _METHODS.get(method)
    if quoted is None:
        quoted = quote(method.decode("latin-1"))
        if len(_METHODS) < 64:  # arbitrary client methods must not grow the cache without bound
            _METHODS[method] = quoted
    return quoted


def _quoted(value: str) -> str:
    quoted = _QUOTED.get(value)
    if quoted is None:
        quoted = quote(value)
        if len(value) <= _QUOTED_LENGTH:
            if len(_QUOTED) >= _QUOTED_ENTRIES:
                _QUOTED.clear()
            _QUOTED[value] = quoted
    return quoted


class AccessLog:
    """An exchange observer: one line per finished exchange."""

    def __init__(self, *, log: JsonLog) -> None:
        self._log = log

    def exchange_finished(self, record: ExchangeRecord) -> None:
        now = time.time()
        conn = record
        head = record.head
        service = record.service
        target = record.target
        req_length = -1 if head.chunked else head.content_length
        proto = PROTO.get(head.version, "HTTP/1.1")
        line = (
            f'{{"time":"{self._log.timestamp(now)}","level":"INFO","msg":"Request",'
            f'"host":{_quoted(conn.host)},"port":{conn.port},"path":{quote(conn.path)},'
            f'"request_id":{conn.request_id_json or quote(conn.request_id)},"status":{conn.status or 200},'
            f'"service":{service.name_json if service is not None else _EMPTY_STRING},'
            f'"target":{target.address_json if target is not None else _EMPTY_STRING},'
            f'"duration":{int((now - conn.started) * 1e9)},"method":{_METHODS.get(conn.method) or _method(conn.method)},'
            f'"req_content_length":{req_length},"req_content_type":{_quoted(conn.req_content_type)},'
            f'"resp_content_length":{conn.resp_bytes},"resp_content_type":{_quoted(conn.resp_content_type)},'
            f"{conn.client_json},"
            f'"remote_addr":{_quoted(conn.remote_addr)},"user_agent":{_quoted(conn.user_agent)},'
            f'"proto":"{proto}","scheme":"{conn.scheme}","query":{quote(conn.query) if conn.query else _EMPTY_STRING}'
        )
        if service is not None and (service.log_request_headers or service.log_response_headers):
            extra = []
            for lname, key in service.log_request_headers:
                extra.append(f'"{key}":{quote(_header(head.headers, lname))}')
            response = conn.response_head
            for lname, key in service.log_response_headers:
                value = _header(response.headers, lname) if response is not None else ""
                extra.append(f'"{key}":{quote(value)}')
            line += "," + ",".join(extra)
        self._log.line(line + "}")
