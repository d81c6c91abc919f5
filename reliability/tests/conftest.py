"""The reliability suite: each test breaks something on purpose and records what it measured.

``figure(guarantee, value, unit)`` records one measurement; at the end of the run every
figure is printed in the terminal summary and written to ``.reports/reliability-figures.json``
at the repository root, which is what ``docs/reliability.md`` quotes.

Like core's tests, the run gets its own per-user state directories (local registry, sqlite
store, file sync, keys) and drops ``MICRO_*`` variables from the caller's shell. A backend
that does not answer on its default local address is a skip on a developer's machine and a
failure under CI (``CI=true``): a green CI run must not have skipped a fault test.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

_ROOT = tempfile.mkdtemp(prefix="micro-reliability-")
for _name in ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
    _path = os.path.join(_ROOT, _name.lower())
    os.makedirs(_path, mode=0o700, exist_ok=True)
    os.environ[_name] = _path
for _key in [k for k in os.environ if k.startswith("MICRO_")]:
    del os.environ[_key]

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REPO = HERE.parents[1]
FIGURES = REPO / ".reports" / "reliability-figures.json"

_figures: list[dict[str, Any]] = []


def pytest_unconfigure() -> None:
    shutil.rmtree(_ROOT, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _figures:
        return
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(json.dumps(_figures, indent=1) + "\n")
    terminalreporter.section("reliability figures")
    for row in _figures:
        terminalreporter.write_line(f"{row['guarantee']}: {row['value']} {row['unit']}  ({row['test']})")


Figure = Callable[..., None]


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Figure:
    """``figure("kill -9: removal from the local registry", 3.1, "s")`` records one measurement."""

    def record(guarantee: str, value: float | int | str, unit: str = "") -> None:
        if isinstance(value, float):
            value = round(value, 3)
        _figures.append({"guarantee": guarantee, "value": value, "unit": unit, "test": request.node.nodeid})

    return record


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need(name: str, port: int, host: str = "127.0.0.1") -> None:
    """Skip (fail under CI) when ``name`` does not answer on its default local address."""
    if port_open(host, port):
        return
    message = f"{name} is not listening on {host}:{port}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}: under CI a missing backend is a failure, not a skip")
    pytest.skip(message)


@pytest.fixture
def unique() -> str:
    return f"rel-{uuid.uuid4().hex[:10]}"


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 10.0) -> float:
    """Poll ``check`` until it is true; the seconds it took. Fails naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    """A self-signed CA and a server certificate for 127.0.0.1, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "micro reliability CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )
    files = {
        "ca_file": tmp_path / "ca.pem",
        "cert_file": tmp_path / "cert.pem",
        "key_file": tmp_path / "key.pem",
    }
    files["ca_file"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert_file"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key_file"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return {name: str(path) for name, path in files.items()}


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await spawn(name, env={...})`` starts serve.py in its own process and waits until it is registered."""
    from procs import SERVE, spawner

    async with spawner(SERVE) as start:
        yield start
