"""Is the port the service will listen on free? Checked before anything slow starts.

Standard library only, so `make run` can ask with the system Python before it installs or
builds anything (`python -m cli.ports --port 3000 --hint 'make run PORT=3001'`), and
`recqa serve` asks the same question before it starts BentoML: a busy port then fails in
one line instead of a server traceback at the end of a long build.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Sequence


def port_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port (in use, not an address here), or None when it can.

    Binds and closes a socket with SO_REUSEADDR, as servers do, so a port left in TIME_WAIT by
    a server that just stopped counts as free; one that something listens on does not.
    """
    if not 0 < port < 65536:
        return f"port {port} is not a TCP port (1-65535)"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return f"host '{host}' cannot be resolved ({error.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use (another server is listening there)"
            if error.errno in (errno.EACCES, errno.EPERM):
                return f"port {port} on {host} needs privileges this user lacks (ports below 1024 usually do)"
            return f"cannot listen on {host}:{port}: {error.strerror}"
    return None


def next_free_port(host: str, port: int, tries: int = 50) -> int | None:
    """The first port after `port` that is free on `host`, to suggest in the fix."""
    return next((candidate for candidate in range(port + 1, min(port + 1 + tries, 65536)) if port_problem(host, candidate) is None), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when host:port is free, else 1 with one line naming the problem and the fix."""
    parser = argparse.ArgumentParser(prog="python -m cli.ports", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--make-target", default="", help="the make target to name in the fix (`make TARGET PORT=N`)")
    args = parser.parse_args(argv)
    problem = port_problem(args.host, args.port)
    if problem is None:
        return 0
    if args.make_target:
        free = next_free_port(args.host, args.port)
        problem += f"; set PORT to use another (HOST to use another address): make {args.make_target} PORT={free if free is not None else '<port>'}"
    print(problem, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
