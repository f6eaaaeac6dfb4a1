"""Trusted token-issuer keys from root-owned local files.  Never the network.

Each issuer of the ``tokens:`` policy names one or more key files (JWKS JSON or PEM
``PUBLIC KEY`` blocks, see ``core.tokens.parse_key_file``).  A key file must be a regular
file, not a symlink, owned by root, not writable by group or others, in a directory chain
that is root-owned and not group/other-writable (``trust.check_dir_chain``), at most
``MAX_KEY_FILE`` bytes.  Anything else is a ``SystemFault`` (202: the site must fix its
installation; the caller may retry) -- never "no keys" and never a fallback to fetching
the issuer's ``jwks_uri``.  Sites refresh the files out of band (e.g. a root cron job that
downloads the issuer's JWKS and renames it into place).
"""
import os
from stat import S_ISREG

from glexec_py.core import tokens
from glexec_py.effects import native, trust
from glexec_py.errors import ConfigError, SystemFault

MAX_KEY_FILE = 1 << 20


def read_key_file(path):
    """Runs as: the engine (root, or the caller in log-only mode: the file must then be
    readable by the caller; public keys, 0644 is fine).  Opens ``path`` without following
    symlinks, checks the opened file (fstat: regular, uid 0, no group/other write, size)
    and its directory chain, and returns its bytes.  ``SystemFault`` on any failure."""
    def fault(what, **detail):
        return SystemFault("token_keys", f"glexec: token key file {path}: {what}", path=path, **detail)

    if not isinstance(path, str) or not path.startswith("/"):
        raise fault("path must be absolute")
    try:
        trust.check_dir_chain(path.rpartition("/")[0] or "/")
    except FileNotFoundError:
        raise fault("directory does not exist") from None
    except SystemFault as e:
        raise fault(e.message.removeprefix("glexec: ")) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise fault(os.strerror(e.errno)) from None
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode):
            raise fault("not a regular file")
        if st.st_uid != 0:
            raise fault("not owned by root", owner=st.st_uid)
        if st.st_mode & 0o022:
            raise fault(f"mode {st.st_mode & 0o7777:04o} is writable by group or others")
        if st.st_size > MAX_KEY_FILE:
            raise fault(f"larger than {MAX_KEY_FILE} bytes")
        chunks, total = [], 0
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            total += len(b)
            if total > MAX_KEY_FILE:
                raise fault(f"larger than {MAX_KEY_FILE} bytes")
            chunks.append(b)
    except OSError as e:
        raise fault(os.strerror(e.errno)) from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def load_issuer_keys(issuer_policy):
    """Runs as: the engine (see ``read_key_file``).  All keys of one issuer (tuple of
    ``TokenKey``, file order).  ``SystemFault`` (reason ``token_keys``) if a file is
    unusable or holds an invalid/private/weak key; duplicate ``kid`` across the issuer's
    files is refused too.  Each key is checked once here by libcrypto
    (``native.check_pubkey``: decodes exactly, EC point on its curve)."""
    keys = []
    for path in issuer_policy.keys:
        data = read_key_file(path)
        try:
            keys.extend(tokens.parse_key_file(data, path, native.check_pubkey))
        except ConfigError as e:
            raise SystemFault("token_keys", f"glexec: {e.message}", path=path,
                              issuer=issuer_policy.issuer) from None
    kids = [k.kid for k in keys if k.kid is not None]
    if len(kids) != len(set(kids)):
        raise SystemFault("token_keys", f"glexec: duplicate kid among the key files of issuer "
                          f"{issuer_policy.issuer}", issuer=issuer_policy.issuer)
    return tuple(keys)


class KeyStore:
    """Lazy ``issuer -> keys`` mapping for ``core.tokens.verify_token``.  Runs as: the
    engine.  Only the issuer a token names is loaded (one or two small files per call),
    and at most once per process."""

    def __init__(self, policy):
        self.policy = policy
        self._cache = {}

    def __getitem__(self, issuer):
        keys = self._cache.get(issuer)
        if keys is None:
            ip = self.policy.issuer(issuer)
            if ip is None:
                raise KeyError(issuer)
            keys = self._cache[issuer] = load_issuer_keys(ip)
        return keys


def load_all(policy):
    """Runs as: the engine or a site tool (lint).  ``{issuer: keys}`` for every issuer;
    raises the first ``SystemFault``."""
    return {iss: load_issuer_keys(ip) for iss, ip in policy.issuers.items()}
