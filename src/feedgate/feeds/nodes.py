"""The names leases give their nodes, and whether a named node is a process of this host that
has ended.

A node is ``host:pid:random`` (the random part tells apart two nodes of one process, such as a
scheduler and a Poll Now of ``feedgate up``). Where ``/proc`` shows it (Linux), the name ends in
``@<pid namespace>.<start>``: the process's PID namespace and its start time (clock ticks since
boot, ``/proc/<pid>/stat``). With them a lease held by a node of this host can be judged without
waiting for it to expire: its process has ended if the PID no longer exists, is a zombie, or now
belongs to a process that started at another time (the PID was reused). That is what lets Poll
Now take over at once after ``kill -9`` of a Poll Now on the same machine.

What is never judged, so its lease runs out as before: a node of another host (its PIDs are not
ours to look at), one in another PID namespace (a container sharing the host name), and a node
named without the suffix where this host has ``/proc`` (written by an older feedgate, or by a
host without ``/proc`` under the same name). On a host without ``/proc`` a node is judged by its
PID alone; a PID reused by another process there keeps the dead node's lease until it expires
(the safe side: nobody polls twice, a Poll Now waits).
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Final

_PROC: Final = Path("/proc")


def node_name() -> str:
    """This process, as leases name it: host, pid, a random part and (where known) the
    process's identity (see the module doc)."""
    pid = os.getpid()
    name = f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}"
    namespace, started = _namespace(), _start(pid)
    return f"{name}@{namespace}.{started}" if namespace and started else name


def ended_here(node: str) -> bool:
    """Whether ``node`` is a process of this host that no longer runs (see the module doc);
    False whenever that cannot be told for sure."""
    head, _, identity = node.partition("@")
    parts = head.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if _namespace() is None:  # no /proc: the PID is all there is
        return not _exists(pid)
    namespace, _, started = identity.partition(".")
    if namespace != _namespace() or not started:
        return False  # its PIDs are another namespace's, or its start is not known
    if not _exists(pid):
        return True
    now = _start(pid)
    # None: /proc hides it (hidepid) though it exists, so it cannot be told; a zombie has ended
    return now is not None and now != started


def _namespace() -> str | None:
    """The inode of this process's PID namespace (``pid:[4026531836]`` → ``4026531836``)."""
    try:
        link = os.readlink(_PROC / "self" / "ns" / "pid")
    except OSError:
        return None
    return link.removeprefix("pid:[").removesuffix("]") or None


def _start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), ``"zombie"`` if it has ended but
    not been reaped, None if ``/proc`` does not show it. Its stat file is readable by all."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ... starttime ...": comm may hold spaces and parentheses
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 20:
        return None
    return "zombie" if fields[0] in ("Z", "X") else fields[19]  # field 22 of stat


def _exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie too); not hidden by ``/proc``'s hidepid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
