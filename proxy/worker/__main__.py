"""`python -m proxy.worker CONFIG_JSON`: what the control process starts, once per worker slot."""

import sys

from proxy.worker.process import main

sys.exit(main(sys.argv[1:]))
