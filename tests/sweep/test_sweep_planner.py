"""Pure planner tests (glexec_tools.sweep.plan): decisions, reasons, config refusal."""
import stat
from types import SimpleNamespace as NS

import pytest
from hypothesis import given, settings, strategies as st

from glexec_tools.sweep import plan as core
from glexec_py.errors import ConfigError
from tests.support.glexec_yaml import with_section


def parse(body, **main):
    return core.parse_section(with_section("sweep", body, **main), "glexec.yaml")

NOW = 2_000_000_000.0
DAY = 86400
POOL = {47501, 47502}
DEV = 42


def ent(mode=stat.S_IFREG | 0o644, uid=47501, a=NOW - 10 * DAY, m=NOW - 10 * DAY,
        c=NOW - 10 * DAY, dev=DEV, ino=1, size=0, gid=0):
    return NS(st_mode=mode, st_uid=uid, st_gid=gid, st_atime=a, st_mtime=m, st_ctime=c,
              st_dev=dev, st_ino=ino, st_size=size)


def planner(**kw):
    rule = core.Rule(kw.pop("root", b"/scratch"), kw.pop("age", DAY), **kw)
    return core.Planner(rule, POOL, NOW, DEV, kw.pop("mounts", ()) if "mounts" in kw else ())


def test_default_all_three_old():
    p = planner()
    assert p.decide(b"f", ent(), 0).action == "remove"
    d = p.decide(b"f", ent(c=NOW), 0)
    assert (d.action, d.reason) == ("keep", "young by ctime")
    assert p.decide(b"f", ent(a=NOW), 0).reason == "young by atime"
    assert p.decide(b"f", ent(m=NOW, a=NOW), 0).reason == "young by atime+mtime"


def test_age_by_selection_like_tmpfiles():
    p = planner(age_by="m")
    assert p.decide(b"f", ent(a=NOW, c=NOW), 0).action == "remove"
    assert p.decide(b"f", ent(m=NOW), 0).action == "keep"


def test_other_owner_sticky_types_lostfound_mounts():
    p = core.Planner(core.Rule(b"/s", DAY), POOL, NOW, DEV, {b"mnt"})
    assert p.decide(b"f", ent(uid=0), 0) == core.Decision("skip", "other owner")
    assert p.decide(b"f", ent(mode=stat.S_IFREG | stat.S_ISVTX | 0o644), 0).reason == "sticky bit (opt-out)"
    assert p.decide(b"p", ent(mode=stat.S_IFIFO | 0o644), 0) == core.Decision("keep", "type fifo not selected")
    assert p.decide(b"l", ent(mode=stat.S_IFLNK | 0o777), 0).action == "remove"
    assert p.decide(b"lost+found", ent(mode=stat.S_IFDIR | 0o700, uid=0), 0).action == "skip"
    assert p.decide(b"x", ent(mode=stat.S_IFDIR | 0o755, dev=7), 0).reason.startswith("other file system")
    assert p.decide(b"mnt", ent(mode=stat.S_IFDIR | 0o755), 0) == core.Decision("skip", "mount point")
    fifo = core.Planner(core.Rule(b"/s", DAY, types=("file", "fifo")), POOL, NOW, DEV)
    assert fifo.decide(b"p", ent(mode=stat.S_IFIFO | 0o644), 0).action == "remove"


def test_dirs_ignore_atime_and_ctime():
    p = planner()
    d = p.decide(b"d", ent(mode=stat.S_IFDIR | 0o755, a=NOW, c=NOW), 0)
    assert d.action == "descend" and d.rmdir
    d = p.decide(b"d", ent(mode=stat.S_IFDIR | 0o755, m=NOW), 0)
    assert d.action == "descend" and not d.rmdir
    d = p.decide(b"d", ent(mode=stat.S_IFDIR | 0o755, uid=0), 0)
    assert d.action == "descend" and not d.rmdir


def test_excludes():
    p = planner(root=b"/s", exclude=[b"/s/keep"], patterns=[b"*.pin", b"/s/a/*/deep"])
    assert p.decide(b"keep", ent(mode=stat.S_IFDIR | 0o755), 0) == core.Decision("keep", "excluded path")
    assert p.decide(b"keep", ent(mode=stat.S_IFDIR | 0o755, uid=0), 0).action == "skip"
    assert p.decide(b"x/y.pin", ent(), 1).reason == "excluded pattern"
    assert p.decide(b"a/b/deep", ent(), 2).reason == "excluded pattern"
    assert p.decide(b"a/b/other", ent(), 2).action == "remove"


