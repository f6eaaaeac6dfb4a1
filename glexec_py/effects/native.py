"""Thin wrapper over the cffi module glexec_py._native (csrc/*.c: identity, X.509 chains, VOMS
and JWS signatures, the payload plan's executor, the sweeper's directory scan).

Kept import-light on purpose (engine start-up latency): only the compiled module and os.
The proxyCertInfo value is decoded here (a few lines of bounds-checked DER walking) because
RFC 3820 and the GT3 draft encode it differently and OpenSSL only knows the former.
"""
import os

from glexec_py._native import ffi, lib

__all__ = ["IdentityError", "switch_identity", "set_fs_identity", "restore_fs_identity",
           "set_no_new_privs", "CertInfo", "ChainResult", "verify_chain", "check_pubkey",
           "verify_jws"]

_STEPS = {
    lib.GX_ARGS: "args", lib.GX_CAP_LAST_CAP: "cap_last_cap", lib.GX_SETGROUPS: "setgroups",
    lib.GX_SETRESGID: "setresgid", lib.GX_SETRESUID: "setresuid", lib.GX_GETRESUID: "getresuid",
    lib.GX_GETRESGID: "getresgid", lib.GX_GETGROUPS: "getgroups", lib.GX_SETUID0: "setuid0",
    lib.GX_SETGID0: "setgid0", lib.GX_CAPGET: "capget", lib.GX_AMBIENT: "ambient",
    lib.GX_SETFSGID: "setfsgid", lib.GX_SETFSUID: "setfsuid", lib.GX_NO_NEW_PRIVS: "no_new_privs",
    lib.GX_CAPSET: "capset", lib.GX_SECCOMP: "seccomp",
}
_MAX_ID = 0xFFFFFFFE  # (uid_t)-1 means "leave unchanged" to the kernel: never a valid id


class IdentityError(Exception):
    """A privileged identity step failed; ``step`` names it, ``errno`` is the OS error.

    Steps: args, cap_last_cap, setgroups, setresgid, setresuid, getresuid, getresgid,
    getgroups, setuid0, setgid0, capget, ambient, setfsgid, setfsuid, no_new_privs.
    The get*/setuid0/setgid0/capget/ambient steps are post-switch verifications.
    """

    def __init__(self, step: str, errno: int):
        super().__init__(f"{step}: {os.strerror(errno) if errno else 'failed'} (errno {errno})")
        self.step = step
        self.errno = errno

    def __reduce__(self):  # picklable across the fork/pipe the tests and engine may use
        return (IdentityError, (self.step, self.errno))


def _valid_id(x) -> bool:
    return type(x) is int and 0 <= x <= _MAX_ID


def _ids(uid, gid, groups):
    groups = list(groups)
    if not (_valid_id(uid) and _valid_id(gid) and all(_valid_id(g) for g in groups)):
        raise IdentityError("args", 22)  # EINVAL
    # The kernel keeps duplicates; dropping them makes getgroups() == sorted(set(groups)).
    return sorted(set(groups))


def _call(fn, *args) -> None:
    err = ffi.new("int *")
    step = fn(*args, err)
    if step != lib.GX_OK:
        raise IdentityError(_STEPS.get(step, f"step{step}"), err[0])


def switch_identity(uid: int, gid: int, groups: list[int]) -> None:
    """Runs as: root, in the forked payload child only, single-threaded.

    Permanently becomes uid/gid with exactly ``groups`` as supplementary groups:
    setgroups -> setresgid -> setresuid, then verifies getresuid/getresgid/getgroups, that
    setuid(0)/setgid(0) fail with EPERM (skipped for uid 0) and that the permitted,
    effective, inheritable and ambient capability sets are empty. Raises IdentityError at
    the first failure; the process must then exit without running anything.
    """
    groups = _ids(uid, gid, groups)
    _call(lib.gx_switch_identity, uid, gid, ffi.new("uint32_t[]", groups), len(groups))


def set_fs_identity(uid: int, gid: int, groups: list[int]) -> None:
    """Runs as: root (euid 0); afterwards file access is checked as uid/gid/groups.

    setgroups(groups), setfsgid(gid), setfsuid(uid), each read back and verified. Used to
    read the caller's proxy and write the target's; undo with restore_fs_identity(). On
    IdentityError the fs ids may be partly changed: restore_fs_identity() or exit.
    """
    groups = _ids(uid, gid, groups)
    _call(lib.gx_set_fs_identity, uid, gid, ffi.new("uint32_t[]", groups), len(groups))


