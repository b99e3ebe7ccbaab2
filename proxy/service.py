"""A service: its options, its mode and its active targets, plus what the hot path needs precomputed."""

from __future__ import annotations

from proxy.lifecycle import ServiceMode
from proxy.log import quote
from proxy.options import ServiceOptions, TargetOptions
from proxy.targets import TargetSet


def log_field(prefix: str, header: str) -> str:
    return prefix + header.lower().replace("-", "_")


class Service:
    __slots__ = (
        "active",
        "buffer_memory",
        "buffer_requests",
        "buffer_responses",
        "forward_headers",
        "log_request_headers",
        "log_response_headers",
        "max_request_body",
        "max_response_body",
        "mode",
        "name",
        "name_json",
        "options",
        "response_timeout",
        "strip_prefix",
        "target_options",
    )

    def __init__(
        self,
        *,
        name: str,
        options: ServiceOptions,
        target_options: TargetOptions,
        active: TargetSet,
        mode: ServiceMode = ServiceMode.RUNNING,
    ) -> None:
        self.name = name
        self.name_json = quote(name)
        self.active = active
        self.mode = mode
        self.options = options
        self.target_options = target_options
        self.configure(options=options, target_options=target_options)

    def configure(self, *, options: ServiceOptions, target_options: TargetOptions) -> None:
        self.options = options
        self.target_options = target_options
        self.strip_prefix = options.strip_prefix
        self.forward_headers = target_options.forward_headers
        self.response_timeout = target_options.response_timeout
        self.buffer_requests = target_options.buffer_requests
        self.buffer_responses = target_options.buffer_responses
        self.buffer_memory = target_options.max_memory_buffer_size
        self.max_request_body = target_options.max_request_body_size
        self.max_response_body = target_options.max_response_body_size
        # (lower-case header name as bytes, access-log key)
        self.log_request_headers = tuple(
            (h.lower().encode(), log_field("req_", h)) for h in target_options.log_request_headers
        )
        self.log_response_headers = tuple(
            (h.lower().encode(), log_field("resp_", h)) for h in target_options.log_response_headers
        )

    def __repr__(self) -> str:
        return f"Service({self.name})"
