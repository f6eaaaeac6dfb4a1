#!/usr/bin/python3.11
"""How long does verify_token take?  (issue 3, item 4; docs/tokens.md)

    /usr/bin/python3.11 bench/tokens_verify.py [--runs 30] [--inproc 2000]

Fresh process: ``/usr/bin/python3.11 -I -S -B`` (as the shim starts the engine), which
appends Debian's dist-packages, imports ``glexec_py.core.tokens`` and the native module
(libcrypto: key check and signature; the child asserts that neither PyJWT nor
``cryptography`` got imported), parses the issuer's key
file (bytes; the root-owned file read of ``effects.tokenkeys`` is a few syscalls) and
verifies one token -- the time it needs is what a token adds to a glexec call, minus the
interpreter start-up measured with ``-c pass`` in the same run.  Median of ``--runs``
each, wall clock from fork to exit.  In-process: median of ``--inproc`` calls with the keys
already parsed (the steady-state cost, e.g. for a site tool).  For reference, Debian's
C++ ``scitokens-verify`` (fresh process, same ES256 token and key) when installed.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
if "/usr/lib/python3/dist-packages" not in sys.path:
    sys.path.append("/usr/lib/python3/dist-packages")

PY = "/usr/bin/python3.11"
AUD = "https://ce.example.org"

_CHILD = r"""
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
sys.path.append("/usr/lib/python3/dist-packages")
from glexec_py.core import tokens
from glexec_py.effects import native
pol = tokens.TokenPolicy({"issuers": [{"issuer": sys.argv[2], "audiences": [sys.argv[3]],
                                        "keys": ["/etc/k"], "profile": "any",
                                        "algorithms": ["RS256", "ES256"]}]})
with open(sys.argv[4], "rb") as f:
    keys = {sys.argv[2]: tokens.parse_key_file(f.read(), sys.argv[4], native.check_pubkey)}
with open(sys.argv[5], "rb") as f:
    raw = f.read()
