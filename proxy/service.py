"""A service: its options, its mode and its active targets, plus what the hot path needs precomputed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from proxy import defaults
from proxy.error_pages import ErrorPages
from proxy.http.cookies import ROLLOUT_COOKIE, WRITER_COOKIE, request_cookie, writer_affinity_active
from proxy.http.tls_rules import EntryRules
from proxy.lifecycle import ModeEvent, ServiceMode, next_mode
from proxy.log import quote
from proxy.options import ServiceOptions, TargetOptions
from proxy.rollout import RolloutSplit
from proxy.targets import TargetSet

if TYPE_CHECKING:
    from proxy.http.parser import RequestHead
    from proxy.targets import Target

# Requests the readers may answer (the list; kamal-proxy's code takes GET and HEAD only).
READ_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS"})


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
        "affinity_enabled",
        "affinity_timeout",
        "buffer_memory",
        "buffer_requests",
        "buffer_responses",
        "client_ip_header",
        "entry",
        "error_pages",
        "excluded_metrics_paths",
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
        "plain",
        "read_websockets",
        "response_timeout",
        "rewrites_response",
        "rollout",
        "rollout_split",
        "scope_cookie_paths",
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
        rollout: TargetSet | None = None,
        rollout_split: RolloutSplit | None = None,
        error_pages: ErrorPages | None = None,
    ) -> None:
        self.name = name
        self.name_json = quote(name)
        self.active = active
        self.rollout = rollout
        self.rollout_split = rollout_split
        self.error_pages = error_pages
        self.mode = mode
        self.stop_message = stop_message
        self.pause_timeout = pause_timeout
        self.held: set[Held] = set()  # requests waiting for the service to resume
        self.options = options
        self.target_options = target_options
        self.entry: EntryRules | None = None  # TLS / canonical-host rules; set when routes are published
        self.configure(options=options, target_options=target_options, error_pages=error_pages)

    def configure(
        self, *, options: ServiceOptions, target_options: TargetOptions, error_pages: ErrorPages | None = None
    ) -> None:
        self.options = options
        self.target_options = target_options
        self.error_pages = error_pages
        self.affinity_timeout = options.writer_affinity_timeout
        self.read_websockets = options.read_targets_accept_websockets
        self.client_ip_header = options.client_ip_header.lower().encode()
        self.excluded_metrics_paths = frozenset(options.exclude_metrics_paths)
        self.scope_cookie_paths = target_options.scope_cookie_paths
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
        self.update_routing()

    def update_routing(self) -> None:
        """Recompute the hot path's shortcuts after the targets, the split or the options changed."""
        split = self.rollout_split is not None and self.rollout is not None
        readers = self.active.has_readers or (self.rollout is not None and self.rollout.has_readers)
        self.plain = not split and not readers  # one round robin over the active writers, nothing else
        self.affinity_enabled = readers and self.affinity_timeout > 0
        self.rewrites_response = self.scope_cookie_paths or self.affinity_enabled

    def choose(self, head: RequestHead, now: float) -> tuple[Target | None, bool]:
        """The target for a request when the service is not ``plain``, and whether its response
        gets the writer-affinity cookie. Rollout split by the ``kamal-rollout`` cookie first, then
        reads to readers (unless the ``kamal-writer`` cookie is unexpired), writes to writers."""
        cookies = [value.decode("latin-1") for name, value in head.headers if name.lower() == b"cookie"]
        targets = self.active
        split = self.rollout_split
        if (
            split is not None
            and self.rollout is not None
            and split.uses_rollout(request_cookie(cookies, ROLLOUT_COOKIE))
        ):
            targets = self.rollout
        if not targets.has_readers:
            return targets.pick(), False
        if head.method in READ_METHODS and (self.read_websockets or not head.upgrade):
            if writer_affinity_active(request_cookie(cookies, WRITER_COOKIE), now=now):
                return targets.pick(), False
            return targets.pick_reader(), False
        return targets.pick(), self.affinity_timeout > 0

    def target_sets(self) -> list[TargetSet]:
        return [self.active] if self.rollout is None else [self.active, self.rollout]

    def change_mode(self, event: ModeEvent, *, message: str = "", pause_timeout: float = 0.0) -> None:
        """Apply a pause / stop / resume; held requests go on once the service is not paused."""
        self.set_mode(
            next_mode(self.mode, event),
            stop_message=message if event is ModeEvent.STOP else self.stop_message,
            pause_timeout=pause_timeout if event is ModeEvent.PAUSE else self.pause_timeout,
        )

    def set_mode(self, mode: ServiceMode, *, stop_message: str, pause_timeout: float) -> None:
        """Take a mode the control process decided (a worker's copy); held requests go on once
        the service is not paused."""
        self.mode = mode
        self.stop_message = stop_message
        self.pause_timeout = pause_timeout
        if self.mode is not ServiceMode.PAUSED and self.held:
            held, self.held = self.held, set()
            for request in held:
                request.release()

    def __repr__(self) -> str:
        return f"Service({self.name})"
