"""TLS: ``rediss://`` with a private CA, mutual TLS with a client certificate, and the
TLS settings validated. Certificates are made here with ``cryptography``; the server
is a real redis-server with ``--tls-port``."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nano_graphrag_redis import BlockingRedisKVStorage, ConfigError, StorageUnavailableError
from nano_graphrag_redis.local_server import RedisServer, free_port


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, issuer_key: Any, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate | None = None, key: Any = None) -> str:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("test CA", ca_key, None, ca_key, ca=True)
    files = {"ca": _write(d / "ca.pem", ca)}
    for who in ("server", "client"):
        key = _key()
        files[who] = _write(d / f"{who}.pem", _cert(who, key, ca, ca_key, ca=False))
        files[f"{who}_key"] = _write(d / f"{who}.key", key=key)
    return files


def tls_server(pki: dict[str, str], require_client_cert: bool) -> tuple[RedisServer, int]:
    port = free_port()
    server = RedisServer(
        "--tls-port", str(port),
        "--tls-cert-file", pki["server"],
        "--tls-key-file", pki["server_key"],
        "--tls-ca-cert-file", pki["ca"],
        "--tls-auth-clients", "yes" if require_client_cert else "no",
    )  # fmt: skip
    return server, port


@pytest.fixture(scope="module")
def tls(pki: dict[str, str]) -> Iterator[int]:
    server, port = tls_server(pki, require_client_cert=False)
    with server:
        yield port


@pytest.fixture(scope="module")
def mtls(pki: dict[str, str]) -> Iterator[int]:
    server, port = tls_server(pki, require_client_cert=True)
    with server:
        yield port


def test_rediss_with_a_private_ca(tls: int, pki: dict[str, str]) -> None:
    kv = BlockingRedisKVStorage("full_docs", redis_url=f"rediss://127.0.0.1:{tls}", redis_tls_ca_cert=pki["ca"])
    kv.upsert({"d": {"content": "over TLS"}})
    assert kv.get_by_id("d") == {"content": "over TLS"}
    assert kv.settings()["tls_ca_cert"] == pki["ca"]


def test_untrusted_server_certificate_is_refused(tls: int) -> None:
    kv = BlockingRedisKVStorage("full_docs", redis_url=f"rediss://127.0.0.1:{tls}", redis_retry_attempts=0)
    with pytest.raises(StorageUnavailableError, match="(?i)certificate"):
        kv.get_by_id("d")


def test_mutual_tls(mtls: int, pki: dict[str, str]) -> None:
    url = f"rediss://127.0.0.1:{mtls}"
    kv = BlockingRedisKVStorage(
        "full_docs",
        redis_url=url,
        redis_tls_ca_cert=pki["ca"],
        redis_tls_cert=pki["client"],
        redis_tls_key=pki["client_key"],
    )
    kv.upsert({"d": {"v": 1}})
    assert kv.get_by_id("d") == {"v": 1}
    anonymous = BlockingRedisKVStorage(
        "full_docs", redis_url=url, redis_tls_ca_cert=pki["ca"], redis_retry_attempts=0, redis_breaker_threshold=0
    )
    with pytest.raises(StorageUnavailableError):
        anonymous.get_by_id("d")


def test_tls_settings_are_validated(pki: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="redis_tls_ca_cert in keyword arguments: cannot read"):
        BlockingRedisKVStorage("x", redis_url="rediss://h:1", redis_tls_ca_cert=str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigError, match="need a rediss:// URL"):
        BlockingRedisKVStorage("x", redis_url="redis://h:1", redis_tls_ca_cert=pki["ca"])
    with pytest.raises(ConfigError, match="go together"):
        BlockingRedisKVStorage("x", redis_url="rediss://h:1", redis_tls_cert=pki["client"])
    monkeypatch.setenv("REDIS_TLS_CA_CERT", str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match="REDIS_TLS_CA_CERT in the environment"):
        BlockingRedisKVStorage("x", redis_url="rediss://h:1")
