"""Every default in one place: the CLI, the control commands and the state file read these."""

from __future__ import annotations

# run
HTTP_PORT = 80
HTTPS_PORT = 443
METRICS_PORT = 0
HTTP_PARSER = "httptools"
READ_HEADER_TIMEOUT = 30.0  # seconds a client may take to send a request head
IDLE_TIMEOUT = 60.0  # seconds an idle keep-alive client connection is kept
REQUEST_BODY_TIMEOUT = 60.0  # seconds a request body may make no progress before 408
# seconds a response may wait for the client to read any of it (nginx's send_timeout); 0 = no limit
WRITE_TIMEOUT = 60.0
MAX_HEAD_SIZE = 64 * 1024  # request/response head bytes (→ 431)
SHUTDOWN_TIMEOUT = 6.0  # on SIGTERM, for requests in flight; well inside Docker's 10 s stop timeout
LISTEN_BACKLOG = 2048  # queued connections per listening socket (capped by net.core.somaxconn)
MAX_WORKERS = 1024  # --workers
REUSE_PORT = True  # one listening socket per worker slot (measured against one shared socket: README)
SOCKET_NAME = "kamal-proxy.sock"
STATE_DIR = ".config/kamal-proxy"  # under $HOME
STATE_FILE = "kamal-proxy.state"
# A larger state file is refused unread (and copied aside as a damaged one is): 10,000 services save
# in a few MiB, so this only stops a file that would otherwise be read whole into memory.
STATE_FILE_MAX_BYTES = 64 * 1024 * 1024

# deploy
DEPLOY_TIMEOUT = 30.0
DRAIN_TIMEOUT = 30.0
HEALTH_CHECK_PATH = "/up"
HEALTH_CHECK_INTERVAL = 1.0
HEALTH_CHECK_TIMEOUT = 5.0
HEALTH_CHECK_USER_AGENT = "kamal-proxy"
MAX_CONCURRENT_HEALTH_CHECKS = 256  # across the daemon, however many targets there are
TARGET_TIMEOUT = 30.0
BUFFER_MEMORY = 1 << 20
MAX_REQUEST_BODY = 0
MAX_RESPONSE_BODY = 0
WRITER_AFFINITY_TIMEOUT = 1.0
STRIP_PATH_PREFIX = True
TLS_REDIRECT = True
ACME_CACHE_DIR = "certs"  # under the state dir

# TLS
TLS_HELLO_TIMEOUT = 10.0  # seconds a client may take to send its whole ClientHello
TLS_HANDSHAKE_TIMEOUT = 10.0  # seconds for the rest of the handshake
ACME_HANDSHAKE_WAIT = 45.0  # seconds a first handshake may wait for its certificate
ACME_ORDER_TIMEOUT = 90.0  # seconds one ACME order may take (validation and finalization)
ACME_RETRY_MIN = 10.0  # after a failed order, no new one for this host before this many seconds
ACME_RETRY_MAX = 3600.0  # ... doubling per failure up to this
ACME_RENEW_BEFORE = 30 * 86400.0  # renew this long before expiry (or at 2/3 of a shorter lifetime)
ACME_RENEW_CHECK_MAX = 12 * 3600.0  # a renewal timer never sleeps longer than this
ON_DEMAND_CHECK_TIMEOUT = 2.0
ON_DEMAND_BODY_LOG = 256  # bytes of a denial's body put in the log

# pause / stop
MAX_PAUSE = 30.0

# data plane
UPSTREAM_MAX_IDLE = 512  # idle keep-alive connections kept per target
WRITE_HIGH_WATER = 256 * 1024  # pause the other side above this many buffered bytes
WRITE_LOW_WATER = 64 * 1024
PIPELINE_MAX_BUFFERED = 256 * 1024  # pipelined request bytes held while a response is in flight
UPSTREAM_CONNECT_TIMEOUT = 10.0

# control socket
CONTROL_MAX_REQUEST = 1 << 20  # bytes of one request line
CONTROL_READ_TIMEOUT = 10.0  # seconds a client may take to send its request (and read the reply)
CONTROL_PROBE_TIMEOUT = 1.0  # seconds `run` waits for a daemon already on the socket to accept
ERROR_LOG_INTERVAL = 10.0  # seconds between two log lines of one recurring error (fd exhaustion, ...)

# workers (the control process's side)
WORKER_ACK_TIMEOUT = 10.0  # seconds a worker may take to apply a snapshot or answer a request
WORKER_START_TIMEOUT = 30.0  # seconds the workers may take to start with `run`
WORKER_RESTART_DELAY = 1.0  # a worker that lived less than this is restarted after this delay
WORKER_STOP_GRACE = 2.0  # seconds past the shutdown timeout before a worker is killed
METRICS_REFRESH_TIMEOUT = 2.0  # seconds a scrape waits for the workers' fresh tables
METRICS_PUSH_INTERVAL = 1.0  # seconds between two request tables a worker sends (with --metrics-port)
