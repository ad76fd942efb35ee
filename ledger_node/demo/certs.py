"""Throwaway TLS certificates for a local site: a CA made for the run, one certificate per
server or client, signed by it (``cryptography``'s x509).

:class:`~ledger_node.demo.localsite.LocalSite` makes them in its run folder so that the
demo runs over https with mutual TLS end to end, as a consortium would (docs/deploy.md says
how to issue real ones). Keys are ECDSA P-256, written with mode 0600; certificates name
``127.0.0.1`` and ``localhost`` (or the hosts given) as subject alternative names and serve
both as server and client certificates, since a member's node is both.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOCAL_HOSTS: Final = ("127.0.0.1", "localhost")
VALID_DAYS: Final = 30


@dataclass(frozen=True)
class CertFiles:
    """A PEM certificate and its PEM private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA's certificate and key, able to issue certificates."""

    files: CertFiles
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def cert(self) -> Path:
        """The CA certificate (the bundle clients and servers trust)."""
        return self.files.cert


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JointLedger local site"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, certificate: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> CertFiles:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return CertFiles(cert_path, key_path)


def new_ca(directory: Path, name: str = "JointLedger local CA", *,
           days: int = VALID_DAYS) -> CertificateAuthority:
    """A fresh CA (``ca.pem``, ``ca.key``) in ``directory``, valid for ``days`` days."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(name)).issuer_name(_name(name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(_write(directory, "ca", certificate, key), certificate, key)


def issue(ca: CertificateAuthority, directory: Path, name: str,
          hosts: Sequence[str] = LOCAL_HOSTS, *, days: int = VALID_DAYS) -> CertFiles:
    """A certificate for ``name`` (``NAME.pem``, ``NAME.key`` in ``directory``) signed by
    ``ca``, naming ``hosts`` (IP addresses or DNS names), for TLS servers and clients."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(name)).issuer_name(ca.certificate.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.private_key.public_key()), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )
    return _write(directory, name, certificate, key)
