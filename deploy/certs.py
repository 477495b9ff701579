"""A local certificate authority and a server certificate for the web tier (`make certs`).

In ``settings.certs_dir``, what nginx reads: ``ca.pem`` (the CA a browser is told to
trust), ``server.pem`` (server certificate then the CA: the chain nginx sends) and
``server-key.pem``. Names: ``settings.server_name``, ``localhost``, ``127.0.0.1``, ``::1``.
The CA's key, ``ca-key.pem``, lives apart in ``settings.ca_dir`` (0700): certs_dir is
mounted into the web container, and whoever holds that key can sign for any name. One
left in certs_dir by an older version is moved out. Keys are 0600: only their owner — the
nginx master, which loads them before workers start — reads them; certificates are 0644.

Idempotent: existing files are kept unless a certificate expires within 30 days, no longer
names ``server_name``, was not signed by the CA on disk, or (the server's) lives longer than
``SERVER_LIFETIME``; ``--force`` makes all anew.
When TLS_CERT/TLS_KEY point at the operator's own files (e.g. Let's Encrypt), nothing is
made: they are only checked to exist.

Run: python -m deploy.certs [--force]
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import shutil
import socket
import sys
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deploy.settings import DeploySettings

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
RENEW_WITHIN = dt.timedelta(days=30)
CA_LIFETIME = dt.timedelta(days=3650)
# Mozilla's intermediate profile allows a server certificate 365 days at most (sslyze
# --mozilla_config=intermediate flags longer ones), counted from notBefore; that is also
# under the 398 days browsers accept from a public CA and Apple's 825. The CA lives longer.
SERVER_LIFETIME = dt.timedelta(days=365)
# notBefore lies this far back, so a clock a little behind ours still accepts the
# certificate; it is part of SERVER_LIFETIME, not added to it.
BACKDATE = dt.timedelta(minutes=5)


class CertificateError(RuntimeError):
    """Certificates are missing or unusable; the message says which and what to do."""


def ensure_certs(settings: DeploySettings, *, force: bool = False) -> Path:
    """Make (or keep) the local CA and server certificate; return the server certificate path.

    With operator-provided TLS_CERT/TLS_KEY outside the managed files, only checks they exist.
    """
    certs_dir = settings.certs_dir
    if not settings.uses_local_ca:
        for path, variable in ((settings.tls_cert, "TLS_CERT"), (settings.tls_key, "TLS_KEY")):
            if not path.is_file():
                raise CertificateError(f"{variable}={path} does not exist")
        return settings.tls_cert
    certs_dir.mkdir(parents=True, exist_ok=True)
    ca_key_path = _private_ca_key(certs_dir, settings.ca_dir)
    names = server_names(settings.server_name)
    ca_cert, ca_key = (None, None) if force else _load_pair(certs_dir / CA_CERT, ca_key_path)
    if ca_cert is None or _expiring(ca_cert):
        ca_cert, ca_key = _make_ca(settings.server_name)
        _write_pair(certs_dir / CA_CERT, ca_key_path, [ca_cert], ca_key)
        force = True  # a new CA signs a new server certificate
    server_pair = certs_dir / SERVER_CERT, certs_dir / SERVER_KEY
    server, _ = (None, None) if force else _load_pair(*server_pair)
    if (
        server is None
        or _expiring(server)
        or _lives_too_long(server)
        or not _fits(server, ca_cert, names)
    ):
        server, server_key = _make_server(ca_cert, ca_key, names)
        _write_pair(*server_pair, [server, ca_cert], server_key)
    return certs_dir / SERVER_CERT


def certificate_expiry(path: Path) -> dt.datetime:
    """When the first certificate in a PEM file expires (timezone-aware, UTC)."""
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return cert.not_valid_after_utc


def server_names(server_name: str) -> list[str]:
    """The names the server certificate covers, server_name first, without repeats."""
    names = [server_name, "localhost", "127.0.0.1", "::1"]
    return list(dict.fromkeys(names))


# ---- internals ---------------------------------------------------------------------------


def _private_ca_key(certs_dir: Path, ca_dir: Path) -> Path:
    """The CA key's path in its own 0700 folder, moving one out of certs_dir (where older
    versions kept it) or, when the private folder already has one, deleting it."""
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(ca_dir, 0o700)
    path = ca_dir / CA_KEY
    legacy = certs_dir / CA_KEY
    if legacy.is_file():
        if path.is_file():
            legacy.unlink()
        else:
            shutil.move(legacy, path)
    return path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _expiring(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _now() < RENEW_WITHIN


def _lives_too_long(cert: x509.Certificate) -> bool:
    """Made under an older, longer limit (397 days before 365): renewed, not kept."""
    return cert.not_valid_after_utc - cert.not_valid_before_utc > SERVER_LIFETIME


def _load_pair(cert_path: Path, key_path: Path):
    if not (cert_path.is_file() and key_path.is_file()):
        return None, None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError:
        return None, None
    if cert.public_key() != key.public_key():
        return None, None
    return cert, key


def _fits(cert: x509.Certificate, ca: x509.Certificate, names: list[str]) -> bool:
    """Signed by this CA and naming every name we serve."""
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    covered = {str(n) for n in san.get_values_for_type(x509.DNSName)}
    covered |= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return all(_canonical(n) in covered for n in names)


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _make_ca(server_name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chatstack"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"chatstack local CA ({socket.gethostname()})"[:64]
            ),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """ECDSA keys sign; only the CA's signs certificates and revocation lists."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _make_server(ca_cert: x509.Certificate, ca_key, names: list[str]):
    key = ec.generate_private_key(ec.SECP256R1())
    not_before = _now() - BACKDATE
    not_after = min(not_before + SERVER_LIFETIME, ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write_pair(cert_path: Path, key_path: Path, chain: list[x509.Certificate], key) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600)
    _write(cert_path, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file created with `mode`, so a key is never readable by others."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)  # the umask may have narrowed it
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.certs", description=__doc__)
    parser.add_argument("--force", action="store_true", help="make a new CA and certificate")
    args = parser.parse_args(argv)
    settings = DeploySettings.from_env()
    try:
        cert = ensure_certs(settings, force=args.force)
    except CertificateError as exc:
        print(f"certs: {exc}", file=sys.stderr)
        return 1
    print(f"certs: {cert} for {', '.join(server_names(settings.server_name))}")
    print(f"certs: expires {certificate_expiry(cert):%Y-%m-%d}")
    if settings.uses_local_ca:
        print(f"certs: trust {settings.certs_dir / CA_CERT} in your browser (docs/web-tier.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
