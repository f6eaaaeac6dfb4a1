"""The cached form of a ban file (core.bans.to_cache_rows / from_cache_rows, marshalled as
effects.banfiles stores it) decides exactly as the list parsed from the file, and a cache
hit does not build an object per line."""
import gc
import marshal

from hypothesis import HealthCheck, given, settings, strategies as st

from glexec_py.core import bans
from glexec_py.core.bans import BanLoadError, check, from_plain, load_ban_file, merge
from glexec_py.core.dn import canonical, make_dn, oneline, rfc4514

CN, O, DC, EMAIL, UID = ("2.5.4.3", "2.5.4.10", "0.9.2342.19200300.100.1.25",
                         "1.2.840.113549.1.9.1", "0.9.2342.19200300.100.1.1")

# Few distinct values, so that random entries and random subjects often meet.
values = st.sampled_from(["a", "b", "A", "x y", "\u00e9", "e\u0301", "a/b", "a+b", "*", "1"])
avas = st.tuples(st.sampled_from([CN, O, DC, EMAIL, UID]), values)
dns = st.lists(st.lists(avas, min_size=1, max_size=2), min_size=1, max_size=4).map(make_dn)


def regrouped(d, draw):
    """The same AVAs with some RDN boundaries moved (grouping-insensitive matching)."""
    flat = [ava for rdn in d for ava in rdn]
    out, cur = [], []
    for ava in flat:
        cur.append(ava)
        if draw(st.booleans()):
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return make_dn(out)


@st.composite
def dn_texts(draw, pool):
    """A DN entry: one of the pool's DNs (or a prefix, or a regrouping) in any spelling,
    sometimes made a wildcard pattern."""
    d = draw(st.sampled_from(pool))
    d = d[:draw(st.integers(1, len(d)))]
    if draw(st.booleans()):
        d = regrouped(d, draw)
    text = draw(st.sampled_from([canonical, oneline, rfc4514]))(d)
    if draw(st.integers(0, 4)) == 0 and text.startswith("/") and len(text) > 1:
        i = draw(st.integers(1, len(text) - 1))
        text = text[:i] + draw(st.sampled_from(["*", "?", "[a-z]", "[!x]", "[[=a=]]"])) \
            + text[i + 1:]
    return text


fqan_texts = st.sampled_from(["/vo", "/vo/g", "/vo/g/Role=r", "/vo/Role=NULL", "/vo/g/h",
                              "/vo/g/Role=r/Capability=c", "/other", "/vo/*", "/vo/g/Role=*",
                              "/*/Role=r", "/vo/g/Role=r/Capability=NULL", "/v?"])
fqans = st.sampled_from(["/vo/Role=NULL/Capability=NULL", "/vo/g/Role=r/Capability=NULL",
                         "/vo/g/h/Role=NULL/Capability=NULL", "/vo/g/Role=r/Capability=c",
                         "/vo/g/Role=r", "/vo/g", "/other/x", "/vox", "/vo//bad", "/vo/Role=x"])


def ban_file(texts, draw):
    """The file bytes with the entries that load on their own (comments and blank lines
    in between, so line numbers and entry positions differ)."""
    lines = []
    for t in texts:
        line = f'"{t}"'.encode()
        try:
            load_ban_file(line + b"\n", "probe", "dn")
        except BanLoadError:
            continue
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from([b"# comment", b"", b"   "])))
        lines.append(line)
    return b"\n".join(lines) + b"\n"


def fqan_file(texts):
    ok = []
    for t in texts:
        try:
            load_ban_file(f'"{t}"\n'.encode(), "probe", "fqan")
            ok.append(f'"{t}"'.encode())
        except BanLoadError:
            pass
    return b"\n".join(ok) + b"\n"


def loadable(texts, kind):
    out = []
    for t in texts:
        try:
            from_plain({kind: [t]}, "probe")
            out.append(t)
        except BanLoadError:
            pass
    return out


def cached(banlist, source):
    """What a cache hit in effects.banfiles returns: the rows through marshal and back."""
    return bans.from_cache_rows(marshal.loads(marshal.dumps(bans.to_cache_rows(banlist))), source)


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    return (a.to_audit() == b.to_audit() and a.explain == b.explain
            and (a.entry is None) == (b.entry is None)
            and (a.entry is None or (a.entry.kind, a.entry.line) == (b.entry.kind, b.entry.line)))


@st.composite
def scenarios(draw):
    pool = draw(st.lists(dns, min_size=1, max_size=4))
    dn_data = ban_file(draw(st.lists(dn_texts(pool), max_size=12)), draw)
    ca_data = ban_file(draw(st.lists(dn_texts(pool), max_size=4)), draw)
    fq_data = fqan_file(draw(st.lists(fqan_texts, max_size=4)))
    inline = {"dn": loadable(draw(st.lists(dn_texts(pool), max_size=3)), "dn"),
              "ca": loadable(draw(st.lists(dn_texts(pool), max_size=2)), "ca"),
              "fqan": loadable(draw(st.lists(fqan_texts, max_size=2)), "fqan"),
              "token": [{"issuer": "https://i.example", "subject": "s"}],
              "fingerprint": ["ab" * 32]}
    chains = []
    for _ in range(draw(st.integers(1, 3))):
        base = draw(st.one_of(st.sampled_from(pool), dns))
        if draw(st.booleans()):
            base = regrouped(base, draw)          # the same AVAs, RDNs grouped otherwise
        chain = [base]
        for cn in draw(st.lists(st.sampled_from(["p", "1", "a"]), max_size=2)):
            chain.append(make_dn(list(chain[-1]) + [[(CN, cn)]]))
        chains.append(chain[::-1])
    issuers = draw(st.lists(st.one_of(st.sampled_from(pool), dns), max_size=3))
    kw = dict(issuer_dns=issuers, fqans=draw(st.lists(fqans, max_size=3)),
              token=draw(st.sampled_from([None, ("https://i.example/", "s"),
                                          ("https://i.example", "t")])),
              fingerprints=draw(st.lists(st.sampled_from(["AB" * 32, "cd" * 32]), max_size=2)),
              issuer_onelines=[oneline(d) for d in issuers])
    return dn_data, ca_data, fq_data, inline, chains, kw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.filter_too_much])