def restore_fs_identity() -> None:
    """Runs as: root (euid 0). Back to fsuid/fsgid 0 and no supplementary groups; verified."""
    _call(lib.gx_set_fs_identity, 0, 0, ffi.NULL, 0)


def set_no_new_privs() -> None:
    """Runs as: any user. Sets PR_SET_NO_NEW_PRIVS (inherited, irreversible) and verifies it."""
    _call(lib.gx_set_no_new_privs)


class _Record:
    """Minimal dataclass-like base (dataclasses would import re/inspect at start-up)."""

    __slots__ = ()

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.pop(k))
        if kw:
            raise TypeError(f"unexpected fields {sorted(kw)}")

    def __repr__(self):
        body = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({body})"

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)


class CertInfo(_Record):
    """One certificate of a chain as libcrypto saw it.

    subject/issuer: X509_NAME_oneline form (what LCMAPS prints, ``\\xHH`` escapes);
    serial: lowercase hex without leading zeros (format(n, "x")); not_before/not_after:
    unix seconds; is_ca: basicConstraints CA:TRUE; ca_pathlen: -1 = none; proxy: "rfc3820",
    "gt3" or "" (not a proxy, or a legacy GT2 proxy, which Python classifies); proxy_policy:
    policy language OID ("" if not a proxy); proxy_pathlen: -1 = unlimited; sha256: hex
    fingerprint of der; subject_hash: OpenSSL's subject name hash as 8 hex digits (the
    ``<hash>`` of a CA's ``.0``/``.namespaces``/``.signing_policy`` files in ca_dir).
    """

    __slots__ = ("der", "subject_der", "issuer_der", "subject", "issuer", "serial",
                 "not_before", "not_after", "is_ca", "ca_pathlen", "proxy", "proxy_policy",
                 "proxy_pathlen", "sha256", "subject_hash")


class ChainResult(_Record):
    """Outcome of verify_chain.

    ok: chain verified (tolerated errors aside); error: X509_V_ERR code of the first fatal
    error, -1 for malformed/oversized input, 0 if ok; tolerated: (depth, code) pairs the
    engine must judge; chain: leaf first up to the trust anchor (partial if not ok, empty if
    the PEM did not parse); has_key/key_matches: a private key was present / matches chain[0].
    """

    __slots__ = ("ok", "error", "error_depth", "error_text", "tolerated", "chain",
                 "has_key", "key_matches")


# --- proxyCertInfo (RFC 3820: SEQ {INTEGER OPT, SEQ {OID ..}}; GT3: SEQ {SEQ {OID ..}, [1] {INTEGER} OPT})

def _tlv(buf: bytes, pos: int, end: int):
    """(tag, content start, content end) of the DER element at pos; ValueError if invalid."""
    if pos + 2 > end or buf[pos] & 0x1F == 0x1F:
        raise ValueError("truncated or high tag")
    tag, n, pos = buf[pos], buf[pos + 1], pos + 2
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 4 or pos + k > end or buf[pos] == 0:
            raise ValueError("bad length")
        n, pos = int.from_bytes(buf[pos:pos + k], "big"), pos + k
        if n < 0x80:
            raise ValueError("non-minimal length")
    if pos + n > end:
        raise ValueError("length beyond end")
    return tag, pos, pos + n


