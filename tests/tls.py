"""Certificates for the TLS tests, made fresh for each run with the ``cryptography`` package.

A CA signs the broker's certificate (for 127.0.0.1 and localhost) and a client certificate; the
client's key is encrypted with a password, so the key-password setting is exercised too.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_PASSWORD = "client-key-secret"


@dataclass(frozen=True)
class Certificates:
    ca: Path              # PEM: the CA certificate (clients' and the broker's trust store)
    broker_keystore: Path  # PEM: the broker's PKCS#8 key and certificate chain
    client_certificate: Path
    client_key: Path      # PEM, encrypted with KEY_PASSWORD


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key, issuer: x509.Name, issuer_key, *, ca: bool = False,
                 server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("livelearn test CA", ca_key, _name("livelearn test CA"), ca_key, ca=True)
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_cert = _certificate("localhost", broker_key, ca_cert.subject, ca_key, server=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _certificate("livelearn-worker", client_key, ca_cert.subject, ca_key)

    ca = folder / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(pem))
    keystore = folder / "broker.pem"
    keystore.write_bytes(
        broker_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    certificate = folder / "client.pem"
    certificate.write_bytes(client_cert.public_bytes(pem))
    key = folder / "client.key"
    key.write_bytes(client_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(KEY_PASSWORD.encode())))
    return Certificates(ca, keystore, certificate, key)