@given(scenarios())
def test_cached_index_decides_as_the_parsed_file(sc):
    dn_data, ca_data, fq_data, inline, chains, kw = sc
    parsed = [load_ban_file(dn_data, "/etc/ban_dn", "dn"),
              load_ban_file(ca_data, "/etc/ban_ca", "ca"),
              load_ban_file(fq_data, "/etc/ban_fqan", "fqan")]
    hit = [cached(bl, src) for bl, src in zip(parsed, ("/etc/ban_dn", "/etc/ban_ca",
                                                      "/etc/ban_fqan"))]
    plain = from_plain(inline, "glexec.yaml: bans")
    # a second inline source whose token and fingerprint entries repeat the first's: the
    # first in list order must be the one reported
    second = from_plain({"token": [{"issuer": "https://i.example"}], "fingerprint": ["AB" * 32],
                         "dn": inline["dn"][-1:], "ca": inline["ca"][-1:],
                         "fqan": inline["fqan"][-1:]}, "other.yaml: bans")
    whole = merge(*parsed, plain, second)
    whole_hit = merge(*hit, plain, second)
    # the reference: one list of copies of every entry, no merge, no cache
    flat = bans.BanList([bans.Entry(e.kind, e.text, e.source, e.line, e.where, e.value,
                                    e.pattern) for e in whole.entries])
    assert whole_hit.counts() == whole.counts() and len(whole_hit) == len(whole)
    assert [(e.kind, e.text, e.line) for e in whole_hit.entries] == \
        [(e.kind, e.text, e.line) for e in whole.entries]
    for chain in chains:
        one = dict(kw, subject_dns=chain, subject_onelines=[oneline(d) for d in chain])
        assert same(check(whole_hit, **one), check(flat, **one))
        assert same(check(whole, **one), check(flat, **one))
        # each file alone, and a merge of merges in another order
        for p, h in zip(parsed, hit):
            assert same(check(h, **one), check(p, **one))
        assert same(check(merge(merge(hit[1], hit[0]), merge(plain, hit[2])), **one),
                    check(merge(parsed[1], parsed[0], plain, parsed[2]), **one))


def _live_entries():
    return sum(1 for o in gc.get_objects() if type(o) is bans.Entry)


def test_cache_hit_builds_no_entry_per_line():
    # 20,000 exact DN bans and 20 patterns: a cache hit plus a check may build the patterns'
    # entries and the few an exact lookup finds, not one per line.
    lines = [f'"/DC=org/DC=example/OU=U{i % 97}/CN=User {i}"' if i % 1000 else
             f'"/DC=org/DC=example/OU=U{i}/CN=Pat*"' for i in range(20_000)]
    rows = marshal.dumps(bans.to_cache_rows(load_ban_file("\n".join(lines).encode(), "f", "dn")))
    gc.collect()
    before = _live_entries()
    bl = merge(bans.from_cache_rows(marshal.loads(rows), "f"),
               from_plain({"fingerprint": ["ab" * 32]}, "y"))
    banned = make_dn([[(DC, "org")], [(DC, "example")], [("2.5.4.11", "U5")], [(CN, "User 5")]])
    d = check(bl, subject_dns=[make_dn(list(banned) + [[(CN, "proxy")]]), banned])
    assert d.reason == "banned_dn" and d.where == "f:6"
    assert check(bl, subject_dns=[make_dn([[(CN, "Nobody")]])]) is None
    assert _live_entries() - before < 100
    assert bl.counts()["dn"] == 20_000 and len(bl) == 20_001


def test_cached_entries_with_the_same_avas_in_another_order():
    # Same AVAs, other RDN order: one index key, told apart only by the exact check.
    data = b'"/CN=a/O=b"\n"/O=b/CN=a"\n"/O=b/CN=a/CN=p"\n'
    for bl in (load_ban_file(data, "f", "dn"), cached(load_ban_file(data, "f", "dn"), "f")):
        subject = make_dn([[(O, "b")], [(CN, "a")]])
        assert check(bl, subject_dns=[subject]).where == "f:2"
        proxy = make_dn([[(O, "b")], [(CN, "a")], [(CN, "p")]])
        assert check(bl, subject_dns=[proxy]).where == "f:2"
        assert check(bl, subject_dns=[make_dn([[(CN, "a")], [(O, "b")]])]).where == "f:1"
        # one multi-valued RDN is a set: both orders ban it, the first line is reported
        assert check(bl, subject_dns=[make_dn([[(O, "b"), (CN, "a")]])]).where == "f:1"
        assert check(bl, subject_dns=[make_dn([[(O, "b")], [(CN, "b")]])]) is None
