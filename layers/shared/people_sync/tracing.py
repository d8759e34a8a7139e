"""What X-Ray traces in this app's functions.

Powertools Tracer patches every library the X-Ray SDK supports by default, and patching imports each one
that is installed (requests, sqlite3, ...) at every cold start, used or not. Each handler names the
libraries it calls out with instead.
"""

from __future__ import annotations

#: AWS calls only (the webhook and the target callback hand work on and never call a target).
TRACE_AWS = ("botocore",)
#: AWS calls and a target's API (ChartHop, Orgvue, ELMA365 over requests).
TRACE_AWS_AND_TARGETS = ("botocore", "requests")