def test_recheck():
    p = planner()
    before = ent(ino=5)
    assert p.recheck(before, ent(ino=5)) is None
    assert p.recheck(before, ent(ino=5, uid=0)) == "owner changed"
    assert p.recheck(before, ent(ino=6)) == "replaced"
    assert p.recheck(before, ent(ino=5, dev=9)) == "device changed"
    # another swept uid is still another owner: the batch runs as the one decided on
    assert p.recheck(before, ent(ino=5, uid=47502)) == "owner changed"
    assert p.recheck(before, ent(ino=5, mode=stat.S_IFREG | stat.S_ISVTX | 0o644)) == "sticky bit (opt-out)"
    assert p.recheck(before, ent(ino=5, mode=stat.S_IFLNK | 0o777)) == "replaced"


def _rec(e):
    """An entry as the walker's scanner reports it (core.ENTRY_FIELDS + name_off, name_len, pad)."""
    return (e.st_ino, e.st_dev, e.st_size, e.st_atime, e.st_mtime, e.st_ctime, e.st_mode,
            e.st_uid, e.st_gid, 0, 0, 0)


def test_entry_reads_like_a_stat_result():
    e = core.Entry(_rec(ent(ino=7, uid=47502, size=9, gid=3)))
    assert (e.st_ino, e.st_uid, e.st_size, e.st_gid, e.st_dev) == (7, 47502, 9, 3, DEV)
    assert e.st_mtime == NOW - 10 * DAY and e.st_mode == stat.S_IFREG | 0o644


_KINDS = [stat.S_IFREG, stat.S_IFLNK, stat.S_IFDIR, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR]


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(st.tuples(
           st.sampled_from(_KINDS), st.sampled_from([0o644, 0o1644, 0o4755, 0o700]),
           st.sampled_from([0, 1000, 47501, 47502]), st.sampled_from([NOW - 30 * DAY, NOW - DAY / 2, NOW]),
           st.sampled_from([NOW - 30 * DAY, NOW]), st.sampled_from([NOW - 30 * DAY, NOW]),
           st.sampled_from([DEV, DEV + 1]), st.sampled_from([b"f", b"mnt", b"x.keep", b"lost+found", b"d"])),
           max_size=12),
       prefix=st.sampled_from([b"", b"sub", b"a/b"]), depth=st.integers(0, 3),
       age_by=st.sampled_from(["amc", "am", "m", ""]),
       excl=st.sampled_from([(), ("/s/sub/f",)]), pats=st.sampled_from([(), ("*.keep",)]),
       types=st.sampled_from([("file", "symlink", "dir"), ("symlink", "dir", "fifo")]),
       mounts=st.sampled_from([(), (b"mnt", b"sub/mnt")]))
def test_decide_entries_is_decide_per_entry(entries, prefix, depth, age_by, excl, pats, types, mounts):
    rule = core.Rule(b"/s", 0 if not age_by else DAY, age_by=age_by, exclude=excl, patterns=pats,
                     types=types, max_depth=2)
    p = core.Planner(rule, POOL, NOW, DEV, mounts)
    recs, names = [], []
    for i, (kind, perm, uid, a, m, c, dev, name) in enumerate(entries):
        recs.append(_rec(ent(mode=kind | perm, uid=uid, a=a, m=m, c=c, dev=dev, ino=i)))
        names.append(name)
    got = p.decide_entries(prefix, depth, recs, names)
    want = [p.decide(prefix + b"/" + n if prefix else n, core.Entry(r), depth)
            for r, n in zip(recs, names)]
    assert got == want
    # and decide on an Entry is decide on any stat-like object with the same fields
    for r, n, d in zip(recs, names, want):
        e = core.Entry(r)
        assert p.decide(prefix + b"/" + n if prefix else n, ent(
            mode=e.st_mode, uid=e.st_uid, a=e.st_atime, m=e.st_mtime, c=e.st_ctime, dev=e.st_dev,
            ino=e.st_ino), depth) == d


