"""gRPC over TLS: the server with MICRO_SERVER_TLS/CERT_FILE/KEY_FILE(/CA_FILE), called by plain grpcio clients
with ssl_channel_credentials and by micro's grpc client with MICRO_CLIENT_TLS/CA_FILE; certificates made here."""

import datetime
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from micro import create
from micro.errors import InvalidOption, Unavailable
from micro.registry.memory import MemoryRegistry
from micro.selector.cache import RandomSelector
from micro_grpc import GRPCClient, GRPCClientOptions, GRPCServer, GRPCServerOptions


def _certificate(
    subject: str, key: Any, issuer: Any, signer: Any, *, ca: bool, ip: str | None = None, dns: str | None = None
) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    names: list[Any] = []
    if ip:
        names.append(x509.IPAddress(ipaddress.ip_address(ip)))
    if dns:
        names.append(x509.DNSName(dns))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and for the name ``echo.internal``, and a client certificate."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, None, ca_key, ca=True)
    files: dict[str, bytes] = {"ca": ca.public_bytes(serialization.Encoding.PEM)}
    for role, extra in (("server", {"ip": "127.0.0.1", "dns": "echo.internal"}), ("client", {})):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{role}_cert"] = _certificate(role, key, ca.subject, ca_key, ca=False, **extra).public_bytes(
            serialization.Encoding.PEM
        )
        files[f"{role}_key"] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    paths = {}
    for name, data in files.items():
        path = directory / f"{name}.pem"
        path.write_bytes(data)
        paths[name] = str(path)
    return paths


def pem(path: str) -> bytes:
    """A PEM file's bytes (a few hundred of them: read in the loop's thread)."""
    return Path(path).read_bytes()


async def serve(pb2: ModuleType, echo_handler: Any, registry: Any = None, **tls: Any) -> GRPCServer:
    server = GRPCServer(GRPCServerOptions(name="echo.tls", tls=True, **tls), registry=registry or MemoryRegistry())
    server.handle(echo_handler(pb2))
    await server.start()
    return server


@pytest.fixture
async def tls_server(echo: Any, echo_handler: Any, pki: dict[str, str]) -> AsyncIterator[GRPCServer]:
    pb2, _ = echo
    server = await serve(pb2, echo_handler, cert_file=pki["server_cert"], key_file=pki["server_key"])
    try:
        yield server
    finally:
        await server.stop()


async def test_a_plain_grpcio_client_calls_over_tls(tls_server: GRPCServer, echo: Any, pki: dict[str, str]) -> None:
    pb2, pb2_grpc = echo
    credentials = grpc.ssl_channel_credentials(root_certificates=pem(pki["ca"]))
    async with grpc.aio.secure_channel(tls_server.address, credentials) as channel:
        reply = await pb2_grpc.EchoStub(channel).Say(pb2.Msg(text="secret", n=1), timeout=10)
    assert (reply.text, reply.n) == ("secret|-", 2)
    [node] = tls_server.service().nodes
    assert node.metadata["secure"] == "true"


