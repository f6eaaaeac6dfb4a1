"""One identity <-> one account, by canonical identity, on real leases (GridmapDir on a
root-owned temp gridmapdir with real pool entry files): distinct identities whose LCMAPS
lease names collide (case, backslash escapes vs raw bytes, '/' inside a value vs two RDNs,
multi-valued RDNs, control bytes, "iss,sub" commas) never get the same account; the same
identity always gets its own account back; owner-less leases are adopted only on evidence.
"""
import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings, strategies as st

from glexec_py.core import dn as D
from glexec_py.core import leases as core
from glexec_py.core.identity import Identity
from glexec_py.effects.gridmapdir import GridmapDir
from glexec_py.core.mapping import lease_owner as _lease_owner, token_lease_key as _token_lease_key
from glexec_py.errors import NotAuthorized
from tests.leases.conftest import make_base, make_pool

CN, O, OU, DC, UID, EMAIL = ("2.5.4.3", "2.5.4.10", "2.5.4.11", "0.9.2342.19200300.100.1.25",
                             "0.9.2342.19200300.100.1.1", "1.2.840.113549.1.9.1")
POOL = b"gxtpool"


def x509(dn):
    """The identity the engine builds for a certificate whose subject DER is ``dn``
    (subject = OpenSSL's oneline text, canonical from the DER)."""
    return Identity("x509", "/CN=Test CA", D.oneline(dn), (), (), 0, 0, "", {},
                    canonical=D.canonical(dn))


def jwt(iss, sub):
    return Identity("jwt", iss, sub, (), (), 0, 0, "", {})


def owner_of(ident):
    text = _token_lease_key(ident.mapping_name) if ident.kind == "jwt" else ident.mapping_name
    return text, _lease_owner(ident, text)


# --- adversarial DNs ------------------------------------------------------------------------

ALPHABET = st.sampled_from(list("aAbBzZ09 \\%/=+,\"'#<>;") +
                           ["\x00", "\x01", "\x1f", "\x7f", "\u00e9", "\u00c9", "\u20ac",
                            "\\x41", "\\xC3\\xA9", "/CN=", "+CN=", "\\/CN=", "\\+CN="])
VALUE = st.lists(ALPHABET, min_size=1, max_size=8).map("".join) | \
    st.text(min_size=1, max_size=90)           # long values: lease names near 255 bytes
ATTR = st.sampled_from([CN, O, OU, DC, UID, EMAIL])
RDN = st.lists(st.tuples(ATTR, VALUE), min_size=1, max_size=2)
DNS = st.lists(RDN, min_size=1, max_size=4)


def _dn(rdns):
    try:
        return D.make_dn(rdns)
    except D.DNError:
        return None


def swapcase(dn, i):
    return D.make_dn([[(o, v.swapcase()) for o, v in rdn] if k == i % len(dn) else rdn
                      for k, rdn in enumerate(dn)])


def collide(dn, how):
    """Two DNs that OpenSSL's oneline / LCMAPS's lower-cased name confuse (from ``dn``)."""
    rdns = [list(r) for r in dn]
    if how == "case":
        return dn, swapcase(dn, 0)
    if how == "slash" and len(rdns) >= 2 and len(rdns[1]) == 1:
        # a value ending in a backslash + the next RDN  <->  one value containing '/attr='
        o1, v1 = rdns[0][-1]
        o2, v2 = rdns[1][0]
        two = D.make_dn([rdns[0][:-1] + [(o1, v1 + "\\")]] + rdns[1:])
        one = D.make_dn([rdns[0][:-1] + [(o1, v1 + "/" + D.attribute_name(o2) + "=" + v2)]]
                        + rdns[2:])
        return two, one
    if how == "multi" and len(rdns) >= 2:
        # two RDNs <-> one multi-valued RDN; and a value ending in '\' before a '+'
        return dn, D.make_dn([rdns[0] + rdns[1]] + rdns[2:])
    if how == "escape":
        # a raw byte <-> the literal text of its \xHH escape
        o, v = rdns[-1][0]
        raw = "".join("\\x%02X" % b if (b < 0x20 or b > 0x7e) else chr(b)
                      for b in v.encode("utf-8"))
        if raw == v:
            return D.make_dn(rdns[:-1] + [[(o, v + "\x01")] + rdns[-1][1:]]), \
                D.make_dn(rdns[:-1] + [[(o, v + "\\x01")] + rdns[-1][1:]])
        return dn, D.make_dn(rdns[:-1] + [[(o, raw)] + rdns[-1][1:]])
    return dn, swapcase(dn, 1)


