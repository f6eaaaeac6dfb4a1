"""The vomsdir (``<vomsdir>/<vo>/<host>.lsc``, legacy VOMS server certificates) and the
wiring of ``core.vomscheck`` to it and to libcrypto.

Only root-owned files that nobody else can write, in a root-owned directory chain
(``trust.check_file``), are used; anything else is a ``VomsdirError`` for the AC at hand.
VO and host names come from the (not yet verified) AC: ``core.voms`` already restricted
them to safe single path components; they are checked again here.
"""
import os
from stat import S_ISREG

from glexec_py.core import vomscheck
from glexec_py.effects import native, trust
from glexec_py.errors import SystemFault

MAX_FILE = 1 << 20
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


def _component(s):
    if (not s or len(s) > 255 or s[0] == "." or not s.isascii()
            or not all(c.isalnum() or c in "._-" for c in s)):
        raise vomscheck.VomsdirError(f"unusable vomsdir path component {s!r}")
    return s


def _read_trusted(path):
    """Runs as: root (or any user in tests). Contents of a trusted regular file, None if
    it does not exist; VomsdirError if it is untrusted, unreadable or too large."""
    try:
        trust.check_file(path)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except SystemFault as e:
        raise vomscheck.VomsdirError(e.message.removeprefix("glexec: ")) from None
    except OSError as e:
        raise vomscheck.VomsdirError(f"{path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            raise vomscheck.VomsdirError(f"{path} changed while being opened")
        data = os.read(fd, MAX_FILE + 1)
        if len(data) > MAX_FILE:
            raise vomscheck.VomsdirError(f"{path} is too large")
        return data
    except OSError as e:
        raise vomscheck.VomsdirError(f"{path}: {e.strerror}") from None
    finally:
        os.close(fd)


def read_lsc(vomsdir, vo, host):
    """Runs as: root (reads trusted files only). The chains of ``<vomsdir>/<vo>/<host>.lsc``
    (``vomscheck.parse_lsc``) or None if there is no such file. Raises VomsdirError."""
    path = f"{vomsdir.rstrip('/')}/{_component(vo)}/{_component(host)}.lsc"
    data = _read_trusted(path)
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise vomscheck.VomsdirError(f"{path} is not UTF-8") from None
    return vomscheck.parse_lsc(text)


def _pem_certs(data):
    import binascii         # lazily: the legacy layout is rare
    out = []
    i = 0
    while True:
        b = data.find(_PEM_BEGIN, i)
        if b < 0:
            return out
        e = data.find(_PEM_END, b)
        if e < 0:
            return out
        try:
            out.append(binascii.a2b_base64(data[b + len(_PEM_BEGIN):e]))
        except binascii.Error:
            pass
        i = e + len(_PEM_END)


def legacy_certs(vomsdir, vo):
    """Runs as: root (reads trusted files only). DER certificates of the legacy layout: every
    trusted regular file (not ``*.lsc``) in ``<vomsdir>/<vo>/`` and then in ``<vomsdir>/``,
    in sorted name order; untrusted files are skipped. Raises VomsdirError only if the
    vomsdir itself is untrusted."""
    top = vomsdir.rstrip("/") or "/"
    try:
        trust.check_dir_chain(top)
    except SystemFault as e:
        raise vomscheck.VomsdirError(e.message.removeprefix("glexec: ")) from None
    except OSError as e:
        raise vomscheck.VomsdirError(f"{top}: {e.strerror}") from None
    out = []
    for d in (f"{top}/{_component(vo)}", top):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for n in names:
            if n.endswith(".lsc") or n.startswith("."):
                continue
            try:
                data = _read_trusted(f"{d}/{n}")
            except vomscheck.VomsdirError:
                continue
            if data:
                out.extend(_pem_certs(data))
    return out


def check_voms(cert_ders, eec_index, ca_dir, vomsdir, at_time, *, mode="lcmaps",
               skew=vomscheck.DEFAULT_SKEW, hostname=None, crl_check=True):
    """Runs as: root, after ``native.verify_chain`` succeeded and ``proxychain.interpret``
    gave the EEC index (``Identity.depth``); reads the vomsdir and the CA dir.

    ``cert_ders``: ``[c.der for c in chain_result.chain]`` (leaf first); ``at_time``: the
    same unix time the chain was verified at. Returns ``vomscheck.VomsResult``
    (``fqans, vo, errors = result``); in ``mode="strict"`` any AC error raises
    ``CallerError("voms_invalid")`` (201)."""
    return vomscheck.check(
        cert_ders, eec_index, at_time,
        lookup_lsc=lambda vo, host: read_lsc(vomsdir, vo, host),
        legacy_certs=lambda vo: legacy_certs(vomsdir, vo),
        verify_signature=native.verify_signature,
        verify_chain=lambda ders, t: native.verify_der_chain(ders, ca_dir, t, crl_check=crl_check),
        mode=mode, skew=skew, hostname=hostname)
