"""kamal-proxy in Python. Some per-request modules may be compiled (``proxy/native.py`` decides,
once, whether this process uses them or their pure-Python sources)."""

from proxy import native

native.use_sources()
