"""End to end: a CA speaks only for its own namespace (IGTF .namespaces / .signing_policy).

A root CA (namespace /DC=test/DC=ns-root/...) and an intermediate CA it signed (namespace
/DC=test/DC=ns-sub/...), both in one trust dir installed root-owned under the prefix, with
the policy files written into the installed copy the way the IGTF distribution lays them
out. The proxies are made while the PKI's own dir still lets every CA sign anything (so
grid-proxy-init does not judge them); the installed binary decides."""
import os
import shutil

import pytest

from tests.support import install as inst
from tests.support.pki import TestPKI, write_ca_policy

ROOT_DN = "/DC=test/DC=ns-root/CN=NS Root CA"
SUB_DN = "/DC=test/DC=ns-root/CN=NS Sub CA"
STRAY_DN = "/DC=test/DC=elsewhere/CN=NS Stray Sub CA"
INSIDE = "/DC=test/DC=ns-root/CN=Inside User"
OUTSIDE = "/DC=test/DC=ns-rootx/CN=Outside User"        # shares the prefix "ns-root"
DENIED = "/DC=test/DC=ns-root/CN=Denied User"
SUB_INSIDE = "/DC=test/DC=ns-sub/CN=Sub User"
SUB_POACHING = "/DC=test/DC=ns-root/CN=Poached By Sub"  # the root's namespace, issued by the sub
STRAY_USER = "/DC=test/DC=elsewhere/CN=Stray User"
SLASHED = "/DC=test/DC=ns-root/CN=Eve\\/CN=Alice"   # one CN whose value holds a '/'
ALL = (INSIDE, OUTSIDE, DENIED, SUB_INSIDE, SUB_POACHING, STRAY_USER, SLASHED)


class NS:
    pass


@pytest.fixture(scope="module")
def ns(session_lock, request):
    top = inst.make_run_dir("nspki")
    os.chmod(top, 0o700)
    request.addfinalizer(lambda: inst._safe_rmtree(top))
    s = NS()
    s.root = TestPKI(top / "root", ca_dn=ROOT_DN)
    s.sub = TestPKI(top / "sub", ca_dn=SUB_DN, parent=s.root)
    s.stray = TestPKI(top / "stray", ca_dn=STRAY_DN, parent=s.root)
    pdir = top / "proxies"
    pdir.mkdir()
    s.proxies = {}
    for ca, dn in ((s.root, INSIDE), (s.root, OUTSIDE), (s.root, DENIED), (s.sub, SUB_INSIDE),
                   (s.sub, SUB_POACHING), (s.stray, STRAY_USER), (s.root, SLASHED)):
        s.proxies[dn] = ca.proxy(ca.user(dn), pdir / f"{len(s.proxies)}.pem")
    return s


@pytest.fixture
def nsgx(gx, ns, prefix):
    """gx with the namespace trust dir installed at <prefix>/etc/glexec-py/ns-certificates
    (IGTF-style policies) and every test DN mapped to gxttarget1."""
    dest = inst.trust_dir_path(prefix).parent / "ns-certificates"
    if dest.exists():
        shutil.rmtree(dest)
    inst.install_trust_dir(prefix, ns.root, dest=dest)
    gx.ns, gx.ca_dir = ns, dest
    gx.policy = lambda ca, **kw: _policy(dest, ca, **kw)
    gx.policy(ns.root, permit=("/DC=test/DC=ns-root/.*",), deny=("/DC=test/DC=ns-root/CN=Denied.*",),
              globs=("/DC=test/DC=ns-root/*",))
    gx.policy(ns.sub, permit=("/DC=test/DC=ns-sub/.*",), globs=("/DC=test/DC=ns-sub/*",))
    gx.policy(ns.stray, permit=("/DC=test/DC=elsewhere/.*",), globs=("/DC=test/DC=elsewhere/*",))
    gx.config(credentials={"ca_dir": str(dest)})
    gx.gridmap([(dn, "gxttarget1") for dn in ALL])
    yield gx
    shutil.rmtree(dest)


def _policy(dest, ca, **kw):
    write_ca_policy(dest, ca.hash, ca.ca_dn, **kw)
    for suffix in ("namespaces", "signing_policy"):
        p = dest / f"{ca.hash}.{suffix}"
        if p.exists():
            os.chown(p, 0, 0)
            os.chmod(p, 0o644)


def run(gx, dn, **kw):
    m = gx.marker(f"ran-{ALL.index(dn)}")
    r = gx.run(["/bin/sh", "-c", f'echo ran > "{m}"'],
               proxy=gx.file(f"p{abs(hash(dn))}.pem", gx.ns.proxies[dn].read_bytes(), mode=0o600), **kw)
    return r, m


def refused(gx, r, m, code, reason):
    gx.assert_refused(r, code, reason)
    assert not m.exists()
    return r.refusals[0]


def test_in_namespace_subject_is_granted(nsgx):
    r, m = run(nsgx, INSIDE)
    nsgx.assert_granted(r)
    assert m.exists()
    (check,) = r.grants[0]["namespaces"]
    root_ns = f"{nsgx.ca_dir}/{nsgx.ns.root.hash}.namespaces"
    assert check == {"depth": 1, "file": root_ns, "kind": "namespaces", "decision": "permit", "line": 9,
                     "rule": 'PERMIT Subject "/DC=test/DC=ns-root/.*"'}