def _oid(b: bytes) -> str:
    arcs, v, start = [], 0, True
    for c in b:
        if start and c == 0x80:
            raise ValueError("non-minimal OID arc")
        v, start = (v << 7) | (c & 0x7F), not c & 0x80
        if start:
            arcs.append(v)
            v = 0
    if not arcs or not start:
        raise ValueError("bad OID")
    top = min(arcs[0] // 40, 2)
    return ".".join(map(str, [top, arcs[0] - 40 * top] + arcs[1:]))


def _uint(buf: bytes, tag: int, s: int, e: int) -> int:
    if tag != 0x02 or s == e or buf[s] & 0x80:
        raise ValueError("bad path length")
    return int.from_bytes(buf[s:e], "big")


def _proxy_info(kind: int, pci: bytes):
    """(policy language OID, path length or -1) from a proxyCertInfo value."""
    tag, s, e = _tlv(pci, 0, len(pci))
    if tag != 0x30 or e != len(pci):
        raise ValueError("not a SEQUENCE")
    policy, pathlen = None, -1
    while s < e:
        tag, cs, ce = _tlv(pci, s, e)
        if tag == 0x30 and policy is None:
            t, os_, oe = _tlv(pci, cs, ce)
            if t != 0x06:
                raise ValueError("policy language is not an OID")
            policy = _oid(pci[os_:oe])
        elif kind == 1 and tag == 0x02 and policy is None and pathlen < 0:
            pathlen = _uint(pci, tag, cs, ce)
        elif kind == 2 and tag == 0xA1 and policy is not None and pathlen < 0:
            t, is_, ie = _tlv(pci, cs, ce)
            if ie != ce:
                raise ValueError("trailing data")
            pathlen = _uint(pci, t, is_, ie)
        else:
            raise ValueError("unexpected element")
        s = ce
    if policy is None:
        raise ValueError("no policy")
    return policy, min(pathlen, 2**31 - 1)


_PROXY_KIND = {0: "", 1: "rfc3820", 2: "gt3"}


def _cert(c):
    policy, pathlen, good = "", -1, True
    if c.proxy:
        try:
            policy, pathlen = _proxy_info(c.proxy, ffi.buffer(c.pci, c.pci_len)[:])
        except ValueError:
            policy, pathlen, good = "", 0, False
    info = CertInfo(
        der=ffi.buffer(c.der, c.der_len)[:],
        subject_der=ffi.buffer(c.subject_der, c.subject_der_len)[:],
        issuer_der=ffi.buffer(c.issuer_der, c.issuer_der_len)[:],
        subject=ffi.string(c.subject).decode("latin-1"),
        issuer=ffi.string(c.issuer).decode("latin-1"),
        serial=format(int(ffi.string(c.serial), 16), "x"),  # canonical: no zero padding
        not_before=c.not_before, not_after=c.not_after,
        is_ca=bool(c.is_ca), ca_pathlen=c.ca_pathlen,
        proxy=_PROXY_KIND.get(c.proxy, ""), proxy_policy=policy, proxy_pathlen=pathlen,
        sha256=ffi.buffer(c.sha256, 32)[:].hex(), subject_hash="%08x" % c.subject_hash,
    )
    return info, good


def crypto_warm() -> None:
    """Runs as: root, in the engine service's parent before it forks (any user would do).
    libcrypto's one-time set-up (default provider, decoders, method stores), done by
    verifying a constant self-signed certificate with no CA directory, so a call's child
    does not redo it (~1 ms): no caller's data, CA or CRL is read or kept
    (csrc/cryptowarm.c)."""
    lib.gx_crypto_warm()


def verify_chain(pem: bytes, ca_dir: str, at_time: int, *, crl_check: bool = True,
                 crl_expired_ok: bool = False) -> ChainResult:
    """Runs as: any user (pure computation plus reads of ca_dir through OpenSSL's hash-dir
    lookup); the engine calls it as root after reading the caller's file as the caller.

    First certificate = leaf, the others are untrusted intermediates in any order; at most
    one unencrypted private key. Never raises on bad input: malformed, encrypted-key,
    > 1 MiB or > 16 certificate input gives ok=False, error=-1.

    CRLs (``crl_check``): a revoked certificate (23) is always fatal, a missing CRL (3) is
    tolerated, an expired CRL (12) is fatal unless ``crl_expired_ok`` (then tolerated and
    recorded). Legacy GT2/GT3 proxies: the errors OpenSSL reports for their issuer (79, 32,
    and 25 at a CA that counted them as CA levels) are tolerated only where the issued
    certificate is shaped like one (csrc/x509info.c); ``proxychain.interpret`` judges every
    tolerated error against its own classification of the chain.
    """
    ca = os.fsencode(ca_dir)
    if b"\0" in ca:
        return ChainResult(ok=False, error=-1, error_depth=0, error_text="bad CA directory",
                           tolerated=[], chain=[], has_key=False, key_matches=False)
    pem = bytes(pem)
    res = ffi.new("gx_result *")
    flags = (lib.GX_VC_CRL_CHECK if crl_check else 0) | (lib.GX_VC_CRL_EXPIRED_OK if crl_expired_ok else 0)
    lib.gx_verify_chain(pem, len(pem), ca, at_time, flags, res)
    try:
        chain, good = [], True
        for i in range(res.nchain):
            info, ok = _cert(res.chain[i])
            chain.append(info)
            good = good and ok
        ok, error = bool(res.ok), res.error
        text = ffi.string(res.error_text).decode("latin-1")
        depth = res.error_depth
        if not good and ok:  # fail closed on a proxyCertInfo we cannot read
            ok, error, depth, text = False, -1, 0, "malformed proxyCertInfo"
        return ChainResult(
            ok=ok, error=error, error_depth=depth, error_text=text,
            tolerated=[(res.tol_depth[i], res.tol_code[i]) for i in range(res.ntolerated)],
            chain=chain, has_key=bool(res.has_key), key_matches=bool(res.key_matches))
    finally:
        lib.gx_result_free(res)


# --- VOMS attribute certificates (csrc/sigverify.c) ---------------------------------

def verify_signature(cert_der: bytes, alg_der: bytes, tbs_der: bytes, sig_der: bytes) -> bool:
    """Runs as: any user (pure computation).

    True iff the signature ``sig_der`` (a complete DER BIT STRING) made with ``alg_der`` (a
    complete DER AlgorithmIdentifier) over ``tbs_der`` (one complete DER element, verified
    byte-exactly) verifies with the public key of the certificate ``cert_der``. Never raises
    on bad input: anything that does not decode or verify is False."""
    args = [bytes(b) for b in (cert_der, alg_der, tbs_der, sig_der)]
    return lib.gx_verify_signature(args[0], len(args[0]), args[1], len(args[1]),
                                   args[2], len(args[2]), args[3], len(args[3])) == 1


def verify_der_chain(certs, ca_dir: str, at_time: int, *, crl_check: bool = True):
    """Runs as: any user (pure computation plus reads of ca_dir through OpenSSL's hash-dir
    lookup).

    ``certs``: DER certificates, the one to verify first, then untrusted intermediates (at
    most 16). Verifies against the trusted CAs of ``ca_dir`` at ``at_time``: signatures,
    validity of every certificate, CRLs (missing CRL tolerated, revoked/expired CRL not),
    no proxy certificates. Returns ``(ok, error, depth)``: error is the X509_V_ERR code
    (0 if ok, -1 for malformed input). Never raises on bad input."""
    ders = [bytes(c) for c in certs]
    ca = os.fsencode(ca_dir)
    if not ders or len(ders) > 16 or b"\0" in ca:
        return False, -1, 0
    err, depth = ffi.new("int *"), ffi.new("int *")
    ok = lib.gx_verify_der_chain(b"".join(ders), ffi.new("size_t[]", [len(d) for d in ders]),
                                 len(ders), ca, at_time, 1 if crl_check else 0, err, depth)
    return ok == 1, err[0], depth[0]


# --- JWT bearer tokens (csrc/jws.c) ------------------------------------------------

_KEY_KINDS = {lib.GX_KEY_RSA: ("RSA", None), lib.GX_KEY_P256: ("EC", "P-256"),
              lib.GX_KEY_P384: ("EC", "P-384"), lib.GX_KEY_P521: ("EC", "P-521"),
              lib.GX_KEY_ED25519: ("OKP", "Ed25519")}
_JWS_ALGS = {"RS256": lib.GX_JWS_RS256, "RS384": lib.GX_JWS_RS384, "RS512": lib.GX_JWS_RS512,
             "PS256": lib.GX_JWS_PS256, "PS384": lib.GX_JWS_PS384, "PS512": lib.GX_JWS_PS512,
             "ES256": lib.GX_JWS_ES256, "ES384": lib.GX_JWS_ES384, "ES512": lib.GX_JWS_ES512,
             "EdDSA": lib.GX_JWS_EDDSA}


def check_pubkey(spki: bytes):
    """Runs as: any user (pure computation).

    ``(kty, crv, bits)`` of a DER SubjectPublicKeyInfo that libcrypto decodes exactly (no
    trailing bytes) and finds well formed (an EC point on its curve): ("RSA", None, modulus
    bits), ("EC", "P-256" | "P-384" | "P-521", bits) or ("OKP", "Ed25519", 256).  None for
    anything else: undecodable, not on the curve, another key type or curve.  RSA size and
    exponent are for the caller to judge.  Never raises on bad input."""
    spki = bytes(spki)
    bits = ffi.new("int *")
    kind = _KEY_KINDS.get(lib.gx_check_pubkey(spki, len(spki), bits))
    return None if kind is None else (kind[0], kind[1], bits[0])


def verify_jws(spki: bytes, alg: str, signing_input: bytes, signature: bytes) -> int:
    """Runs as: any user (pure computation).

    1 if ``signature`` (the decoded third JWS segment) is a valid ``alg`` signature over
    ``signing_input`` (``BASE64URL(header) "." BASE64URL(payload)``, as received) with the
    key of the DER SubjectPublicKeyInfo ``spki``; 0 if it is not (including a key whose type
    or curve does not fit ``alg``, an ECDSA signature that is not raw r||s of exactly twice
    the coordinate size, RSA < 2048 bits); -1 if it cannot be checked (an alg other than
    RS/PS/ES256..512 and EdDSA -- never none, never HMAC --, a key that does not decode).
    Never raises on bad input."""
    code = _JWS_ALGS.get(alg) if isinstance(alg, str) else None
    if code is None:
        return -1
    spki, msg, sig = bytes(spki), bytes(signing_input), bytes(signature)
    return lib.gx_jws_verify(code, spki, len(spki), msg, len(msg), sig, len(sig))


# --- the payload plan's executor (csrc/plan_decode.c, plan_run.c, plan_linger.c) ------------

class SpawnError(Exception):
    """The payload could not be started (or waited for); ``step`` says where (e.g. "plan",
    "exec", "chdir", "identity:setresuid", "linger"), ``errno`` why. Except for "linger",
    nothing of the payload ran."""

    def __init__(self, step: str, errno: int):
        super().__init__(f"{step}: {os.strerror(errno) if errno else 'failed'}")
        self.step = step
        self.errno = errno


_SPAWN_STEPS = {1: "signals", 2: "rlimits", 3: "no_new_privs", 4: "chdir", 5: "exec", 6: "clone",
                7: "tty_guard", 8: "pdeathsig", 9: "plan", 10: "linger"}


def _spawn_error(res):
    step = res.step
    if step >= lib.GX_SP_IDENTITY:
        name = "identity:" + _STEPS.get(step - lib.GX_SP_IDENTITY, str(step - lib.GX_SP_IDENTITY))
    else:
        name = _SPAWN_STEPS.get(step, f"step{step}")
    return SpawnError(name, res.err)


def spawn_error(step: int, err: int) -> SpawnError:
    """Runs as: anyone. The SpawnError of an executor's (step, errno) report (the shim's
    report to the engine service uses the C executor's numbers)."""
    return _spawn_error(ffi.new("gx_exec_result *", {"step": step, "err": err}))


def _decoded(encoded):
    """The C executor's own decoding of a plan (core.plan.encode); SpawnError("plan")
    if it refuses it."""
    encoded = bytes(encoded)
    out = ffi.new("gx_plan **")
    err = lib.gx_plan_decode(encoded, len(encoded), out)
    if err:
        raise SpawnError("plan", err)
    return ffi.gc(out[0], lib.gx_plan_free)


def become_payload(encoded) -> None:
    """Runs as: root (or the caller in log-only mode), single-threaded. Becomes the payload
    of the encoded plan in this process: returns only by raising SpawnError (the process
    may then be partly switched and must exit)."""
    plan = _decoded(encoded)
    res = ffi.new("gx_exec_result *")
    lib.gx_plan_exec(plan, res)
    raise _spawn_error(res)


class Payload:
    """A payload started by start_payload: ``pid``; ``wait()`` is the lingering parent."""

    def __init__(self, plan, pid):
        self._plan = plan
        self.pid = pid

    def wait(self):
        """Runs as: root (or the caller in log-only mode). Takes the plan's caller_ruid as the
        real uid, forwards the plan's signals (not those the kernel sent) until the payload
        ends; returns (wait status, cpu_user, cpu_system) in seconds. SpawnError("linger")
        if waiting fails."""
        out, res = ffi.new("gx_linger_result *"), ffi.new("gx_exec_result *")
        if lib.gx_plan_linger(self._plan, self.pid, out, res) != 0:
            raise _spawn_error(res)
        return out.status, out.utime_sec + out.utime_usec * 1e-6, out.stime_sec + out.stime_usec * 1e-6


def start_payload(encoded) -> Payload:
    """Runs as: root (or the caller in log-only mode); the engine must be single-threaded.

    Starts the payload of the encoded plan in a child (clone with CLONE_VM|CLONE_VFORK, like
    posix_spawn) that does the plan's steps (csrc/plan_run.c) and execs; returns once the
    exec succeeded. SpawnError (child already reaped) otherwise. A lingering plan's signals
    stay blocked in this process for Payload.wait()."""
    plan = _decoded(encoded)
    res = ffi.new("gx_exec_result *")
    pid = lib.gx_plan_spawn(plan, res)
    if pid < 0:
        raise _spawn_error(res)
    return Payload(plan, pid)


# --- glexec-sweep: per-directory scan and checked removal (csrc/sweepwalk.c) ----------

# the fields of gx_sweep_ent, in order (struct format SWEEP_ENT_FORMAT)
SWEEP_ENT_FIELDS = ("st_ino", "st_dev", "st_size", "st_atime", "st_mtime", "st_ctime",
                    "st_mode", "st_uid", "st_gid", "name_off", "name_len", "pad")
SWEEP_ENT_FORMAT = "=QQqdddIIIIIi"
# gx_sweep_recheck's answers; the reasons are the planner's (glexec_tools.sweep.plan.Planner.recheck)
SWEEP_RECHECK = {lib.GX_SW_OWNER_CHANGED: "owner changed", lib.GX_SW_DEVICE_CHANGED: "device changed",
                 lib.GX_SW_REPLACED: "replaced", lib.GX_SW_STICKY: "sticky bit (opt-out)"}


class SweepScanner:
    """Runs as: root (or the fs identity the caller set).  Buffers for one process's walk:
    ``scan(dirfd)`` returns the next chunk of a directory's entries as ``(records, names)``
    -- ``records`` tuples of SWEEP_ENT_FIELDS (lstat fields, AT_SYMLINK_NOFOLLOW), ``names``
    the entry names (bytes) at the same index -- or None at the end of the directory (the
    fd's offset moves on; a directory is read once).  ``unlink(dirfd, idx, root_dev)``
    removes entries of the *last* chunk by index, each right after an fstatat shows it is
    still the object that was scanned (same owner, type, inode; on ``root_dev``; no sticky
    bit); returns ``(removed, bytes, results)``, results per index: 0 removed, a key of
    SWEEP_RECHECK, or -errno.  Directories are refused (-EISDIR)."""

    MAXENTS = 2048
    NAMES = 65536

    def __init__(self):
        import struct
        if ffi.sizeof("gx_sweep_ent") != struct.calcsize(SWEEP_ENT_FORMAT):
            raise RuntimeError("gx_sweep_ent does not match SWEEP_ENT_FORMAT")
        self._unpack = struct.Struct(SWEEP_ENT_FORMAT).iter_unpack
        self._ents = ffi.new("gx_sweep_ent[]", self.MAXENTS)
        self._names = ffi.new("char[]", self.NAMES)
        self._ebuf = ffi.buffer(self._ents)
        self._nbuf = ffi.buffer(self._names)
        self._used = ffi.new("size_t *")
        self._err = ffi.new("int *")
        self._bytes = ffi.new("int64_t *")
        self._n = 0

    def scan(self, dirfd):
        n = lib.gx_sweep_scan(dirfd, self._ents, self.MAXENTS, self._names, self.NAMES,
                              self._used, self._err)
        if n < 0:
            self._n = 0
            raise OSError(self._err[0], os.strerror(self._err[0]))
        self._n = n
        if n == 0:
            return None
        records = list(self._unpack(self._ebuf[:n * ffi.sizeof("gx_sweep_ent")]))
        names = self._nbuf[:self._used[0]].split(b"\0")
        return records, names

    def unlink(self, dirfd, idx, root_dev):
        n = len(idx)
        res = ffi.new("int32_t[]", n)
        removed = lib.gx_sweep_unlink(dirfd, self._ents, self._n, self._names, self.NAMES,
                                      ffi.new("int32_t[]", idx), n, root_dev, res, self._bytes)
        if removed < 0:
            raise OSError(22, "gx_sweep_unlink: bad arguments")
        return removed, self._bytes[0], ffi.unpack(res, n)


def sweep_recheck(before, now, root_dev):
    """Runs as: any user (pure).  csrc/sweepwalk.c's re-check of one entry on plain
    values (for tests against the planner): ``before``/``now`` objects with st_uid,
    st_dev, st_mode, st_ino; returns 0 or a key of SWEEP_RECHECK."""
    b, n = ffi.new("gx_sweep_ent *"), ffi.new("gx_sweep_ent *")
    for c, s in ((b, before), (n, now)):
        c.uid, c.dev, c.mode, c.ino = s.st_uid, s.st_dev, s.st_mode, s.st_ino
    return lib.gx_sweep_recheck(b, n, root_dev)
