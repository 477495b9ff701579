"""The local CA and server certificate: names, chain, permissions, idempotence, renewal."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from deploy import certs
from deploy.certs import CertificateError, certificate_expiry, ensure_certs, main
from deploy.settings import DeploySettings

# What nginx (and a browser's trust store) needs, in CERTS_DIR; the CA's key lives apart.
SERVED = ("ca.pem", "server.pem", "server-key.pem")
FILES = (*SERVED, "ca-key.pem")


def managed(certs_dir: Path, server_name: str = "chat.example.com") -> DeploySettings:
    return DeploySettings(
        server_name=server_name,
        certs_dir=certs_dir,
        tls_cert=certs_dir / "server.pem",
        tls_key=certs_dir / "server-key.pem",
    )


def load_chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def ca_key_of(certs_dir: Path) -> Path:
    """Where the CA's key lives by default: `ca/` beside CERTS_DIR."""
    return certs_dir.parent / "ca" / "ca-key.pem"


def file_of(certs_dir: Path, name: str) -> Path:
    return ca_key_of(certs_dir) if name == "ca-key.pem" else certs_dir / name


def contents(certs_dir: Path) -> dict[str, bytes]:
    return {name: file_of(certs_dir, name).read_bytes() for name in FILES}


def test_makes_a_ca_and_a_server_certificate_for_every_name(tmp_path: Path) -> None:
    settings = managed(tmp_path / "certs")
    assert ensure_certs(settings) == settings.tls_cert
    server, ca = load_chain(settings.tls_cert)  # the chain nginx sends: leaf, then the CA
    assert ca == load_chain(tmp_path / "certs" / "ca.pem")[0]
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["chat.example.com", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Mozilla's intermediate profile: a leaf lives at most 365 days, counted from its
    # notBefore (sslyze --mozilla_config=intermediate flags 397). The CA may live longer.
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert dt.timedelta(days=300) < lifetime <= dt.timedelta(days=365)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > dt.timedelta(days=365)


def test_a_tls_client_trusting_the_ca_accepts_the_certificate(tmp_path: Path) -> None:
    settings = managed(tmp_path / "certs")
    ensure_certs(settings)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(settings.tls_cert, settings.tls_key)  # key matches the cert
    client_side = ssl.create_default_context(cafile=str(tmp_path / "certs" / "ca.pem"))
    for name in ("chat.example.com", "localhost", "127.0.0.1", "::1"):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_side.wrap_bio(incoming, outgoing, server_hostname=name)
        server = server_side.wrap_bio(s_in, s_out, server_side=True)
        for _ in range(10):
            for side in (client, server):
                with contextlib.suppress(ssl.SSLWantReadError):
                    side.do_handshake()
            s_in.write(outgoing.read())
            incoming.write(s_out.read())
        assert client.version() is not None, name  # handshake finished, name verified


def test_keys_are_private_and_certificates_readable(tmp_path: Path) -> None:
    certs_dir = tmp_path / "certs"
    ensure_certs(managed(certs_dir))
    for name in FILES:
        mode = stat.S_IMODE(file_of(certs_dir, name).stat().st_mode)
        assert mode == (0o600 if name.endswith("key.pem") else 0o644), (name, oct(mode))
    assert stat.S_IMODE(ca_key_of(certs_dir).parent.stat().st_mode) == 0o700


def test_the_ca_key_is_not_in_the_folder_nginx_reads(tmp_path: Path) -> None:
    """CERTS_DIR is what the web container mounts: it holds what nginx needs, and the key
    that could sign a certificate for any name is elsewhere."""
    certs_dir = tmp_path / "certs"
    ensure_certs(managed(certs_dir))
    assert sorted(p.name for p in certs_dir.iterdir()) == sorted(SERVED)
    key = serialization.load_pem_private_key(ca_key_of(certs_dir).read_bytes(), None)
    assert key.public_key() == load_chain(certs_dir / "ca.pem")[0].public_key()


def test_a_ca_key_left_in_the_certs_folder_is_moved_out(tmp_path: Path) -> None:
    """Certificates made before the CA's key moved: the same CA is kept (browsers trust
    it), and its key leaves CERTS_DIR."""
    settings = managed(tmp_path / "certs")
    ensure_certs(settings)
    before = contents(settings.certs_dir)
    ca_key_of(settings.certs_dir).rename(settings.certs_dir / "ca-key.pem")
    ensure_certs(settings)
    assert not (settings.certs_dir / "ca-key.pem").exists()
    assert contents(settings.certs_dir) == before


def test_a_stale_ca_key_in_the_certs_folder_is_removed(tmp_path: Path) -> None:
    settings = managed(tmp_path / "certs")
    ensure_certs(settings)
    before = contents(settings.certs_dir)
    (settings.certs_dir / "ca-key.pem").write_bytes(before["ca-key.pem"])
    ensure_certs(settings)
    assert not (settings.certs_dir / "ca-key.pem").exists()
    assert contents(settings.certs_dir) == before


def test_ca_dir_is_a_setting_and_may_not_lie_in_certs_dir(tmp_path: Path) -> None:
    from chatstack.envsettings import SettingsError

    certs_dir, ca_dir = tmp_path / "certs", tmp_path / "private" / "ca"
    settings = DeploySettings.from_env({"CERTS_DIR": str(certs_dir), "CA_DIR": str(ca_dir)})
    ensure_certs(settings)
    assert (ca_dir / "ca-key.pem").is_file()
    assert DeploySettings.from_env({"CERTS_DIR": str(certs_dir)}).ca_dir == tmp_path / "ca"
    with pytest.raises(SettingsError, match="CA_DIR"):
        DeploySettings.from_env({"CERTS_DIR": str(certs_dir), "CA_DIR": str(certs_dir / "ca")})


def test_existing_certificates_are_kept(tmp_path: Path) -> None:
    settings = managed(tmp_path / "certs")
    ensure_certs(settings)
    before = contents(settings.certs_dir)
    ensure_certs(settings)
    assert contents(settings.certs_dir) == before


def test_force_makes_everything_anew(tmp_path: Path) -> None:
    settings = managed(tmp_path / "certs")
    ensure_certs(settings)
    before = contents(settings.certs_dir)
    ensure_certs(settings, force=True)
    after = contents(settings.certs_dir)
    assert all(before[name] != after[name] for name in FILES)


def test_a_server_certificate_near_expiry_is_renewed_by_the_same_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = managed(tmp_path / "certs")
    ensure_certs(settings)
    before = contents(settings.certs_dir)
    old_expiry = certificate_expiry(settings.tls_cert)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=350)  # 15 days left
    monkeypatch.setattr(certs, "_now", lambda: later)
    ensure_certs(settings)
    after = contents(settings.certs_dir)
    assert after["ca.pem"] == before["ca.pem"]
    assert after["server.pem"] != before["server.pem"]
    assert certificate_expiry(settings.tls_cert) > old_expiry


