"""A small Internet in network namespaces, for NAT traversal tests (iproute2 + iptables).

::

    viewer 192.168.1.2 ── lan│NAT A│pub 10.77.0.11 ──┐
                                                   br0 10.77.0.1  "internet": ivcloud, coturn
    camera 192.168.2.2 ── lan│NAT B│pub 10.77.0.12 ──┘

Five namespaces ``ivnat-<pid>-<n>-<role>``: names carry the test process's pid, so parallel
runs never collide, and :func:`reap_stale` removes what a killed run left behind (its pid is
gone). Veths are created directly inside their namespaces (``ip -n NS link add … netns
PEER``), so interface names only need to be unique per namespace. The two private LANs
differ, so host candidates cannot connect across them: only what the NATs let through does.

NAT behaviour (the viewer's router is reconfigured per case, :meth:`Topology.set_viewer_nat`):

* ``cone``: ``MASQUERADE`` — Linux keeps the source port when it can, so one inside socket
  keeps one public mapping whatever the destination (endpoint-independent mapping), while
  conntrack only lets in replies to flows it saw leave (port-restricted filtering): what
  ICE's simultaneous checks punch through. Both routers drop unsolicited packets to their
  public address (``INPUT -i pub --ctstate NEW -j DROP``, as a home router's firewall does):
  without it the peer's first check, arriving before our own first packet to it, leaves a
  conntrack entry for ``peer → our mapped port`` and the NAT then gives our outgoing flow
  another port (a collision), which turns the cone into a symmetric NAT exactly when hole
  punching needs it.
* ``symmetric``: ``MASQUERADE --random-fully`` — a new random port per destination, so the
  mapping a STUN server reports is useless to the peer.
* ``no-udp``: cone, and every forwarded UDP packet from the LAN dropped (TCP still passes).
* ``api-only``: only TCP to one address and port is forwarded (replies too), and requests
  whose bytes contain a given path are reset — an HTTP proxy that allows the API but not the
  hub's media URLs on the same port.

Everything is torn down by deleting the namespaces (that removes their veths, rules and
sockets); processes started inside them are killed first (:meth:`Topology.teardown`), by pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

__all__ = [
    "CAMERA_IP",
    "INTERNET_IP",
    "NAT_A_IP",
    "NAT_B_IP",
    "VIEWER_IP",
    "NamespaceUnavailable",
    "Topology",
    "call_in",
    "namespaces_unavailable",
    "reap_stale",
    "topology",
    "wait_until",
]

INTERNET_IP = "10.77.0.1"
NAT_A_IP = "10.77.0.11"  # the viewer's router, public side
NAT_B_IP = "10.77.0.12"  # the camera's router, public side
VIEWER_IP = "192.168.1.2"
CAMERA_IP = "192.168.2.2"

PREFIX = "ivnat-"
_CLONE_NEWNET = 0x40000000
_counter = itertools.count(1)

NatMode = Literal["cone", "symmetric", "no-udp", "api-only"]
T = TypeVar("T")


class NamespaceUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no iproute2/iptables)."""


def _tool(name: str) -> str:
    return shutil.which(name) or name


def _call(*args: str) -> subprocess.CompletedProcess[str]:
    """One command (``ip …`` with the absolute path of iproute2's ``ip``), output kept."""
    argv = [_tool(args[0]), *args[1:]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)  # noqa: S603