@settings(max_examples=500, deadline=None)
@given(mode=st.sampled_from([stat.S_IFREG, stat.S_IFLNK, stat.S_IFDIR, stat.S_IFIFO, stat.S_IFSOCK,
                             stat.S_IFCHR, stat.S_IFBLK]),
       perm=st.integers(0, 0o7777), uid=st.sampled_from([0, 1, 1000, 47501, 47502, 47503]),
       a=st.floats(NOW - 100 * DAY, NOW + DAY), m=st.floats(NOW - 100 * DAY, NOW + DAY),
       c=st.floats(NOW - 100 * DAY, NOW + DAY), dev=st.sampled_from([DEV, DEV + 1]),
       age=st.integers(0, 50 * DAY), age_by=st.sampled_from(["amc", "am", "m", "c", "a", "mc"]),
       name=st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b not in (b".", b"..")),
       depth=st.integers(0, 5))
def test_property_never_removes_what_it_must_not(mode, perm, uid, a, m, c, dev, age, age_by, name, depth):
    rule = core.Rule(b"/scratch", age, age_by=age_by)
    p = core.Planner(rule, POOL, NOW, DEV)
    e = ent(mode=mode | perm, uid=uid, a=a, m=m, c=c, dev=dev)
    d = p.decide(name, e, depth)
    assert d.action in ("remove", "descend", "keep", "skip") and d.reason
    if d.action == "remove":
        cutoff = NOW - age
        assert uid in POOL and dev == DEV
        assert mode in (stat.S_IFREG, stat.S_IFLNK)             # default types
        assert not perm & stat.S_ISVTX
        times = {"a": a, "m": m, "c": c}
        assert all(times[k] < cutoff for k in age_by)
    if d.rmdir:
        assert mode == stat.S_IFDIR and uid in POOL and m < NOW - age and dev == DEV
    if dev != DEV:
        assert d.action == "skip"                                # never descends another fs


BASE = """pool: [gxtsw01, 47501, "47510-47520"]
roots:
  - path: {root}
    age: 10d
"""


@pytest.mark.parametrize("root", ["/", "//", "''", "relative/dir", "/tmp/../etc", "/tmp/./x", "/tmp/",
                                  "/tmp//x", "null", "/a\\0b"])
def test_bad_roots_refused(root):
    with pytest.raises(ConfigError):
        parse(BASE.format(root=root if root != "/a\\0b" else '"/a\\0b"'))


@pytest.mark.parametrize("pool", ["[]", "[0]", "[root]", '["0-10"]', '["999-2000"]', "[500]",
                                  '["2000-1000"]', "null", "gxtsw01", '["a:b"]'])
def test_bad_pools_refused(pool):
    text = BASE.format(root="/tmp").replace('[gxtsw01, 47501, "47510-47520"]', pool)
    with pytest.raises(ConfigError):
        parse(text)


def test_resolve_pool_refuses_root_and_empty():
    with pytest.raises(core.ConfigProblem):
        core.resolve_pool(("toor",), lambda n: 0, 1000)           # a name that maps to uid 0
    with pytest.raises(core.ConfigProblem):
        core.resolve_pool(("nosuch",), lambda n: None, 1000)
    assert core.resolve_pool(("47501-47502", "x"), lambda n: 47600, 1000) == {
        47501: None, 47502: None, 47600: "x"}


@pytest.mark.parametrize("text,what", [
    ("pool: [47501]\nroots:\n  - path: /tmp\n    age: 1d\nbogus: 1\n", "unknown key 'bogus'"),
    ("pool: [47501]\nroots:\n  - path: /tmp\n    age: 1d\n  - path: /tmp/x\n    age: 1d\n", "overlap"),
    ("pool: [47501]\nroots:\n  - path: /tmp\n    age: soon\n", "age"),
    ("pool: [47501]\nroots:\n  - path: /tmp\n    age: 1d\n    age_by: amb\n", "age_by"),
    ("pool: [47501]\npool: [47502]\nroots: []\n", "duplicate"),
    ("pool: [47501]\nroots:\n  - path: /tmp\n    age: 1d\n    age: 2d\n", "duplicate"),
    ("pool: &a [47501]\nroots: []\n", "anchors"),
    ("pool: !!seq [47501]\nroots: []\n", "tags"),
    ("state_dir: /s\npool: [47501]\n", "top-level 'state_dir'"),
    ("audit_file: /s\n", "'audit.file'"),
    ("min_uid: 5\n", "'mapping.min_uid'"),
    ("pool: [47501]\nroots: []\n", "roots"),
    ("pool: ['.']\n", "invalid pool account"),
    ("pool: ['.a.b']\n", "invalid pool account"),
])
def test_config_refusals(text, what):
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert what in e.value.what and e.value.line and e.value.line > 8


