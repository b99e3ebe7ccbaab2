"""One JSON line per request, with kamal-proxy's fields in kamal-proxy's order (msg "Request").

The line is rendered by hand rather than through json.dumps of a dict: this runs once per request
and the fields are known. Strings from the client go through ``quote``, which escapes as JSON.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from proxy.log import JsonLog, quote

if TYPE_CHECKING:
    from proxy.http.downstream import ClientConnection
    from proxy.http.parser import Headers

PROTO = {b"1.1": "HTTP/1.1", b"1.0": "HTTP/1.0"}


def _header(headers: Headers, lname: bytes) -> str:
    values = [v.decode("latin-1") for n, v in headers if n.lower() == lname]
    return ",".join(values)


class AccessLog:
    def __init__(self, *, log: JsonLog) -> None:
        self._log = log

    def request(self, conn: ClientConnection) -> None:
        now = time.time()
        head = conn.head
        service = conn.service
        target = conn.target
        if head is not None:
            length = head.content_length
            req_length = -1 if head.chunked else length
            proto = PROTO.get(head.version, "HTTP/1.1")
        else:
            req_length, proto = -1, "HTTP/1.1"
        ctx = conn.ctx
        line = (
            f'{{"time":"{self._log.timestamp(now)}","level":"INFO","msg":"Request",'
            f'"host":{quote(conn.host)},"port":{ctx.port},"path":{quote(conn.path)},'
            f'"request_id":{quote(conn.request_id)},"status":{conn.status or 200},'
            f'"service":{quote(service.name) if service else chr(34) * 2},'
            f'"target":{quote(target.address) if target else chr(34) * 2},'
            f'"duration":{int((now - conn.started) * 1e9)},"method":{quote(conn.method.decode("latin-1"))},'
            f'"req_content_length":{req_length},"req_content_type":{quote(conn.req_content_type)},'
            f'"resp_content_length":{conn.resp_bytes},"resp_content_type":{quote(conn.resp_content_type)},'
            f'"client_addr":{quote(conn.peer_ip)},"client_port":"{conn.peer_port}",'
            f'"remote_addr":{quote(conn.remote_addr)},"user_agent":{quote(conn.user_agent)},'
            f'"proto":"{proto}","scheme":"{ctx.scheme}","query":{quote(conn.query)}'
        )
        if service is not None and (service.log_request_headers or service.log_response_headers):
            extra = []
            if head is not None:
                for lname, key in service.log_request_headers:
                    extra.append(f'"{key}":{quote(_header(head.headers, lname))}')
            response = conn.response_head
            for lname, key in service.log_response_headers:
                value = _header(response.headers, lname) if response is not None else ""
                extra.append(f'"{key}":{quote(value)}')
            line += "," + ",".join(extra)
        self._log.line(line + "}")
