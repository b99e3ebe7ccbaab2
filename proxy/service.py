"""A service: its options, its mode and its active targets, plus what the hot path needs precomputed."""

from __future__ import annotations

from typing import Protocol

from proxy import defaults
from proxy.http.tls_rules import EntryRules
from proxy.lifecycle import ModeEvent, ServiceMode, next_mode
from proxy.log import quote
from proxy.options import ServiceOptions, TargetOptions
from proxy.targets import TargetSet


class Held(Protocol):
    """A request held while its service is paused."""

    def release(self) -> None:
        """The service runs again (or stopped): go on from where the request was held."""
        ...


def log_field(prefix: str, header: str) -> str:
    return prefix + header.lower().replace("-", "_")


class Service:
    __slots__ = (
        "active",
        "buffer_memory",
        "buffer_requests",
        "buffer_responses",
        "entry",
        "forward_headers",
        "health_path",
        "held",
        "log_request_headers",
        "log_response_headers",
        "max_request_body",
        "max_response_body",
        "mode",
        "name",
        "name_json",
        "options",
        "pause_timeout",
        "response_timeout",
        "stop_message",
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
        stop_message: str = "",
        pause_timeout: float = defaults.MAX_PAUSE,
    ) -> None:
        self.name = name
        self.name_json = quote(name)
        self.active = active
        self.mode = mode
        self.stop_message = stop_message
        self.pause_timeout = pause_timeout
        self.held: set[Held] = set()  # requests waiting for the service to resume
        self.options = options
        self.target_options = target_options
        self.entry: EntryRules | None = None  # TLS / canonical-host rules; set when routes are published
        self.configure(options=options, target_options=target_options)

    def configure(self, *, options: ServiceOptions, target_options: TargetOptions) -> None:
        self.options = options
        self.target_options = target_options
        self.strip_prefix = options.strip_prefix
        self.forward_headers = target_options.forward_headers
        self.response_timeout = target_options.response_timeout
        path = target_options.health_check_config.path
        self.health_path = (path if path.startswith("/") else "/" + path).encode()
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

    def change_mode(self, event: ModeEvent, *, message: str = "", pause_timeout: float = 0.0) -> None:
        """Apply a pause / stop / resume; held requests go on once the service is not paused."""
        self.mode = next_mode(self.mode, event)
        if event is ModeEvent.STOP:
            self.stop_message = message
        elif event is ModeEvent.PAUSE:
            self.pause_timeout = pause_timeout
        if self.mode is not ServiceMode.PAUSED and self.held:
            held, self.held = self.held, set()
            for request in held:
                request.release()

    def __repr__(self) -> str:
        return f"Service({self.name})"