def test_good_config():
    cfg = parse(BASE.format(root="/scratch") + "  - path: /var/tmp\n    age: 1d12h\n"
                            "    age_by: m\n    types: [file, fifo]\n    exclude: [/var/tmp/keep]\n"
                            "mqueue_dir: /dev/mqueue\ndevshm_dir: /dev/shm\n")
    assert [r.root for r in cfg.rules] == [b"/scratch", b"/var/tmp"]
    assert cfg.rules[1].age == 129600 and cfg.rules[1].age_by == frozenset("m")
    assert cfg.rules[0].age_by == frozenset("amc") and cfg.as_owner == "preferred"


@given(st.text(max_size=20))
def test_parse_age_total(s):
    v = core.parse_age(s)
    assert v is None or (type(v) is int and v >= 0)


def test_ipc_parsing_and_plan():
    shm = ("       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n"
           "         0          5  600                  4096  100   0      0 47501 47501 47501 47501          0          0 1700000000                     0                     0\n"
           "         0          6  600                  4096  100   0      0     0     0 47502     0          0          0 1700000000                     0                     0\n"
           "         0          7  600                  4096  100   0      0     0     0     0     0          0          0 1700000000                     0                     0\n")
    rows = core.parse_sysvipc("shm", shm)
    assert rows == [(5, 47501, 47501), (6, 0, 47502), (7, 0, 0)]
    plan = core.plan_ipc([("shm", *r) for r in rows], POOL)
    assert [(k, i) for k, i, _ in plan] == [("shm", 5), ("shm", 6)]
    assert core.parse_sysvipc("msg", "") == []


def test_account_verdict():
    v = core.account_verdict
    assert v(47501, "a", leases={"a"}, processes=set(), draining=set(), sweep_draining=True) == (False, "active lease")
    assert v(47501, "a", leases={"a"}, processes=set(), draining={"a"}, sweep_draining=True)[0]
    assert not v(47501, "a", leases={"a"}, processes=set(), draining={"a"}, sweep_draining=False)[0]
    assert v(47501, "a", leases=set(), processes={47501}, draining=set(), sweep_draining=True) == (False, "has processes")
    assert v(0, "root", leases=set(), processes=set(), draining=set(), sweep_draining=True)[0] is False


@pytest.mark.parametrize("body", [None, "", "max_runtime: 60\n"])
def test_section_defaults_from_glexec_yaml(body):
    """No section (or one without pool/roots): the gridmapfile's pools (pool None, resolved
    at run time), /tmp and /var/tmp at 10 days, glexec.yaml's state_dir, audit file,
    gridmapdir and min_uid."""
    cfg = parse(body, gridmapdir="/gmd", min_uid=3000, state_dir="/st", audit_file="/a.jsonl")
    assert cfg.pool is None and [r.root for r in cfg.rules] == [b"/tmp", b"/var/tmp"]
    assert all(r.age == 10 * 86400 for r in cfg.rules)
    assert (cfg.state_dir, cfg.audit_file, cfg.gridmapdir, cfg.min_uid, cfg.gridmapfile) == (
        "/st", "/a.jsonl", "/gmd", 3000, "/etc/grid-security/grid-mapfile")


def test_prefix_pools_resolve_to_their_accounts():
    accounts = {"gxt": {47501: "gxt01", 47502: "gxt02"}, "sys": {999: "sys1"}}
    got = core.resolve_pool((".gxt",), lambda n: None, 1000, lambda p: accounts.get(p, {}))
    assert got == {47501: "gxt01", 47502: "gxt02"}
    with pytest.raises(core.ConfigProblem, match="no accounts"):
        core.resolve_pool((".none",), lambda n: None, 1000, lambda p: accounts.get(p, {}))
    with pytest.raises(core.ConfigProblem, match="below min_uid"):
        core.resolve_pool((".sys",), lambda n: None, 1000, lambda p: accounts.get(p, {}))
