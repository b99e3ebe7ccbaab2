"""The control process: workers (spawned, replaced, stopped) and the messages the Router's changes
become for them. The Router, health checks, state file and control socket it drives are
``proxy/router.py``, ``health.py``, ``state.py`` and ``control.py``."""
