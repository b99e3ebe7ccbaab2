"""Benchmark suite: this proxy vs nginx, HAProxy, Caddy (see README.md)."""
