"""Certificates for the HTTPS tests, made with the openssl command.

A throwaway CA signs leaf certificates for 127.0.0.1 (and localhost); the
clients trust only that CA, so every test connection verifies the server as
a real client would. faketime backdates a certificate to make it expired.
"""
import os
import socket
import ssl
import subprocess


def _openssl(*args, faketime=None, cwd=None):
    cmd = (["faketime", "-f", faketime] if faketime else []) + ["openssl", *args]
    out = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {out.stderr}")


class TestCA:
    """A CA in @directory that issues leaf certificates."""

    def __init__(self, directory):
        self.dir = directory
        self.ca_cert = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        self.serial = 1000
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "3650",
                 "-subj", "/CN=cashpayd test CA")
        with open(os.path.join(directory, "leaf.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def issue(self, name, days=90):
        """A new key and a certificate for it, valid @days from now.
        Returns (cert_path, key_path, serial)."""
        self.serial += 1
        cert = os.path.join(self.dir, f"{name}.pem")
        key = os.path.join(self.dir, f"{name}.key")
        csr = os.path.join(self.dir, f"{name}.csr")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                 "-set_serial", str(self.serial), "-days", str(days), "-out", cert,
                 "-extfile", os.path.join(self.dir, "leaf.ext"))
        os.unlink(csr)
        return cert, key, self.serial

    def self_signed(self, name, days, faketime):
        """A self-signed certificate made at the @faketime offset (e.g.
        "-60d"), valid @days from then: expired, or not yet valid."""
        cert = os.path.join(self.dir, f"{name}.pem")
        key = os.path.join(self.dir, f"{name}.key")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", key, "-out", cert, "-days", str(days),
                 "-subj", "/CN=127.0.0.1", faketime=faketime)
        return cert, key

    def client_context(self, minimum=ssl.TLSVersion.TLSv1_2, maximum=None):
        """A client context that trusts this CA only and checks the name."""
        ctx = ssl.create_default_context(cafile=self.ca_cert)
        ctx.minimum_version = minimum
        if maximum:
            ctx.maximum_version = maximum
        return ctx


def serial_of(ssl_sock):
    """The serial number of the certificate the server presented."""
    der = ssl_sock.getpeercert(binary_form=True)
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"],
                          input=der, capture_output=True, check=True).stdout.decode()
    return int(text.strip().split("=", 1)[1], 16)


def connect(ctx, port, timeout=10, source="127.0.0.1"):
    """A verified TLS connection to 127.0.0.1:@port."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                   source_address=(source, 0))
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")
