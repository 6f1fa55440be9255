"""Helpers (not tests): a throwaway certificate authority for the TLS end-to-end tests, generated with the openssl
command line into the test's tmp dir (nothing secret is committed). EC P-256 keys: quick to generate."""
import pathlib
import subprocess

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def _openssl(*args, cwd, prefix=()):
    result = subprocess.run([*prefix, "openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {result.stderr}")


def _key(path, cwd):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path), cwd=cwd)


class CA:
    """A certificate authority in `directory/<name>-ca.pem` (+ key) that issues leaf certificates."""

    def __init__(self, directory, name="test", backdate_days=0):
        """`backdate_days`: every certificate is valid from that many days ago (openssl run with libfaketime, from
        Debian's faketime; preloaded rather than through its `faketime` wrapper, whose named semaphore can collide
        with one left by an earlier run), for hosts whose clocks are behind."""
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = self.dir / f"{name}-ca.key"
        self.cert = self.dir / f"{name}-ca.pem"
        self.prefix = ("env", f"LD_PRELOAD={FAKETIME_LIB}", f"FAKETIME=-{backdate_days}d") if backdate_days else ()
        self.days = str(2 + backdate_days)
        _key(self.key, self.dir)
        _openssl("req", "-x509", "-new", "-key", str(self.key), "-subj", f"/CN={name} test CA", "-days", self.days,
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-out", str(self.cert), cwd=self.dir, prefix=self.prefix)
        self.serial = 0

    def issue(self, common_name, sans="IP:127.0.0.1,DNS:localhost"):
        """A leaf certificate for `common_name` (server and client use): (cert path, key path)."""
        self.serial += 1
        stem = self.dir / f"{self.name}-{common_name}-{self.serial}"
        key, csr, cert, ext = (stem.with_suffix(s) for s in (".key", ".csr", ".pem", ".ext"))
        _key(key, self.dir)
        _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={common_name}", "-out", str(csr), cwd=self.dir)
        ext.write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-set_serial", str(1000 + self.serial), "-days", self.days, "-extfile", str(ext), "-out", str(cert),
                 cwd=self.dir, prefix=self.prefix)
        return cert, key
