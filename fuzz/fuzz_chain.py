"""atheris target: glexec_py.effects.native.verify_chain (PEM/DER proxy-chain verifier in
C via cffi/OpenSSL) and glexec_py.core.proxychain.interpret.

Seeds: real proxies made by grid-proxy-init through tests/support/pki.py TestPKI (RFC 3820
full/limited/path-length 0, GT2 "-old", GT3 "-draft", a proxy of a proxy, the bare EEC),
made once per corpus under /var/lib/glexec-py-tests/fuzz-work/chain.  Verification runs at
a fixed time (PKI creation + 1 h) so the corpus never expires.  A custom mutator mutates
the DER inside one PEM block (and re-encodes it), drops/duplicates/swaps blocks, or
mutates the raw text, so mutations reach the ASN.1 and X.509 code, not only the PEM reader.

Oracles (beyond "no crash" -- a segfault/abort in the C code kills the process and
libFuzzer keeps the input):
  * verify_chain never raises and returns a consistent ChainResult (ok <=> error == 0,
    ok implies chain of >= 2 certificates, error text on failure, known proxy kinds);
  * proxychain.interpret raises nothing but CallerError (several policy settings);
  * differential: when verify_chain says ok without tolerating a legacy GT2/GT3-only error
    (or interpret accepts a non-legacy chain), `openssl verify -allow_proxy_certs
    -attime T -CApath CA -untrusted IN IN` must accept as well: the same libcrypto calls in
    process (fuzz/_openssl_verify.py), the CLI only to confirm a rejection or when a block
    does not parse (a process per execution was 90 % of the time);
  * an accepted identity comes from a certificate of the verified chain: subject/issuer
    and fingerprints are those of chain[depth] / chain[0], and depth == number of proxies.
"""
import base64
import os
import random
import re
import subprocess
import sys
import tempfile

import atheris

import _common
from _common import check

with atheris.instrument_imports(include=["glexec_py"]):
    from glexec_py.core import proxychain
    from glexec_py.effects import native
    from glexec_py.errors import CallerError

WORK = _common.work_dir("chain")
PKI_ROOT = os.path.join(WORK, "pki")
CA_DIR = os.path.join(PKI_ROOT, "certificates")
PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----\r?\n?", re.S)
LEGACY_ONLY = {79, 32, 34, 25}      # tolerated only for GT2/GT3 chains (proxychain doc)
INTERPRET_OPTS = ({}, {"key_required": False}, {"allow_limited": False, "allow_legacy": False},
                  {"require_limited": True, "legacy_max_levels": 3, "key_required": False})


def _at_time():
    p = os.path.join(WORK, "at_time")
    with open(p) as f:
        return int(f.read())


