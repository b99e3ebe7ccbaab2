"""A worker process: the data plane only (listeners, connections, upstream pools), on its own uvloop,
serving the routes the control process sends it (``proxy/ipc.py``)."""