async def test_plaintext_and_untrusted_clients_are_refused(
    tls_server: GRPCServer, echo: Any, pki: dict[str, str]
) -> None:
    pb2, pb2_grpc = echo
    async with grpc.aio.insecure_channel(tls_server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as plain:
            await pb2_grpc.EchoStub(channel).Say(pb2.Msg(text="x"), timeout=5)
    assert plain.value.code() == grpc.StatusCode.UNAVAILABLE
    # The client's own certificate is not a CA: the server's chain does not verify against it.
    wrong_roots = grpc.ssl_channel_credentials(root_certificates=pem(pki["client_cert"]))
    async with grpc.aio.secure_channel(tls_server.address, wrong_roots) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as untrusted:
            await pb2_grpc.EchoStub(channel).Say(pb2.Msg(text="x"), timeout=5)
    assert untrusted.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_micro_grpc_client_over_tls_by_registry_name(echo: Any, echo_handler: Any, pki: dict[str, str]) -> None:
    pb2, _ = echo
    registry = MemoryRegistry()
    server = await serve(pb2, echo_handler, registry, cert_file=pki["server_cert"], key_file=pki["server_key"])
    clients = [
        GRPCClient(
            GRPCClientOptions(retries=0, tls=True, ca_file=pki["ca"]), selector=RandomSelector(registry=registry)
        ),
        # The certificate names echo.internal as well as the IP: server_name checks that name instead.
        GRPCClient(
            GRPCClientOptions(retries=0, tls=True, ca_file=pki["ca"], server_name="echo.internal"),
            selector=RandomSelector(registry=registry),
        ),
    ]
    plain = GRPCClient(GRPCClientOptions(retries=0), selector=RandomSelector(registry=registry))
    try:
        for client in clients:
            reply = await client.call("echo.tls", "Echo.Say", pb2.Msg(text="hi", n=2), response_type=pb2.Msg)
            assert (reply.text, reply.n) == ("hi|-", 3)
        with pytest.raises(Unavailable):
            await plain.call("echo.tls", "Echo.Say", pb2.Msg(text="hi"), response_type=pb2.Msg, timeout=5)
    finally:
        for client in (*clients, plain):
            await client.close()
        await server.stop()


async def test_mutual_tls_requires_a_client_certificate(echo: Any, echo_handler: Any, pki: dict[str, str]) -> None:
    pb2, pb2_grpc = echo
    server = await serve(pb2, echo_handler, cert_file=pki["server_cert"], key_file=pki["server_key"], ca_file=pki["ca"])
    roots = pem(pki["ca"])
    try:
        without = grpc.ssl_channel_credentials(root_certificates=roots)
        async with grpc.aio.secure_channel(server.address, without) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pb2_grpc.EchoStub(channel).Say(pb2.Msg(text="x"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with_cert = grpc.ssl_channel_credentials(
            root_certificates=roots,
            private_key=pem(pki["client_key"]),
            certificate_chain=pem(pki["client_cert"]),
        )
        async with grpc.aio.secure_channel(server.address, with_cert) as channel:
            reply = await pb2_grpc.EchoStub(channel).Say(pb2.Msg(text="mutual", n=0), timeout=10)
        assert reply.text == "mutual|-"
    finally:
        await server.stop()


def test_tls_options_are_checked_and_read_from_the_environment(pki: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(InvalidOption, match="cert_file"):
        GRPCServerOptions(tls=True)
    with pytest.raises(InvalidOption, match="key_file"):
        GRPCServerOptions(tls=True, cert_file=pki["server_cert"])
    with pytest.raises(InvalidOption, match="tls"):
        GRPCClientOptions(ca_file=pki["ca"])
    server = create(
        "server",
        environ={
            "MICRO_SERVER": "grpc",
            "MICRO_SERVER_TLS": "true",
            "MICRO_SERVER_CERT_FILE": pki["server_cert"],
            "MICRO_SERVER_KEY_FILE": pki["server_key"],
            "MICRO_SERVER_CA_FILE": pki["ca"],
        },
    )
    assert isinstance(server.options, GRPCServerOptions)
    assert (server.options.tls, server.options.ca_file) == (True, pki["ca"])
    client = create(
        "client", environ={"MICRO_CLIENT": "grpc", "MICRO_CLIENT_TLS": "1", "MICRO_CLIENT_CA_FILE": pki["ca"]}
    )
    assert isinstance(client.options, GRPCClientOptions)
    assert client.options.tls
    garbage = tmp_path / "not.pem"
    garbage.write_text("hello")
    bad = GRPCServer(GRPCServerOptions(name="bad", tls=True, cert_file=str(garbage), key_file=str(garbage)))
    with pytest.raises(InvalidOption, match="not a PEM file"):
        bad._credentials()
