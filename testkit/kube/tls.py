"""HTTPS in front of the API server double, with a certificate authority made by ``openssl``.

A pod reaches kube-apiserver through its in-cluster configuration, which accepts nothing but
``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`` checked against the mounted
``ca.crt``. The double speaks plain HTTP (its watch streams peek at the raw socket to notice a
client that left), so TLS is terminated here and the bytes go on to it unchanged: the client
verifies a real chain and the double sees exactly the requests it would see unencrypted.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from testkit.proxy import ThrottleProxy

_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:kubernetes.default.svc
"""


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A one-day CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    ca_key, ca = directory / "ca.key", directory / "ca.crt"
    csr, key, cert = directory / "server.csr", directory / "server.key", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text(_SERVER_EXTENSIONS)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "1",
        "-subj", "/CN=pulltrace-e2e-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=kube-apiserver")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return ca, cert, key


class TlsFront(ThrottleProxy):
    """An unthrottled relay that accepts TLS on a loopback port the kernel picks; ``ca`` is
    the certificate a client must trust."""

    def __init__(self, target: str, directory: Path) -> None:
        self.ca, cert, key = make_certificates(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        super().__init__(target, tls=context)
