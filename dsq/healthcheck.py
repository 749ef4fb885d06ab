"""Container healthchecks.

`python -m dsq.healthcheck web URL` exits 1 unless URL (the web service's /readyz) answers 200; it sends
the first of DSQ_ALLOWED_HOSTS as Host, so a deployment that allows only its public name still passes.
`python -m dsq.healthcheck worker [NAME]` exits 1 unless this worker's heartbeat (its
`dsq:host:<name>` record in the broker's Redis) is fresh.

Without NAME it looks for DSQ_WORKER_NAME, else for any worker of this host (`<hostname>:<pid>`, the
name a worker takes by default): inside a container the hostname is the container's own.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time


def worker_heartbeat_age(name: "str | None" = None) -> "tuple[str, float] | None":
    """(worker, seconds since it last advertised) for the freshest matching record; None when none."""
    from registry import fleet

    client = fleet.redis_client()
    name = name or os.environ.get("DSQ_WORKER_NAME")
    pattern = fleet.HOST_KEY_PREFIX + (name if name else f"{socket.gethostname()}:*")
    found = None
    for key in client.scan_iter(pattern):
        raw = client.get(key)
        if raw:
            age = time.time() - float(json.loads(raw).get("updated_at", 0))
            if found is None or age < found[1]:
                found = (key.decode()[len(fleet.HOST_KEY_PREFIX):], age)
    return found


def check_worker(name: "str | None" = None) -> int:
    from registry import fleet

    try:
        found = worker_heartbeat_age(name)
    except Exception as exc:  # Redis unreachable: the worker cannot be healthy either
        print(f"unhealthy: broker unreachable ({type(exc).__name__})", file=sys.stderr)
        return 1
    if found is None:
        print(f"unhealthy: no heartbeat record for {name or os.environ.get('DSQ_WORKER_NAME') or socket.gethostname()}",
              file=sys.stderr)
        return 1
    worker, age = found
    if age > fleet.stale_after_seconds():
        print(f"unhealthy: {worker} last advertised {age:.0f}s ago", file=sys.stderr)
        return 1
    print(f"healthy: {worker} advertised {age:.0f}s ago")
    return 0


def host_header() -> str:
    first = (os.environ.get("DSQ_ALLOWED_HOSTS") or "localhost").split(",")[0].strip()
    return "localhost" if first in ("", "*") else first.lstrip(".")


def check_web(url: str) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Host": host_header()})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            print(f"healthy: {url} answered {response.status}")
            return 0
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: {url} answered {exc.code}: {exc.read()[:500].decode(errors='replace')}", file=sys.stderr)
    except OSError as exc:
        print(f"unhealthy: {url} did not answer ({exc})", file=sys.stderr)
    return 1


USAGE = "usage: python -m dsq.healthcheck web URL | worker [NAME]"


def main(argv: "list[str] | None" = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "web":
        return check_web(argv[1])
    if not argv or argv[0] != "worker" or len(argv) > 2:
        print(USAGE, file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dsq.settings")
    import django

    django.setup()
    return check_worker(argv[1] if len(argv) == 2 else None)


if __name__ == "__main__":
    sys.exit(main())