def _run(*args: str) -> str:
    """One iproute2/iptables command; its stderr in the error when it fails."""
    done = _call(*args)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def namespaces_unavailable() -> str | None:
    """Why namespaces cannot be made here, or ``None`` when they can (a probe is created
    and deleted): the one reason the NAT tests skip."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2 / iptables)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _run("ip", "netns", "add", probe)
        _run("ip", "netns", "exec", probe, "iptables", "-t", "nat", "-S")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace with NAT: {exc}"
    finally:
        _call("ip", "netns", "del", probe)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_pids(namespace: str) -> None:
    """Kill what still runs inside ``namespace`` (processes of this run: the names are
    unique to it), then wait briefly for them to go."""
    done = _call("ip", "netns", "pids", namespace)
    pids = [int(p) for p in done.stdout.split() if p.isdigit()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def reap_stale() -> list[str]:
    """Delete namespaces left by NAT test runs whose process is gone; their names."""
    listed = _call("ip", "netns", "list").stdout
    removed = []
    for line in listed.splitlines():
        name = line.split(" ", 1)[0]
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            _kill_pids(name)
            _call("ip", "netns", "del", name)
            removed.append(name)
    return removed


def call_in(namespace: str, fn: Callable[[], T]) -> T:
    """Run ``fn()`` in a fresh thread that has entered ``namespace``: every socket it opens
    lives there. (A network namespace is per thread; a fresh thread is never reused, so
    nothing else ends up inside. ``os.setns`` is Python 3.12+, hence libc.)"""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({namespace}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{namespace}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def wait_until(check: Callable[[], bool], deadline_s: float, what: str) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline_s} s")
        time.sleep(0.05)


@dataclass
class Topology:
    """The namespaces of one test run; :meth:`build` makes them, :meth:`teardown` removes
    them (idempotent, never raises)."""

    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}-{next(_counter)}")
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def internet(self) -> str:
        return f"{self.tag}-inet"

    @property
    def nat_a(self) -> str:
        return f"{self.tag}-nata"

    @property
    def nat_b(self) -> str:
        return f"{self.tag}-natb"

    @property
    def viewer(self) -> str:
        return f"{self.tag}-viewer"

    @property
    def camera(self) -> str:
        return f"{self.tag}-camera"

    @property
    def all(self) -> tuple[str, ...]:
        return (self.viewer, self.camera, self.nat_a, self.nat_b, self.internet)

    # -- building ---------------------------------------------------------------------------

    def build(self) -> None:
        try:
            for ns in self.all:
                _run("ip", "netns", "add", ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            inet = self.internet
            _run("ip", "-n", inet, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", inet, "addr", "add", f"{INTERNET_IP}/24", "dev", "br0")
            _run("ip", "-n", inet, "link", "set", "br0", "up")
            self._router(self.nat_a, "a", NAT_A_IP, "192.168.1", self.viewer)
            self._router(self.nat_b, "b", NAT_B_IP, "192.168.2", self.camera)
            self.set_nat(self.nat_a, "cone")
            self.set_nat(self.nat_b, "cone")
        except BaseException:
            self.teardown()
            raise

    def _router(self, router: str, side: str, public_ip: str, lan: str, host: str) -> None:
        inet = self.internet
        _run("ip", "-n", router, "link", "add", "pub", "type", "veth", "peer", "name",
             f"up-{side}", "netns", inet)  # fmt: skip
        _run("ip", "-n", inet, "link", "set", f"up-{side}", "master", "br0", "up")
        _run("ip", "-n", router, "addr", "add", f"{public_ip}/24", "dev", "pub")
        _run("ip", "-n", router, "link", "set", "pub", "up")
        _run("ip", "-n", router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0",
             "netns", host)  # fmt: skip
        _run("ip", "-n", router, "addr", "add", f"{lan}.1/24", "dev", "lan")
        _run("ip", "-n", router, "link", "set", "lan", "up")
        _run("ip", "-n", host, "addr", "add", f"{lan}.2/24", "dev", "eth0")
        _run("ip", "-n", host, "link", "set", "eth0", "up")
        _run("ip", "-n", host, "route", "add", "default", "via", f"{lan}.1")
        _run("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def set_nat(
        self,
        router: str,
        mode: NatMode,
        *,
        allow: tuple[str, int] | None = None,
        reject_strings: Sequence[str] = (),
    ) -> None:
        """Replace ``router``'s NAT and forwarding rules with ``mode``'s (module doc)."""
        ipt = ("ip", "netns", "exec", router, "iptables")
        _run(*ipt, "-t", "nat", "-F", "POSTROUTING")
        _run(*ipt, "-F", "FORWARD")
        _run(*ipt, "-F", "INPUT")
        _run(*ipt, "-P", "FORWARD", "ACCEPT")
        # A home router's firewall: unsolicited packets to its public address are dropped
        # before conntrack confirms an entry for them (see the module doc).
        _run(*ipt, "-A", "INPUT", "-i", "pub", "-m", "conntrack", "--ctstate", "NEW",
             "-j", "DROP")  # fmt: skip
        masquerade = (*ipt, "-t", "nat", "-A", "POSTROUTING", "-o", "pub", "-j", "MASQUERADE")
        _run(*masquerade, *(("--random-fully",) if mode == "symmetric" else ()))
        if mode == "no-udp":
            _run(*ipt, "-A", "FORWARD", "-i", "lan", "-p", "udp", "-j", "DROP")
        elif mode == "api-only":
            if allow is None:
                raise ValueError("api-only needs allow=(ip, port)")
            ip, port = allow
            for text in reject_strings:
                _run(*ipt, "-A", "FORWARD", "-i", "lan", "-p", "tcp", "-m", "string",
                     "--string", text, "--algo", "bm", "-j", "REJECT",
                     "--reject-with", "tcp-reset")  # fmt: skip
            _run(*ipt, "-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED",
                 "-j", "ACCEPT")  # fmt: skip
            _run(*ipt, "-A", "FORWARD", "-i", "lan", "-p", "tcp", "-d", ip, "--dport",
                 str(port), "-j", "ACCEPT")  # fmt: skip
            _run(*ipt, "-P", "FORWARD", "DROP")

    def set_viewer_nat(self, mode: NatMode, **kwargs: object) -> None:
        self.set_nat(self.nat_a, mode, **kwargs)  # type: ignore[arg-type]

    # -- processes and observation ----------------------------------------------------------

    def spawn(
        self,
        namespace: str,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log: str | os.PathLike[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` inside ``namespace`` (``ip netns exec`` execs it: the pid is the
        program's), output to ``log``; killed by :meth:`teardown`."""
        out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(  # noqa: S603
                [_tool("ip"), "netns", "exec", namespace, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        finally:
            if log is not None and not isinstance(out, int):
                out.close()
        self.processes.append(proc)
        return proc

    def conntrack(self, namespace: str) -> list[str]:
        """The namespace's connection-tracking table (``/proc/net/nf_conntrack``)."""
        done = _call("ip", "netns", "exec", namespace, "cat", "/proc/net/nf_conntrack")
        return done.stdout.splitlines()

    def teardown(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for ns in self.all:
            _kill_pids(ns)
            _call("ip", "netns", "del", ns)

    def exists(self) -> list[str]:
        listed = _call("ip", "netns", "list").stdout
        names = {line.split(" ", 1)[0] for line in listed.splitlines()}
        return [ns for ns in self.all if ns in names]


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    """A built :class:`Topology`, torn down however the block ends."""
    reap_stale()
    topo = Topology()
    topo.build()
    try:
        yield topo
    finally:
        topo.teardown()
