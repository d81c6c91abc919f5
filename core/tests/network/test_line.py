"""Three nodes in a line, A - B - C, each its own process (``micro network run``), on real sockets.

A client on A (an ordinary micro client with ``MICRO_PROXY`` set) calls, streams from and publishes to a service
that only C's registry holds, through B. When C stops, the route leaves A within the stated time and the call
fails with ``ServiceNotFound``, not a hang.

Two variants: on loopback ports, and (with root and ``ip netns``) with each node in a network namespace of its
own, joined by veth pairs, so that A has no way to C but through B. The namespaces are named uniquely and
always deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

HERE = Path(__file__).parent
INTERVAL = 1.0
#: The stated time for a stopped node's routes to leave a node two hops away: its link is lost at once when its
#: socket closes (``link_timeout + keepalive`` = 6s when it vanishes silently), then one watch tick (0.25s) and
#: one triggered advert per hop; the ttl (3 intervals) catches anything else. Plus slack for a loaded machine.
STATED = 6.0 + 0.25 + 3 * INTERVAL
SLACK = 6.0


class Host:
    """A "machine": its own registry file, and its own network namespace when ``netns`` is given."""

    def __init__(self, name: str, root: Path, token: str, netns: str | None = None) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir()
        self.token = token
        self.netns = netns
        self.procs: list[asyncio.subprocess.Process] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MICRO_")}
        env.update(
            MICRO_REGISTRY="local",
            MICRO_REGISTRY_PATH=str(self.dir / "registry.db"),
            MICRO_RUNTIME_DIR=str(self.dir / "runtime"),
            MICRO_NETWORK_ID=self.name,
            MICRO_NETWORK_INTERVAL=f"{INTERVAL}s",
            MICRO_NETWORK_TOKEN=self.token,
        )
        env.update(extra)
        return env

    def argv(self, *argv: str) -> list[str]:
        return (["ip", "netns", "exec", self.netns] if self.netns else []) + list(argv)

    async def start(self, *argv: str, **env: str) -> tuple[asyncio.subprocess.Process, str]:
        """Start ``argv`` here and wait for its ``READY`` line; returns the process and the line."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*argv), env=self.env(**env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        seen: list[str] = []
        async with asyncio.timeout(60):
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    raise AssertionError(f"{argv} on {self.name} exited before READY: {''.join(seen)}")
                line = raw.decode()
                seen.append(line)
                if line.startswith("READY"):
                    break
        asyncio.get_running_loop().create_task(_drain(proc, self.dir / f"{Path(argv[-1]).name}.{proc.pid}.log"))
        return proc, line.strip()

    async def run(self, *argv: str, **env: str) -> str:
        """Run ``argv`` here to the end; its stdout (it must exit 0)."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*argv), env=self.env(**env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
        assert proc.returncode == 0, f"{argv} on {self.name} failed: {err.decode()[-3000:]}"
        return out.decode()

    async def node(self, address: str, *nodes: str) -> dict[str, str]:
        env = {"MICRO_NETWORK_ADDRESS": address}
        if nodes:
            env["MICRO_NETWORK_NODES"] = ",".join(nodes)
        _, line = await self.start(sys.executable, "-m", "micro", "network", "run", **env)
        return dict(part.split("=", 1) for part in line.split()[1:])

    async def stop(self, *, kill: bool = False) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill() if kill else proc.terminate()
        for proc in self.procs:
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _drain(proc: asyncio.subprocess.Process, log: Path) -> None:
    """Keep a process's output in ``log`` (read on failure), so its pipe never fills."""
    assert proc.stdout is not None
    with log.open("ab") as out:
        while line := await proc.stdout.readline():
            out.write(line)
            out.flush()


