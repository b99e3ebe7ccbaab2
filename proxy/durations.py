"""Go duration text (`30s`, `500ms`, `1m30s`) ⇄ float seconds, as kamal-proxy prints and reads them."""

from proxy.cli.flags import format_duration, parse_duration

__all__ = ["format_duration", "parse_duration"]