@st.composite
def identity_pairs(draw):
    if draw(st.integers(0, 5)) == 0:                 # tokens: case and the "iss,sub" comma
        sub = draw(st.text(alphabet="aAbB,^%\u00e9", min_size=1, max_size=6))
        a = jwt("https://iss.example/a", sub)
        b = draw(st.sampled_from([
            jwt("https://iss.example/a", sub.swapcase() if sub.swapcase() != sub else sub + "x"),
            jwt("https://iss.example/a,x", sub), jwt("https://iss.example/a", "x," + sub)]))
        if a.key == b.key:
            b = jwt("https://iss.example/b", sub)
        return a, b
    d1 = draw(DNS.map(_dn).filter(bool))
    how = draw(st.sampled_from(["case", "slash", "multi", "escape", "random"]))
    if how == "random":
        d2 = draw(DNS.map(_dn).filter(bool))
    else:
        try:
            d1, d2 = collide(d1, how)
        except D.DNError:
            d2 = None
    assume(d2 is not None and D.canonical(d2) != D.canonical(d1))
    if draw(st.booleans()):
        d1, d2 = d2, d1
    return x509(d1), x509(d2)


class Store:
    """A fresh root-owned gridmapdir with real pool entry files."""

    def __init__(self, n=5):
        self.base = make_base()
        self.path = os.path.join(self.base, "gridmapdir")
        os.mkdir(self.path, 0o755)
        self.entries = make_pool(self.path, POOL.decode(), n)
        self.g = GridmapDir(self.path, pools=[POOL])   # fsck: not inferred (a token lease
        # "...:mapcount=0003" ends in digits and would be taken for a pool entry)

    def get(self, ident, groups=(), mapcount=0):
        text, owner = owner_of(ident)
        try:
            return self.g.acquire(text, POOL, groups=groups, mapcount=mapcount, owner=owner)[:2]
        except NotAuthorized as e:
            assert e.reason in ("lease_name", "lease_collision"), e.reason
            return None

    def legacy(self, text, groups=(), mapcount=0, keep_text=False):
        """A lease made without an owner: LCMAPS's (no record) or an older glexec-py's
        (record with the ``dn`` text, no owner)."""
        acc, lease, _ = self.g.acquire(text, POOL, groups=groups, mapcount=mapcount)
        if not keep_text:
            os.unlink(os.path.join(self.path, ".glexec-py", os.fsdecode(acc)))
        return acc

    def close(self):
        self.g.close()
        shutil.rmtree(self.base, ignore_errors=True)


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(pair=identity_pairs(), legacy=st.sampled_from([None, "lcmaps", "text-a", "text-b"]),
       mapcount=st.sampled_from([0, 0, 3]), groups=st.sampled_from([(), (b"gxtvo",)]))
def test_distinct_identities_never_share_an_account(pair, legacy, mapcount, groups):
    a, b = pair
    ta, oa = owner_of(a)
    tb, ob = owner_of(b)
    note(f"a={oa!r} b={ob!r}")
    try:
        event("same LCMAPS name" if core.lease_name(ta, groups, mapcount)
              == core.lease_name(tb, groups, mapcount) else "different LCMAPS names")
    except ValueError:
        event("no LCMAPS name (NUL)")
    s = Store()
    try:
        old = None
        if legacy is not None:
            src = tb if legacy == "text-b" else ta
            try:
                old = s.legacy(src, groups, mapcount, keep_text=legacy != "lcmaps")
            except NotAuthorized:
                old = None                       # name too long even for LCMAPS
        ga, gb = s.get(a, groups, mapcount), s.get(b, groups, mapcount)
        for _ in range(2):                       # the same identity: the same account back
            assert s.get(a, groups, mapcount) == ga
            assert s.get(b, groups, mapcount) == gb
        if ga and gb:
            assert ga[0] != gb[0], (a.key, b.key, ga, gb)
            assert ga[1] != gb[1]
        # an owner-less lease goes to nobody, or to the identity its recorded text reads as
        for who, got, o, t in ((a, ga, oa, ta), (b, gb, ob, tb)):
            if old is not None and got and got[0] == old:
                assert legacy != "lcmaps" and o.readable
                assert t == (tb if legacy == "text-b" else ta)
        # the metadata names the owner of every lease glexec-py handed out
        for got, o in ((ga, oa), (gb, ob)):
            if got:
                rec = json.load(open(os.path.join(s.path, ".glexec-py", os.fsdecode(got[0]))))
                assert rec["owner"] == list(o.key) and rec["lease"] == got[1].decode("latin-1")
        findings = s.g.fsck()
        note(f"fsck={[f.as_dict() for f in findings]}")
        assert [f.kind for f in findings] in ([], ["meta_missing"])
    finally:
        s.close()