def test_a_server_certificate_that_lives_too_long_is_renewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate made when the limit was 397 days is replaced at the next start, by
    the same CA, with one that fits the 365-day limit."""
    settings = managed(tmp_path / "certs")
    monkeypatch.setattr(certs, "SERVER_LIFETIME", dt.timedelta(days=397))
    ensure_certs(settings)
    before = contents(settings.certs_dir)
    monkeypatch.undo()
    ensure_certs(settings)
    after = contents(settings.certs_dir)
    assert after["ca.pem"] == before["ca.pem"]
    assert after["server.pem"] != before["server.pem"]
    server = load_chain(settings.tls_cert)[0]
    assert server.not_valid_after_utc - server.not_valid_before_utc <= dt.timedelta(days=365)
    ensure_certs(settings)  # and the renewed one is kept
    assert contents(settings.certs_dir)["server.pem"] == after["server.pem"]


def test_a_new_server_name_gets_a_new_certificate(tmp_path: Path) -> None:
    settings = managed(tmp_path / "certs")
    ensure_certs(settings)
    before = contents(settings.certs_dir)
    ensure_certs(dataclasses.replace(settings, server_name="other.example.com"))
    after = contents(settings.certs_dir)
    assert after["ca.pem"] == before["ca.pem"]
    server = load_chain(settings.tls_cert)[0]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "other.example.com" in san.get_values_for_type(x509.DNSName)


def test_a_replaced_ca_reissues_the_server_certificate(tmp_path: Path) -> None:
    settings = managed(tmp_path / "certs")
    ensure_certs(settings)
    ca_key_of(settings.certs_dir).unlink()
    ensure_certs(settings)
    server = load_chain(settings.tls_cert)[0]
    server.verify_directly_issued_by(load_chain(settings.certs_dir / "ca.pem")[0])


def test_operator_files_are_used_as_they_are(tmp_path: Path) -> None:
    live = tmp_path / "letsencrypt" / "live" / "chat.example.com"
    live.mkdir(parents=True)
    ensure_certs(managed(tmp_path / "made"))
    (live / "fullchain.pem").write_bytes((tmp_path / "made" / "server.pem").read_bytes())
    (live / "privkey.pem").write_bytes((tmp_path / "made" / "server-key.pem").read_bytes())
    settings = dataclasses.replace(
        managed(tmp_path / "certs"),
        tls_cert=live / "fullchain.pem",
        tls_key=live / "privkey.pem",
    )
    assert ensure_certs(settings) == live / "fullchain.pem"
    assert not (tmp_path / "certs").exists()
    (live / "privkey.pem").unlink()
    with pytest.raises(CertificateError, match="TLS_KEY"):
        ensure_certs(settings)


def test_certificate_expiry_is_the_leaf_expiry(tmp_path: Path) -> None:
    settings = managed(tmp_path / "certs")
    ensure_certs(settings)
    expiry = certificate_expiry(settings.tls_cert)
    assert expiry.tzinfo is not None
    assert expiry == load_chain(settings.tls_cert)[0].not_valid_after_utc
    assert expiry < certificate_expiry(settings.certs_dir / "ca.pem")


def test_main_makes_certificates_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CERTS_DIR", str(tmp_path / "certs"))
    monkeypatch.setenv("SERVER_NAME", "chat.example.net")
    for name in ("TLS_CERT", "TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 0
    assert "chat.example.net" in capsys.readouterr().out
    assert all(file_of(tmp_path / "certs", name).is_file() for name in FILES)
