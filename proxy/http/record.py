"""The observer seam: what is known about one finished exchange, for the access log and metrics.

An ``Exchange`` is itself an ``ExchangeRecord`` (it inherits these slots), so reporting one costs no
copy; observers read only these fields, never the connection or the exchange's working state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from proxy.http.parser import RequestHead, ResponseHead
    from proxy.service import Service
    from proxy.targets import Target


class ExchangeRecord:
    __slots__ = (
        "client_json",
        "head",
        "host",
        "metered",
        "method",
        "path",
        "port",
        "query",
        "remote_addr",
        "req_content_type",
        "request_id",
        "request_id_json",
        "resp_bytes",
        "resp_content_type",
        "response_head",
        "scheme",
        "service",
        "started",
        "status",
        "target",
        "user_agent",
    )

    def __init__(
        self, *, head: RequestHead, client_json: str, port: int, scheme: str, started: float
    ) -> None:
        self.head = head
        self.method = head.method
        self.client_json = client_json  # '"client_addr":"…","client_port":"…"', made once per connection
        self.port = port  # the listener's
        self.scheme = scheme
        self.started = started  # wall clock, seconds
        self.path = ""
        self.query = ""
        self.host = ""
        self.request_id = ""
        self.request_id_json = ""  # set when the proxy made the ID: no escaping needed
        self.remote_addr = ""
        self.user_agent = ""
        self.req_content_type = ""
        self.service: Service | None = None
        self.target: Target | None = None
        self.status = 0  # 0 until a response head; 499 when the client went away first
        self.response_head: ResponseHead | None = None
        self.resp_bytes = 0
        self.resp_content_type = ""
        self.metered = False  # counted in flight by the metrics (routed, path not excluded)


class ExchangeObserver(Protocol):
    def exchange_finished(self, record: ExchangeRecord) -> None: ...