ident = tokens.verify_token(raw, pol, keys, time.time(), verify=native.verify_jws)
assert ident.subject
assert not [m for m in sys.modules if m.split(".")[0] in ("jwt", "cryptography")], "PyJWT/cryptography loaded"
sys.stdout.write("%.6f\n" % (time.perf_counter() - t0))
"""


def spawn(argv):
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True)
    dt = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"{argv[:3]}... failed: {r.stderr.decode()[-500:]}")
    return dt, r.stdout


def med_ms(xs):
    return statistics.median(xs) * 1000


def make_fixtures(d):
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    now = int(time.time())
    out = {}
    # WLCG, RS256, JWKS (as IAM publishes), PyJWT-signed with wlcg.groups
    rk = rsa.generate_private_key(65537, 2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rk.public_key()))
    jwk.update(kid="rsa1", use="sig")
    iss = "https://wlcg.example.org/"
    claims = {"iss": iss, "sub": "b4c1-0c5e", "aud": AUD, "exp": now + 3600, "iat": now, "nbf": now,
              "jti": "j1", "wlcg.ver": "1.0", "scope": "compute.create",
              "wlcg.groups": ["/cms/pilot", "/cms"]}
    with open(f"{d}/wlcg.jwks", "w") as f:
        json.dump({"keys": [jwk]}, f)
    with open(f"{d}/wlcg.jwt", "wb") as f:
        f.write(jwt.encode(claims, rk, algorithm="RS256", headers={"kid": "rsa1"}).encode())
    out["wlcg RS256 (JWKS)"] = (iss, f"{d}/wlcg.jwks", f"{d}/wlcg.jwt")
    # SciTokens, ES256, PEM, made with scitokens-create when available
    ek = ec.generate_private_key(ec.SECP256R1())
    with open(f"{d}/ec.key", "wb") as f:
        f.write(ek.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption()))
    with open(f"{d}/ec.pub", "wb") as f:
        f.write(ek.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    iss = "https://sci.example.org"
    exe = shutil.which("scitokens-create")
    if exe:
        tok = subprocess.run([exe, "--cred", f"{d}/ec.pub", "--key", f"{d}/ec.key", "--keyid", "k1",
                              "--issuer", iss, "--profile", "scitokens2", "--claim", f"aud={AUD}", "--claim", "sub=alice",
                              "--claim", "scope=compute.create"], check=True, capture_output=True).stdout.strip()
    else:
        tok = jwt.encode({"iss": iss, "sub": "alice", "aud": AUD, "exp": now + 600, "iat": now, "jti": "x",
                          "ver": "scitoken:2.0"}, ek, algorithm="ES256", headers={"kid": "k1"}).encode()
    with open(f"{d}/sci.jwt", "wb") as f:
        f.write(tok)
    out["scitokens ES256 (PEM)"] = (iss, f"{d}/ec.pub", f"{d}/sci.jwt")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--inproc", type=int, default=2000)
    a = ap.parse_args()

    from glexec_py.core import tokens
    from glexec_py.effects import native
    with tempfile.TemporaryDirectory(prefix="glexec-tokbench-") as d:
        fx = make_fixtures(d)
        # Round-robin over the variants so that load from other jobs hits all of them alike.
        base, bare, sv = [], [], []
        results = {name: ([], []) for name in fx}
        exe = shutil.which("scitokens-verify")
        iss_s, key_s, tok_s = fx["scitokens ES256 (PEM)"]
        with open(tok_s) as f:
            tok_text = f.read().strip()
        for _ in range(a.runs):
            base.append(spawn([PY, "-I", "-S", "-B", "-c", "pass"])[0])
            bare.append(spawn([PY, "-I", "-S", "-B", "-c",
                               "import sys; sys.path.append('/usr/lib/python3/dist-packages')"])[0])
            for name, (iss, keyfile, tokfile) in fx.items():
                dt, out = spawn([PY, "-I", "-S", "-B", "-c", _CHILD, REPO, iss, AUD, keyfile, tokfile])
                results[name][0].append(dt)
                results[name][1].append(float(out))
            if exe:
                sv.append(spawn([exe, "--cred", key_s, "--issuer", iss_s, "--keyid", "k1", tok_text])[0])
        print(f"python3.11 -I -S -B, fresh process, median of {a.runs} (fork..exit wall clock):")
        print(f"  {'interpreter only (-c pass)':38s} {med_ms(base):7.1f} ms")
        print(f"  {'+ dist-packages on sys.path':38s} {med_ms(bare):7.1f} ms")
        for name, (walls, inner) in results.items():
            print(f"  {name:38s} {med_ms(walls):7.1f} ms total, {med_ms(inner):6.1f} ms inside "
                  f"(imports+key parse+verify), +{med_ms(walls) - med_ms(base):5.1f} ms over -c pass")
        if exe:
            print(f"  {'scitokens-verify (C++, same ES256 token)':38s} {med_ms(sv):7.1f} ms total")

        print(f"\nin-process, keys parsed once, median of {a.inproc} verify_token calls:")
        for name, (iss, keyfile, tokfile) in fx.items():
            pol = tokens.TokenPolicy({"issuers": [{"issuer": iss, "audiences": [AUD], "keys": ["/etc/k"],
                                                   "profile": "any", "algorithms": ["RS256", "ES256"]}]})
            with open(keyfile, "rb") as f:
                kb = f.read()
            t = time.perf_counter()
            keys = {iss: tokens.parse_key_file(kb, keyfile, native.check_pubkey)}
            parse_ms = (time.perf_counter() - t) * 1000
            with open(tokfile, "rb") as f:
                raw = f.read()
            tokens.verify_token(raw, pol, keys, time.time(), verify=native.verify_jws)   # warm
            xs = []
            for _ in range(a.inproc):
                t = time.perf_counter()
                tokens.verify_token(raw, pol, keys, time.time(), verify=native.verify_jws)
                xs.append(time.perf_counter() - t)
            print(f"  {name:38s} {statistics.median(xs) * 1e6:7.1f} us/verify "
                  f"(first key-file parse {parse_ms:.2f} ms)")


if __name__ == "__main__":
    main()
