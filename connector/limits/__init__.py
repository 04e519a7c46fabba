"""What paces calls to the vendors, shared by every worker of a deployment.

- ``ratelimit``: the per-window limits (Zoho 100/min per organization, Concur per endpoint), a
  sliding-window log in Redis (SQLite in embedded mode);
- ``concurrency``: Zoho's cap on calls in flight per organization, a semaphore with leases;
- ``quota``: Zoho's daily quota as its headers report it, and the reserve bulk work leaves;
- ``sqlite_file``: the embedded-mode file the three share.

docs/rate-limits.md explains the numbers and why each lives in the broker, not in a worker.
"""