def test_out_of_namespace_subject_is_refused_and_audited(nsgx):
    r, m = run(nsgx, OUTSIDE)
    rec = refused(nsgx, r, m, 201, "namespace_violation")
    assert r.stderr == b"glexec: credential is outside its CA's namespace\n"
    d = rec["detail"]
    assert d["file"] == f"{nsgx.ca_dir}/{nsgx.ns.root.hash}.namespaces"
    assert (d["kind"], d["decision"], d["depth"]) == ("namespaces", "no_rule_permits", 1)
    assert "rule" not in d and d["subject"] == OUTSIDE and d["ca"] == ROOT_DN


def test_deny_rule_is_named_in_the_audit(nsgx):
    r, m = run(nsgx, DENIED)
    d = refused(nsgx, r, m, 201, "namespace_violation")["detail"]
    assert (d["decision"], d["line"], d["rule"]) == ("deny", 11, 'DENY Subject "/DC=test/DC=ns-root/CN=Denied.*"')


def test_intermediate_ca_in_its_namespace(nsgx):
    r, m = run(nsgx, SUB_INSIDE)
    nsgx.assert_granted(r)
    checks = r.grants[0]["namespaces"]
    assert [(c["depth"], c["file"].rsplit("/", 1)[1]) for c in checks] == [
        (1, f"{nsgx.ns.sub.hash}.namespaces"), (2, f"{nsgx.ns.root.hash}.namespaces")]


def test_intermediate_ca_cannot_speak_for_its_parents_namespace(nsgx):
    r, m = run(nsgx, SUB_POACHING)
    d = refused(nsgx, r, m, 201, "namespace_violation")["detail"]
    assert (d["depth"], d["ca"], d["decision"]) == (1, SUB_DN, "no_rule_permits")


def test_intermediate_ca_outside_the_roots_namespace(nsgx):
    # The stray sub CA permits its user, but the root never permitted the stray CA itself.
    r, m = run(nsgx, STRAY_USER)
    d = refused(nsgx, r, m, 201, "namespace_violation")["detail"]
    assert (d["depth"], d["subject"], d["ca"]) == (2, STRAY_DN, ROOT_DN)


def test_signing_policy_decides_without_namespaces(nsgx):
    nsgx.policy(nsgx.ns.root, permit=None, globs=("/DC=test/DC=ns-root/*",))
    r, m = run(nsgx, INSIDE)
    nsgx.assert_granted(r)
    assert r.grants[0]["namespaces"][0]["kind"] == "signing_policy"
    r, m = run(nsgx, OUTSIDE)
    d = refused(nsgx, r, m, 201, "namespace_violation")["detail"]
    assert d["file"].endswith(f"/{nsgx.ns.root.hash}.signing_policy")


@pytest.mark.parametrize("mode, granted", [("require", False), ("optional", True), ("ignore", True)])
def test_ca_without_policy_files(nsgx, mode, granted):
    nsgx.policy(nsgx.ns.root, permit=None, globs=None)
    nsgx.config(credentials={"ca_dir": str(nsgx.ca_dir), "namespace_policy": mode})
    r, m = run(nsgx, OUTSIDE)
    if granted:
        nsgx.assert_granted(r)
    else:
        d = refused(nsgx, r, m, 201, "namespace_missing")["detail"]
        assert (d["ca_hash"], d["ca"]) == (nsgx.ns.root.hash, ROOT_DN)


def test_ignore_reads_nothing_even_when_a_file_denies(nsgx):
    nsgx.config(credentials={"ca_dir": str(nsgx.ca_dir), "namespace_policy": "ignore"})
    r, m = run(nsgx, OUTSIDE)
    nsgx.assert_granted(r)
    assert "namespaces" not in r.grants[0]


def test_igtf_alias_symlink_is_followed(nsgx):
    h = nsgx.ns.root.hash
    os.rename(nsgx.ca_dir / f"{h}.namespaces", nsgx.ca_dir / "NS-Root.namespaces")
    os.symlink("NS-Root.namespaces", nsgx.ca_dir / f"{h}.namespaces")
    r, m = run(nsgx, OUTSIDE)
    d = refused(nsgx, r, m, 201, "namespace_violation")["detail"]
    assert d["file"] == f"{nsgx.ca_dir}/NS-Root.namespaces"
    r, m = run(nsgx, INSIDE)
    nsgx.assert_granted(r)


@pytest.mark.parametrize("damage", ["unparsable", "group_writable", "not_root", "symlink_out", "dangling"])
def test_broken_policy_file_fails_closed(nsgx, damage):
    p = nsgx.ca_dir / f"{nsgx.ns.root.hash}.namespaces"
    if damage == "unparsable":
        p.write_text('TO Issuer SELF PERMIT Subject "/DC=test/(.*"\n')
    elif damage == "group_writable":
        os.chmod(p, 0o664)
    elif damage == "not_root":
        os.chown(p, nsgx.accounts.pilot.uid, 0)
    else:
        p.unlink()
        os.symlink("/etc/hostname" if damage == "symlink_out" else "missing.namespaces", p)
    r, m = run(nsgx, INSIDE)      # even a subject the intact file would permit
    rec = refused(nsgx, r, m, 202, None)
    assert rec["reason"] in ("namespace_file_invalid", "namespace_file", "untrusted_install")
    if damage == "unparsable":
        assert rec["reason"] == "namespace_file_invalid" and rec["detail"]["line"] == 1


def test_subject_with_a_slash_in_a_value_is_refused_not_matched(nsgx):
    # "/DC=test/DC=ns-root/.*" would match its one-line text; its structure is one CN
    # "Eve/CN=Alice", which text matching cannot tell from two RDNs.
    r, m = run(nsgx, SLASHED)
    d = refused(nsgx, r, m, 201, "namespace_ambiguous")["detail"]
    assert (d["depth"], d["subject"]) == (1, "/DC=test/DC=ns-root/CN=Eve\\/CN=Alice")