def _netns_available() -> str | None:
    """Why namespaces cannot be used here, or ``None``."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def namespaces() -> Iterator[dict[str, str]]:
    """Namespaces a, b, c with veth pairs a-b (10.250.1.0/24) and b-c (10.250.2.0/24); no route from a to c."""
    tag = uuid.uuid4().hex[:8]
    names = {host: f"micro-net-{tag}-{host}" for host in "abc"}
    try:
        for name in names.values():
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
        for left, right, subnet in (("a", "b", 1), ("b", "c", 2)):
            lname, rname = f"v{left}{right}{tag[:6]}", f"v{right}{left}{tag[:6]}"
            peer = ("peer", "name", rname, "netns", names[right])
            _ip("link", "add", lname, "netns", names[left], "type", "veth", *peer)
            _ip("-n", names[left], "addr", "add", f"10.250.{subnet}.1/24", "dev", lname)
            _ip("-n", names[right], "addr", "add", f"10.250.{subnet}.2/24", "dev", rname)
            _ip("-n", names[left], "link", "set", lname, "up")
            _ip("-n", names[right], "link", "set", rname, "up")
        yield names
    finally:
        for name in names.values():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
        assert not [line for line in listed.splitlines() if tag in line], f"namespaces left behind: {listed}"


async def line_test(tmp: Path, netns: dict[str, str] | None) -> None:
    token = uuid.uuid4().hex
    a, b, c = (Host(n, tmp, token, netns[n] if netns else None) for n in "abc")
    try:
        if netns:
            c_node = await c.node("10.250.2.2:7100")
            b_node = await b.node("10.250.1.2:7100", "10.250.2.2:7100")
            a_node = await a.node("10.250.1.1:7100", "10.250.1.2:7100")
            # A really cannot reach C but through B.
            probe = (
                "import socket,sys\n"
                "try: socket.create_connection(('10.250.2.2', 7100), timeout=2)\n"
                "except OSError: sys.exit(0)\n"
                "sys.exit(1)\n"
            )
            await a.run(sys.executable, "-c", probe)
        else:
            c_node = await c.node("127.0.0.1:0")
            b_node = await b.node("127.0.0.1:0", c_node["tunnel"])
            a_node = await a.node("127.0.0.1:0", b_node["tunnel"])
        assert (a_node["node"], b_node["node"], c_node["node"]) == ("a", "b", "c")
        await c.start(sys.executable, str(HERE / "line_service.py"))

        proxy = a_node["proxy"]
        seen = json.loads(await a.run(sys.executable, str(HERE / "line_client.py"), "call", MICRO_PROXY=proxy))
        assert seen == {"hello": {"message": "Hello A"}, "counted": [0, 1, 2], "received": [{"from": "A"}]}

        routes = json.loads(
            await a.run(sys.executable, "-m", "micro", "network", "routes", "--json", "--address", proxy)
        )
        greeter = [(r["node"], r["gateway"], r["metric"]) for r in routes if r["service"] == "greeter"]
        assert greeter == [("c", "b", 3)]
        graph = json.loads(await a.run(sys.executable, "-m", "micro", "network", "graph", "--json", "--address", proxy))
        assert graph["graph"]["a"]["peers"] == ["b"]
        assert graph["graph"]["c"]["hops"] == 2
        nodes = json.loads(await a.run(sys.executable, "-m", "micro", "network", "nodes", "--json", MICRO_PROXY=proxy))
        assert (nodes["node"]["id"], [n["id"] for n in nodes["nodes"]]) == ("a", ["b"])
        services = await a.run(sys.executable, "-m", "micro", "network", "services", "--address", proxy)
        assert "greeter" in services.split()
        table = await a.run(
            sys.executable, "-m", "micro", "network", "routes", "--service", "greeter", "--address", proxy
        )
        assert [w for w in table.split() if w in ("greeter", "c", "b", "3")][:4] == ["greeter", "c", "b", "3"]
        tree = await a.run(sys.executable, "-m", "micro", "network", "graph", "--address", proxy)
        assert tree.split() == ["a", "b", "c"]

        started = time.monotonic()
        if netns:
            # C vanishes without a word: its cable is cut, no FIN reaches B; B notices by the link's silence.
            _ip("-n", netns["b"], "link", "delete", f"vbc{netns['b'].split('-')[2][:6]}")
        else:
            await c.stop(kill=True)  # the node and the service on C die at once (their sockets close)
        result = json.loads(await a.run(sys.executable, str(HERE / "line_client.py"), "gone", MICRO_PROXY=proxy))
        elapsed = time.monotonic() - started  # from C's end to A's ServiceNotFound, the client's start-up included
        assert result["seconds"] is not None, f"greeter never became ServiceNotFound: {result}"
        assert elapsed < STATED + SLACK, (elapsed, result)
        assert result["slowest"] < 5.5, f"a call hung: {result}"
        routes = json.loads(
            await a.run(sys.executable, "-m", "micro", "network", "routes", "--json", "--address", proxy)
        )
        assert [r for r in routes if r["node"] == "c"] == []
    finally:
        for host in (a, b, c):
            await host.stop()


async def test_three_nodes_on_loopback(tmp_path: Path) -> None:
    await line_test(tmp_path, None)


async def test_three_nodes_in_network_namespaces(tmp_path: Path) -> None:
    why = _netns_available()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the namespace variant: {why}")
        pytest.skip(why)
    with namespaces() as names:
        await line_test(tmp_path, names)