def openssl_accepts(pem, at):
    with tempfile.NamedTemporaryFile(dir=WORK, suffix=".pem") as f:
        f.write(pem)
        f.flush()
        r = subprocess.run(["openssl", "verify", "-allow_proxy_certs", "-attime", str(at), "-CApath", CA_DIR,
                            "-untrusted", f.name, f.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


_VERIFIER = []


def _openssl_says_ok(pem):
    """The CLI's verdict: in process (``_openssl_verify``), the CLI itself only when the
    input has a block the in-process reader cannot read like it, or to confirm a finding."""
    if not _VERIFIER:
        from _openssl_verify import Verifier
        _VERIFIER.append(Verifier(CA_DIR))
    fast = _VERIFIER[0].accepts(pem, AT)
    return openssl_accepts(pem, AT) if not fast else True


def TestOneInput(data):
    res = native.verify_chain(data, CA_DIR, AT)
    check(isinstance(res, native.ChainResult), "not a ChainResult")
    if res.ok:
        check(res.error == 0 and len(res.chain) >= 2, f"ok with error {res.error} / chain {len(res.chain)}")
    else:
        check(res.error != 0 and res.error_text, "failure without error code/text")
    for c in res.chain:
        check(c.proxy in ("", "rfc3820", "gt3") and len(c.sha256) == 64, f"odd CertInfo {c.proxy!r}")
    accepted_modern = False
    for opts in INTERPRET_OPTS:
        try:
            ident = proxychain.interpret(res, now=AT, **opts)
        except CallerError as e:
            check(e.exit_code == 201, f"CallerError with exit code {e.exit_code}")
            continue
        d = ident.depth
        check(res.ok and 1 <= d < len(res.chain), f"identity at depth {d} of a chain of {len(res.chain)}")
        check(ident.subject == res.chain[d].subject and ident.issuer == res.chain[d].issuer
              and ident.eec_sha256 == res.chain[d].sha256 and ident.leaf_sha256 == res.chain[0].sha256,
              "identity not taken from the verified chain")
        check(len(ident.kinds) == d, f"{len(ident.kinds)} proxy kinds for depth {d}")
        if all(k.startswith("rfc3820") for k in ident.kinds):
            accepted_modern = True
    native_modern_ok = res.ok and not any(code in LEGACY_ONLY for _, code in res.tolerated) \
        and not any(c.proxy == "gt3" for c in res.chain)
    if (accepted_modern or native_modern_ok) and not _openssl_says_ok(data):
        # a legacy GT2 proxy (no extension) is the only shape OpenSSL cannot judge
        if not (native_modern_ok and not accepted_modern and _gt2_shaped(res)):
            raise _common.OracleViolation(
                f"accepted (native ok={res.ok}, interpret modern={accepted_modern}) but openssl verify "
                f"-allow_proxy_certs rejects; tolerated={res.tolerated}")


def _gt2_shaped(res):
    return any(not c.is_ca and c.proxy == "" and c.subject.endswith(("/CN=proxy", "/CN=limited proxy"))
               for c in res.chain[:-1])


def _pem(name, der):
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    return (b"-----BEGIN " + name + b"-----\n" + b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
            + b"\n-----END " + name + b"-----\n")


def CustomMutator(data, max_size, seed):
    rnd = random.Random(seed)
    blocks = [(m.group(1), m.group(2)) for m in PEM_RE.finditer(data)]
    r = rnd.random()
    if not blocks or r < 0.15:
        return atheris.Mutate(data, max_size)
    if r < 0.25 and len(blocks) > 1:        # block-level: drop / duplicate / swap
        i, j = rnd.randrange(len(blocks)), rnd.randrange(len(blocks))
        op = rnd.randrange(3)
        if op == 0:
            del blocks[i]
        elif op == 1:
            blocks.insert(j, blocks[i])
        else:
            blocks[i], blocks[j] = blocks[j], blocks[i]
        ders = [(n, _safe_b64(b)) for n, b in blocks]
    else:
        ders = [(n, _safe_b64(b)) for n, b in blocks]
        i = rnd.randrange(len(ders))
        name, der = ders[i]
        ders[i] = (name, atheris.Mutate(der, len(der) + 64))
    out = b"".join(_pem(n, d) for n, d in ders)
    return out[:max_size]


def _safe_b64(text):
    try:
        return base64.b64decode(re.sub(rb"\s+", b"", text) + b"==", validate=False)
    except ValueError:
        return text


def _make_pki():
    """Fresh TestPKI + proxies; returns the seed PEMs."""
    import shutil
    import time
    from pathlib import Path
    from tests.support.pki import TestPKI
    shutil.rmtree(PKI_ROOT, ignore_errors=True)
    pki = TestPKI(Path(PKI_ROOT))
    user = pki.user("/DC=test/DC=glexec-py/OU=Users/CN=Fuzz User")
    out = Path(WORK) / "proxies"
    out.mkdir(exist_ok=True)
    made = []
    for name, kw in (("rfc", {}), ("rfc-limited", {"limited": True}), ("rfc-pl0", {"path_length": 0}),
                     ("old", {"kind": "old"}), ("draft", {"kind": "draft"}),
                     ("old-limited", {"kind": "old", "limited": True})):
        made.append(pki.proxy(user, out / f"{name}.pem", hours=24, **kw).read_bytes())
    # a proxy of the RFC proxy (2 levels)
    import subprocess as sp
    env = {k: v for k, v in os.environ.items() if not k.startswith("X509_")}
    env["X509_CERT_DIR"] = CA_DIR
    p2 = out / "rfc2.pem"
    sp.run(["grid-proxy-init", "-q", "-cert", str(out / "rfc.pem"), "-key", str(out / "rfc.pem"),
            "-out", str(p2), "-rfc", "-valid", "12:00"], env=env, check=True, capture_output=True)
    made.append(p2.read_bytes())
    made.append(Path(user.cert).read_bytes() + Path(user.key).read_bytes())
    with open(os.path.join(WORK, "at_time"), "w") as f:
        f.write(str(int(time.time()) + 3600))
    return made


if __name__ == "__main__":
    if not os.path.exists(os.path.join(WORK, "at_time")) or not _common.corpus_dir(sys.argv) \
            or not os.path.isdir(_common.corpus_dir(sys.argv)) or not any(os.scandir(_common.corpus_dir(sys.argv))):
        seeds = _make_pki() if not _common.is_replay(sys.argv) else []
        _common.seed(sys.argv, lambda: seeds)
    AT = _at_time()
    atheris.Setup(sys.argv, TestOneInput, custom_mutator=CustomMutator)
    atheris.Fuzz()
