"""A CA's namespace policy files in the trust directory (``<hash>.namespaces``,
``<hash>.signing_policy``), read safely and parsed by core.namespaces.

Parsed files are kept for the life of the process (the engine service) keyed by file
identity, re-checked (lstat + fstat) on every call, as the config cache is.
"""
import os
from stat import S_ISLNK

from glexec_py.core import namespaces as model
from glexec_py.effects import trust
from glexec_py.effects.rootcache import identity as _identity
from glexec_py.errors import SystemFault

_parsed = {}        # (path, identity) -> Policy
_MAX_CACHED = 512


def _resolve(ca_dir, name):
    """Runs as: the engine (lstat/readlink only). The file behind ca_dir/name: itself, or the target of a symlink that names another
    file of the same directory (how the IGTF packages install ``<hash>.namespaces ->
    <alias>.namespaces``). None if absent; SystemFault for anything else."""
    path = f"{ca_dir}/{name}"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if S_ISLNK(st.st_mode):
        target = os.readlink(path)
        if "/" in target or target in ("", ".", ".."):
            raise SystemFault("namespace_file", "glexec: untrusted CA policy file (symlink out of the "
                              "CA directory)", path=path, target=target)
        path = f"{ca_dir}/{target}"
    return path


def _read(path):
    """Runs as: the engine. (cache key, bytes) of a trusted policy file; bytes None when
    that exact file (same identity) is already parsed."""
    st = trust.check_file(path)     # root-owned, not group/other-writable, trusted dirs
    key = (path, _identity(st))
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if _identity(os.fstat(fd)) != key[1]:
            raise SystemFault("namespace_file", "glexec: CA policy file changed while read", path=path)
        if key in _parsed:
            return key, None
        if st.st_size > model.MAX_POLICY_FILE:
            raise SystemFault("namespace_file", "glexec: CA policy file too large", path=path,
                              size=st.st_size)
        return key, os.read(fd, model.MAX_POLICY_FILE + 1)
    finally:
        os.close(fd)


def load(ca_dir, ca_hash):
    """Runs as: root (the engine; reads root-owned files of the trust directory).

    (namespaces Policy or None, signing_policy Policy or None) of the CA whose subject
    hash is ``ca_hash``. SystemFault (202) for a file that is unsafe, too large, not a
    regular file or unparsable: that CA's word is then worth nothing (fail closed)."""
    out = []
    for kind, parse in ((model.NAMESPACES, model.parse_namespaces),
                        (model.SIGNING_POLICY, model.parse_signing_policy)):
        path = _resolve(ca_dir, f"{ca_hash}.{kind}")
        if path is None:
            out.append(None)
            continue
        try:
            key, raw = _read(path)
        except FileNotFoundError:
            raise SystemFault("namespace_file", "glexec: CA policy file is a dangling link",
                              path=f"{ca_dir}/{ca_hash}.{kind}") from None
        if raw is not None:
            if len(_parsed) >= _MAX_CACHED:
                _parsed.clear()     # replaced files leave stale keys behind in a long-lived service
            try:
                _parsed[key] = parse(raw, path)
            except model.PolicyError as e:
                raise SystemFault("namespace_file_invalid", "glexec: unparsable CA policy file "
                                  f"{path}", path=path, line=e.line, error=e.message) from None
        out.append(_parsed[key])
    return tuple(out)
