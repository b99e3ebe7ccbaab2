"""Pure command builders: each returns a list of shell tokens; joined with spaces it is the exact line
Kamal 2.12 runs. No I/O happens here."""