def test_each_collision_class_collides_under_lcmaps_names():
    """The classes the property test draws really share one LCMAPS name (so the test above
    exercises collisions, not just distinct names)."""
    base = D.parse_slash("/DC=org/DC=example/CN=Jane Doe/CN=12345")
    pairs = {
        "case": (base, swapcase(base, 2)),
        "slash": (D.make_dn([[(DC, "org")], [(CN, "a\\")], [(CN, "b")]]),
                  D.make_dn([[(DC, "org")], [(CN, "a/CN=b")]])),
        "escape": (D.make_dn([[(CN, "Ren\u00e9")]]), D.make_dn([[(CN, "Ren\\xC3\\xA9")]])),
        "control": (D.make_dn([[(CN, "a\x01")]]), D.make_dn([[(CN, "a\\x01")]])),
        "multi": (D.make_dn([[(CN, "a\\"), (CN, "b")]]), D.make_dn([[(CN, "a+CN=b")]])),
    }
    for how, (d1, d2) in pairs.items():
        assert D.canonical(d1) != D.canonical(d2), how
        n1, n2 = (core.lease_name(owner_of(x509(d))[0]) for d in (d1, d2))
        assert n1 == n2, (how, n1, n2)
    assert core.lease_name(_token_lease_key(jwt("https://i/a,b", "c").mapping_name)) == \
        core.lease_name(_token_lease_key(jwt("https://i/a", "b,c").mapping_name))


def test_ordinary_dn_keeps_its_lcmaps_name_and_second_comer_gets_alternate(gmd):
    make_pool(gmd, "gxtpool", 3)
    alice = x509(D.parse_slash("/DC=org/DC=example/CN=Alice"))
    lower = x509(D.parse_slash("/DC=org/DC=example/CN=alice"))
    ta, oa = owner_of(alice)
    tl, ol = owner_of(lower)
    with GridmapDir(gmd) as g:
        acc, lease, reused = g.acquire(ta, POOL, owner=oa)
        assert lease == core.lease_name(ta) == b"%2fdc%3dorg%2fdc%3dexample%2fcn%3dalice"
        acc2, lease2, _ = g.acquire(tl, POOL, owner=ol)
        assert acc2 != acc
        assert lease2 == core.alternate_name(lease, core.owner_digest(ol.key))
        assert b"~" in lease2 and lease2.startswith(lease)
        # the first leaves; the second keeps its own lease, a new comer takes the plain name
        g.release(lease)
        assert g.acquire(tl, POOL, owner=ol)[:2] == (acc2, lease2)
        assert g.acquire(ta, POOL, owner=oa)[1] == lease
        assert g.fsck() == []


def test_lcmaps_made_lease_is_never_adopted(gmd):
    """No record = only the lower-cased name as evidence, shared by every case variant:
    neither the right identity nor a look-alike gets that account (each gets its own)."""
    make_pool(gmd, "gxtpool", 4)
    alice = x509(D.parse_slash("/DC=org/CN=Alice"))
    ALICE = x509(D.parse_slash("/DC=org/CN=ALICE"))
    with GridmapDir(gmd) as g:
        ta, oa = owner_of(alice)
        old, lease, _ = g.acquire(ta, POOL)                   # LCMAPS-style, no owner
        os.unlink(os.path.join(gmd, ".glexec-py", os.fsdecode(old)))
        got = {g.acquire(*owner_of(i)[:1], POOL, owner=owner_of(i)[1])[0] for i in (ALICE, alice)}
        assert old not in got and len(got) == 2
        assert os.lstat(os.path.join(gmd, os.fsdecode(lease))).st_nlink == 2   # untouched
        assert not g.adopted


def test_older_glexec_py_record_adopted_by_its_exact_identity_only(gmd):
    make_pool(gmd, "gxtpool", 4)
    alice = x509(D.parse_slash("/DC=org/CN=Alice"))
    ALICE = x509(D.parse_slash("/DC=org/CN=ALICE"))
    ta, oa = owner_of(alice)
    tA, oA = owner_of(ALICE)
    with GridmapDir(gmd) as g:
        old, lease, _ = g.acquire(ta, POOL)                   # record with dn text, no owner
        assert g.acquire(tA, POOL, owner=oA)[0] != old        # look-alike: not adopted
        assert not g.adopted
        assert g.acquire(ta, POOL, owner=oa)[:2] == (old, lease)
        assert g.adopted
        rec = json.load(open(os.path.join(gmd, ".glexec-py", os.fsdecode(old))))
        assert rec["owner"] == list(oa.key)
        assert g.acquire(ta, POOL, owner=oa)[:2] == (old, lease) and not g.adopted


