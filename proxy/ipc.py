"""The messages between the control process and its workers, and how they are framed.

One stream (a Unix socket pair) per worker carries them both ways, in order:

control → worker
  ``Snapshot``      the routing state, versioned: each service in the state file's JSON form
                    (options, targets, mode, stop message, pause timeout) plus the id of its target set
                    and its targets' health. Whole (``base`` 0: exactly these services), or a change
                    to version ``base`` (only the services that changed, and the names removed). A
                    worker builds its routes from it and swaps them in one assignment, so it never
                    serves a half-applied change; holding and releasing (pause / resume) are just
                    modes in it.
  ``Drain``         a deploy replaced a target set: finish what is in flight to it until ``timeout``,
                    cancel the rest, report.
  ``Settle``        a pause or stop: the same for the active targets of a service (which stay).
  ``Challenges``    the ACME HTTP-01 answers to give (token → key authorization), all of them.
  ``TlsService``    one service's TLS settings (hosts, default host, ACME settings, on-demand URL, or a
                    static certificate's PEM as the control process read it at deploy), or their removal.
                    Sent before the snapshot of the same change, so an ``Applied`` covers them too.
  ``Certificate``   an ACME certificate (cache folder, host, key and chain PEM, expiry) to serve.
  ``AlpnChallenge`` a TLS-ALPN-01 challenge certificate for a host, or its removal (empty PEM).
  ``Obtained``      the answer to an ``Obtain``: empty error = the certificate was sent before it.
  ``Sync``          answer once everything sent before is applied (an ACME challenge is answered to
                    the CA only once every worker has it).
  ``CollectMetrics`` send your request-metrics table.
  ``Shutdown``      stop accepting, finish what is in flight within ``timeout``, exit.

worker → control
  ``Applied``       this snapshot version is what I serve now (the first one also means "ready").
  ``Drained``       a Drain or Settle is done: how many requests were in flight, how many were cancelled.
  ``MetricsTable``  a ``RequestMetrics.snapshot()``.
  ``Obtain``        a handshake needs an ACME certificate for (service, host): issue it (or say why not).
  ``Synced``        the answer to a ``Sync``.

Framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON (one object with a ``type``).
Both ends are our own processes, but a frame is still checked (size bound, types) before it is used:
a bad frame is a ``MessageError``, never a crash in the middle of applying it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from proxy.lifecycle import TargetState
from proxy.schema import SchemaError
from proxy.state import SavedService, encode_entry
from proxy.tls import AcmeSettings, ServiceTls

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024  # bytes; a 10,000-service snapshot is ~10 MB
MAX_PEM = 1024 * 1024  # characters of one key-and-chain PEM
MAX_TEXT = 4096  # characters of a name, host, URL, folder or error
MAX_HOSTS = 100_000  # hosts of one TLS service


class MessageError(ValueError):
    """A frame that is not a valid message."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One revision of a service's configuration: what the state file holds for it."""

    revision: int  # a new one whenever options, targets, mode, stop message or pause timeout change
    saved: SavedService
    text: str = field(default="", compare=False)  # its JSON, encoded once (control side)

    @classmethod
    def of(cls, revision: int, saved: SavedService) -> Entry:
        return cls(revision=revision, saved=saved, text=encode_entry(saved))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceState:
    """One service in a snapshot: its configuration revision and its targets' live health."""

    name: str
    revision: int
    target_set: int  # a new id for each deploy: same addresses redeployed are new targets
    health: tuple[TargetState, ...]  # one per active target (writers, then readers), in order
    rollout_set: int = 0  # the rollout slot's target set (0: none)
    rollout_health: tuple[TargetState, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The routing state of ``version``. With ``base`` 0 it is whole: exactly these services.
    Otherwise it is what changed since version ``base``: these services are new or changed (their
    configuration or their health), the ``removed`` ones are gone, every other one stays as it is;
    only a receiver that serves exactly ``base`` may apply it. ``entries`` holds the configuration
    of every revision the receiver may not have yet (a worker keeps the entries of the services it
    serves)."""

    version: int
    services: tuple[ServiceState, ...]
    entries: dict[int, Entry]
    base: int = 0
    removed: tuple[str, ...] = ()
    type = "snapshot"

    def body(self) -> dict[str, Any]:
        raise NotImplementedError("encode_snapshot builds a snapshot's frame")


@dataclass(frozen=True, slots=True, kw_only=True)
class Drain:
    request: int
    service: str
    target_set: int
    addresses: tuple[str, ...]
    timeout: float  # seconds
    type = "drain"

    def body(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "service": self.service,
            "set": self.target_set,
            "addresses": list(self.addresses),
            "timeout": self.timeout,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Settle:
    request: int
    service: str
    timeout: float
    type = "settle"

    def body(self) -> dict[str, Any]:
        return {"request": self.request, "service": self.service, "timeout": self.timeout}


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenges:
    tokens: dict[str, str]
    type = "challenges"

    def body(self) -> dict[str, Any]:
        return {"tokens": self.tokens}


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectMetrics:
    request: int
    type = "collect_metrics"

    def body(self) -> dict[str, Any]:
        return {"request": self.request}


@dataclass(frozen=True, slots=True, kw_only=True)
class Shutdown:
    timeout: float
    type = "shutdown"

    def body(self) -> dict[str, Any]:
        return {"timeout": self.timeout}


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    version: int
    type = "applied"

    def body(self) -> dict[str, Any]:
        return {"version": self.version}


@dataclass(frozen=True, slots=True, kw_only=True)
class Drained:
    request: int
    inflight: int  # requests in flight when the drain began
    cancelled: int  # of those, cancelled at the deadline
    type = "drained"

    def body(self) -> dict[str, Any]:
        return {"request": self.request, "inflight": self.inflight, "cancelled": self.cancelled}


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsTable:
    request: int
    table: dict[str, Any]  # RequestMetrics.snapshot()
    type = "metrics"

    def body(self) -> dict[str, Any]:
        return {"request": self.request, "table": self.table}


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsService:
    """A service's TLS settings as a worker's certificate store needs them (``enabled=False``: none)."""

    name: str
    enabled: bool = True
    hosts: tuple[str, ...] = ()
    default_host: str = ""
    static_pem: str = ""  # a static certificate: key and chain as read at deploy (latin-1 of the bytes)
    acme: bool = False
    acme_directory: str = ""
    acme_cache_root: str = ""
    eab_kid: str = ""
    eab_hmac_key: str = ""
    on_demand_url: str = ""
    type = "tls_service"

    @classmethod
    def of(cls, name: str, tls: ServiceTls | None) -> TlsService:
        if tls is None:
            return cls(name=name, enabled=False)
        acme = tls.acme
        return cls(
            name=name,
            hosts=tls.hosts,
            default_host=tls.default_host,
            static_pem=tls.static_pem.decode("latin-1"),  # bytes ⇄ text, one to one
            acme=acme is not None,
            acme_directory=acme.directory if acme else "",
            acme_cache_root=acme.cache_root if acme else "",
            eab_kid=acme.eab_kid if acme else "",
            eab_hmac_key=acme.eab_hmac_key if acme else "",
            on_demand_url=tls.on_demand_url,
        )

    def acme_settings(self) -> AcmeSettings | None:
        if not self.acme:
            return None
        return AcmeSettings(
            directory=self.acme_directory,
            cache_root=self.acme_cache_root,
            eab_kid=self.eab_kid,
            eab_hmac_key=self.eab_hmac_key,
        )

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            k: getattr(self, k) for k in _TLS_TEXT_FIELDS if getattr(self, k) or k == "name"
        }
        body["enabled"], body["acme"], body["hosts"] = self.enabled, self.acme, list(self.hosts)
        return body


_TLS_TEXT_FIELDS = (
    "name",
    "default_host",
    "static_pem",
    "acme_directory",
    "acme_cache_root",
    "eab_kid",
    "eab_hmac_key",
    "on_demand_url",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    cache_dir: str
    host: str
    pem: str  # key and chain
    not_after: float  # unix time
    type = "certificate"

    def body(self) -> dict[str, Any]:
        return {"cache_dir": self.cache_dir, "host": self.host, "pem": self.pem, "not_after": self.not_after}


@dataclass(frozen=True, slots=True, kw_only=True)
class AlpnChallenge:
    host: str
    pem: str  # "" = the challenge is over
    type = "alpn_challenge"

    def body(self) -> dict[str, Any]:
        return {"host": self.host, "pem": self.pem}


@dataclass(frozen=True, slots=True, kw_only=True)
class Obtain:
    request: int
    service: str
    host: str
    type = "obtain"

    def body(self) -> dict[str, Any]:
        return {"request": self.request, "service": self.service, "host": self.host}


@dataclass(frozen=True, slots=True, kw_only=True)
class Obtained:
    request: int
    error: str = ""  # "" = obtained: its Certificate came first
    type = "obtained"

    def body(self) -> dict[str, Any]:
        return {"request": self.request, "error": self.error}


@dataclass(frozen=True, slots=True, kw_only=True)
class Sync:
    request: int
    type = "sync"

    def body(self) -> dict[str, Any]:
        return {"request": self.request}


@dataclass(frozen=True, slots=True, kw_only=True)
class Synced:
    request: int
    type = "synced"

    def body(self) -> dict[str, Any]:
        return {"request": self.request}


Message = (
    Snapshot
    | Drain
    | Settle
    | Challenges
    | CollectMetrics
    | Shutdown
    | TlsService
    | Certificate
    | AlpnChallenge
    | Obtained
    | Sync
    | Applied
    | Drained
    | MetricsTable
    | Obtain
    | Synced
)
ToWorker = (
    Snapshot
    | Drain
    | Settle
    | Challenges
    | CollectMetrics
    | Shutdown
    | TlsService
    | Certificate
    | AlpnChallenge
    | Obtained
    | Sync
)
ToControl = Applied | Drained | MetricsTable | Obtain | Synced


# ---------------------------------------------------------------------- encoding
def encode(message: Message) -> bytes:
    """One frame: length prefix + JSON. A snapshot carries all its entries."""
    if isinstance(message, Snapshot):
        return encode_snapshot(message, include=message.entries)
    body = message.body()
    body["type"] = message.type
    return _frame(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())


def encode_snapshot(snapshot: Snapshot, *, include: Collection[int]) -> bytes:
    """A snapshot's frame with the entries of the revisions in ``include`` (what the receiver lacks).

    The entries' JSON was encoded once, when the revision was made; only the list of services
    (name, revision, target set, health) is encoded per snapshot."""
    services = json.dumps(
        [
            [s.name, s.revision, s.target_set, [h.value for h in s.health]]
            + ([s.rollout_set, [h.value for h in s.rollout_health]] if s.rollout_set else [])
            for s in snapshot.services
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    entries = ",".join(f'"{r}":{snapshot.entries[r].text}' for r in include)
    change = ""
    if snapshot.base:
        removed = json.dumps(list(snapshot.removed), separators=(",", ":"), ensure_ascii=False)
        change = f',"base":{snapshot.base},"removed":{removed}'
    text = (
        f'{{"type":"snapshot","version":{snapshot.version}{change},'
        f'"services":{services},"entries":{{{entries}}}}}'
    )
    return _frame(text.encode())


def _frame(data: bytes) -> bytes:
    if len(data) > MAX_FRAME:
        raise MessageError(f"message of {len(data)} bytes is over the {MAX_FRAME}-byte frame limit")
    return HEADER.pack(len(data)) + data


def frame_length(header: bytes) -> int:
    """The body length a 4-byte header announces, checked against MAX_FRAME."""
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise MessageError(f"frame of {length} bytes is over the {MAX_FRAME}-byte limit")
    return int(length)


class FrameReader:
    """Sans-IO: feed bytes as they arrive, get whole messages out."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buffer
        buf += data
        out: list[Message] = []
        while len(buf) >= HEADER.size:
            length = frame_length(bytes(buf[: HEADER.size]))
            end = HEADER.size + length
            if len(buf) < end:
                break
            out.append(decode(bytes(buf[HEADER.size : end])))
            del buf[:end]
        return out


def decode(data: bytes) -> Message:
    """One frame's body → its message; MessageError names what is wrong."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageError(f"not JSON: {exc}") from None
    except RecursionError:
        raise MessageError("not JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise MessageError("a message must be a JSON object")
    kind = body.get("type")
    reader = _READERS.get(kind) if isinstance(kind, str) else None
    if reader is None:
        raise MessageError(f"unknown message type {kind!r}")
    try:
        message: Message = reader(body)
    except SchemaError as exc:
        raise MessageError(f"{kind}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise MessageError(f"{kind}: bad field {exc}") from None
    return message


def _int(body: dict[str, Any], key: str) -> int:
    value = body[key]
    if type(value) is not int or value < 0:
        raise ValueError(f"{key} must be a non-negative integer")
    return value


def _seconds(body: dict[str, Any], key: str) -> float:
    value = body[key]
    if type(value) not in (int, float) or not 0 <= value < 1e9:
        raise ValueError(f"{key} must be a number of seconds")
    return float(value)


def _str(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _text(body: dict[str, Any], key: str, *, limit: int = MAX_TEXT, default: str | None = None) -> str:
    value = body.get(key, default) if default is not None else body[key]
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{key} must be a string of at most {limit} characters")
    return value


def _pem(body: dict[str, Any], key: str) -> str:
    """A PEM text, or "" (checked for shape here; the TLS library checks the rest when loading it)."""
    value = _text(body, key, limit=MAX_PEM, default="")
    if value and "-----BEGIN " not in value:
        raise ValueError(f"{key} must be PEM text")
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if type(value) is not bool:
        raise ValueError(f"{key} must be true or false")
    return value


def _tls_service(body: dict[str, Any]) -> TlsService:
    hosts = body.get("hosts", [])
    if not isinstance(hosts, list) or len(hosts) > MAX_HOSTS:
        raise ValueError(f"hosts must be a list of at most {MAX_HOSTS}")
    text = {k: _text(body, k, default="") for k in _TLS_TEXT_FIELDS if k not in ("name", "static_pem")}
    return TlsService(
        name=_text(body, "name"),
        enabled=_flag(body, "enabled"),
        hosts=tuple(_text({"hosts[]": h}, "hosts[]") for h in hosts),
        static_pem=_pem(body, "static_pem"),
        acme=_flag(body, "acme"),
        **text,
    )


def _certificate(body: dict[str, Any]) -> Certificate:
    not_after = body["not_after"]
    if type(not_after) not in (int, float) or not 0 <= not_after < 1e11:
        raise ValueError("not_after must be a unix time")
    pem = _pem(body, "pem")
    if not pem:
        raise ValueError("pem must be PEM text")
    return Certificate(
        cache_dir=_text(body, "cache_dir"), host=_text(body, "host"), pem=pem, not_after=float(not_after)
    )


def _service(data: Any) -> ServiceState:
    shape = "services[] must be [name, revision, set, health] (+ [rollout set, rollout health])"
    if not isinstance(data, list) or len(data) not in (4, 6):
        raise ValueError(shape)
    name, revision, target_set, health, *rollout = data
    rollout_set, rollout_health = rollout if rollout else (0, [])
    if not isinstance(name, str) or not isinstance(health, list) or not isinstance(rollout_health, list):
        raise ValueError(shape)
    return ServiceState(
        name=name,
        revision=_int({"revision": revision}, "revision"),
        target_set=_int({"set": target_set}, "set"),
        health=tuple(TargetState(h) for h in health),
        rollout_set=_int({"rollout set": rollout_set}, "rollout set"),
        rollout_health=tuple(TargetState(h) for h in rollout_health),
    )


def _entry(revision: str, data: Any) -> Entry:
    if not revision.isdigit():
        raise ValueError("entries are keyed by revision numbers")
    return Entry(revision=int(revision), saved=SavedService.from_json(data))


def _snapshot(body: dict[str, Any]) -> Snapshot:
    services, entries = body["services"], body["entries"]
    if not isinstance(services, list) or not isinstance(entries, dict):
        raise ValueError("services must be a list and entries an object")
    decoded = {e.revision: e for e in (_entry(r, data) for r, data in entries.items())}
    states = tuple(_service(s) for s in services)
    for state in states:
        entry = decoded.get(state.revision)
        if entry is not None and (
            entry.saved.name != state.name
            or len(entry.saved.active_targets) + len(entry.saved.active_readers) != len(state.health)
        ):
            raise ValueError(
                f"service {state.name}: its entry names another service or another number of targets"
            )
    version, base = _int(body, "version"), _int(body, "base") if "base" in body else 0
    removed = body.get("removed", [])
    if not isinstance(removed, list) or not all(isinstance(name, str) for name in removed):
        raise ValueError("removed must be a list of service names")
    if base and base >= version:
        raise ValueError("a change must be based on an earlier version")
    if not base and removed:
        raise ValueError("a whole snapshot removes nothing (it lists what exists)")
    names = [state.name for state in states]
    if len(set(names)) != len(names) or set(names) & set(removed):
        raise ValueError("a service is named twice")
    return Snapshot(version=version, services=states, entries=decoded, base=base, removed=tuple(removed))


def _drain(body: dict[str, Any]) -> Drain:
    addresses = body["addresses"]
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise ValueError("addresses must be a list of strings")
    return Drain(
        request=_int(body, "request"),
        service=_str(body, "service"),
        target_set=_int(body, "set"),
        addresses=tuple(addresses),
        timeout=_seconds(body, "timeout"),
    )


def _challenges(body: dict[str, Any]) -> Challenges:
    tokens = body["tokens"]
    if not isinstance(tokens, dict) or not all(isinstance(v, str) for v in tokens.values()):
        raise ValueError("tokens must map strings to strings")
    return Challenges(tokens=tokens)


def _metrics(body: dict[str, Any]) -> MetricsTable:
    table = body["table"]
    if not isinstance(table, dict):
        raise ValueError("table must be an object")
    return MetricsTable(request=_int(body, "request"), table=table)


_READERS: dict[str, Any] = {
    "snapshot": _snapshot,
    "drain": _drain,
    "settle": lambda b: Settle(
        request=_int(b, "request"), service=_str(b, "service"), timeout=_seconds(b, "timeout")
    ),
    "challenges": _challenges,
    "collect_metrics": lambda b: CollectMetrics(request=_int(b, "request")),
    "shutdown": lambda b: Shutdown(timeout=_seconds(b, "timeout")),
    "applied": lambda b: Applied(version=_int(b, "version")),
    "drained": lambda b: Drained(
        request=_int(b, "request"), inflight=_int(b, "inflight"), cancelled=_int(b, "cancelled")
    ),
    "metrics": _metrics,
    "tls_service": _tls_service,
    "certificate": _certificate,
    "alpn_challenge": lambda b: AlpnChallenge(host=_text(b, "host"), pem=_pem(b, "pem")),
    "obtain": lambda b: Obtain(
        request=_int(b, "request"), service=_text(b, "service"), host=_text(b, "host")
    ),
    "sync": lambda b: Sync(request=_int(b, "request")),
    "synced": lambda b: Synced(request=_int(b, "request")),
    "obtained": lambda b: Obtained(request=_int(b, "request"), error=_text(b, "error")),
}