def test_unreadable_text_is_not_evidence(gmd):
    """A oneline text that reads as another DN (a value with a literal '\\x41') never
    adopts an owner-less lease, even with the exact text recorded."""
    make_pool(gmd, "gxtpool", 3)
    tricky = x509(D.make_dn([[(CN, "\\x41")]]))              # prints as /CN=\x41 = /CN=A
    t, o = owner_of(tricky)
    assert not o.readable
    with GridmapDir(gmd) as g:
        old, _, _ = g.acquire(t, POOL)
        assert g.acquire(t, POOL, owner=o)[0] != old


def test_alternate_name_taken_by_another_is_refused(gmd):
    make_pool(gmd, "gxtpool", 3)
    a = x509(D.parse_slash("/DC=org/CN=Bob"))
    b = x509(D.parse_slash("/DC=org/CN=BOB"))
    ta, oa = owner_of(a)
    tb, ob = owner_of(b)
    with GridmapDir(gmd) as g:
        g.acquire(ta, POOL, owner=oa)
        acc, alt = g.acquire(tb, POOL, owner=ob)[:2]
        # someone rewrites the alternate lease's record to name a third identity
        path = os.path.join(gmd, ".glexec-py", os.fsdecode(acc))
        rec = json.load(open(path))
        rec["owner"] = ["x509", "/DC=org/CN=Mallory"]
        with open(path, "w") as f:
            json.dump(rec, f)
        with pytest.raises(NotAuthorized) as ei:
            g.acquire(tb, POOL, owner=ob)
        assert ei.value.reason == "lease_collision" and ei.value.exit_code == 203
        assert "meta_owner_mismatch" in [f.kind for f in g.fsck()]


def test_alternate_lease_without_record_is_its_owners(gmd):
    """A crash between link and the metadata write leaves the alternate lease owner-less:
    its digest names the owner, so the owner gets it back (and nobody else could)."""
    make_pool(gmd, "gxtpool", 3)
    a = x509(D.parse_slash("/DC=org/CN=Carol"))
    b = x509(D.parse_slash("/DC=org/CN=carol"))
    with GridmapDir(gmd) as g:
        g.acquire(*owner_of(a)[:1], POOL, owner=owner_of(a)[1])
        acc, alt = g.acquire(owner_of(b)[0], POOL, owner=owner_of(b)[1])[:2]
        os.unlink(os.path.join(gmd, ".glexec-py", os.fsdecode(acc)))
        assert g.acquire(owner_of(b)[0], POOL, owner=owner_of(b)[1])[:2] == (acc, alt)
        assert g.adopted


# --- pools inferred from the directory (site tools open the gridmapdir without a pool list) --

TOKEN_SUBS = st.text(st.sampled_from("abcXYZ019-_.@:/,"), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(iss=TOKEN_SUBS, sub=TOKEN_SUBS, mapcount=st.sampled_from([0, 1, 7, 9999]),
       groups=st.sampled_from([(), (b"gxtvo",), (b"gxtvo", b"prod1")]))
def test_no_lease_name_is_taken_for_a_pool_entry(iss, sub, mapcount, groups):
    """Neither a token lease ("iss,sub" ending in a digit, or ``:mapcount=NNNN``) nor a DN
    lease ever looks like a pool entry to the inference the site tools rely on."""
    token = core.lease_name(_token_lease_key(f"https://{iss},{sub}".encode()), groups, mapcount)
    dn = core.lease_name(f"/DC=org/CN={sub}".encode(), groups, mapcount)
    assert core.inferred_pool(token) is None, token
    assert core.inferred_pool(dn) is None, dn


def test_inferred_pools_are_the_accounts():
    assert core.inferred_pool(b"gxtpool007") == b"gxtpool"
    assert core.inferred_pool(b"atlas-prd12") == b"atlas-prd"
    for name in (b"gxtpool", b"007", b"%2fcn%3d1", b"root", b"gxtpool1~ab12", b".x1"):
        assert core.inferred_pool(name) is None, name


def test_token_mapcount_lease_is_seen_and_released_without_a_pool_list(gmd):
    """A tool that opens the gridmapdir without pools (sweep, prune, backmap, leases) must
    see a token lease ``...:mapcount=0003`` as a lease: before, it was taken for an entry of
    a pool "https%3a...:mapcount=", left out of leases() (so its account looked free to
    sweep) and could not be released."""
    entries = make_pool(gmd, "gxtpool", 3)
    ident = jwt("https://issuer.example", "user42")
    text, owner = owner_of(ident)
    with GridmapDir(gmd, pools=[POOL]) as g:
        acc, lease, _ = g.acquire(text, POOL, mapcount=3, owner=owner)
    assert lease.endswith(b":mapcount=0003")
    with GridmapDir(gmd) as g:
        assert g._pools(None) == (POOL,)
        held = g.leases()
        assert held[lease][0] == acc
        assert g.release(lease) == acc
        assert lease not in g.leases()
    assert len(entries) == 3
