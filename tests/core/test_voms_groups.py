"""LCMAPS voms_localgroup rules (pure): FQAN -> group via a groupmapfile, the first FQAN's
group is the primary gid, later ones are secondary; -mapall / -mapmin; lease names with
groups and mapcount; the new mapping.* config keys."""
import pytest

from glexec_py.core import gridmap
from glexec_py.core.config import parse_config
from glexec_py.core.leases import lease_name
from glexec_py.errors import ConfigError

GROUPMAP = (b'"/testvo/prod/Role=pilot/Capability=NULL" lcmprod\n'
            b'"/testvo/dots/*" .somepool\n'
            b'"/testvo/*" lcmvo\n'
            b'"/other/x" lcmother\n')
GIDS = {b"lcmprod": 7200, b"lcmvo": 7300, b"lcmother": 7400}
VO = b"/testvo/Role=NULL/Capability=NULL"
PROD = b"/testvo/prod/Role=pilot/Capability=NULL"
JANE = b"/C=NL/O=Example Grid/OU=Users/CN=Jane Doe"


def lines(data=GROUPMAP):
    return gridmap.parse_gridmap(data, "groupmapfile")


def resolve(name):
    if name not in GIDS:
        raise LookupError(name)
    return GIDS[name]


def run(fqans, **kw):
    return gridmap.voms_localgroup(lines(), fqans, resolve, **kw)


def test_first_fqan_is_primary_later_ones_secondary():
    # the reference recipe's proxy: /testvo first -> lcmvo primary, prod second -> secondary
    assert run([VO, PROD]) == (((b"lcmvo", 7300),), ((b"lcmprod", 7200),))
    assert run([PROD, VO]) == (((b"lcmprod", 7200),), ((b"lcmvo", 7300),))


def test_no_group_for_the_first_fqan_means_no_primary():
    primary, secondary = run([b"/nogroup/x", VO, PROD])
    assert primary == () and secondary == ((b"lcmvo", 7300), (b"lcmprod", 7200))


def test_duplicates_kept_in_order():
    _, secondary = run([VO, b"/testvo/a/Role=NULL/Capability=NULL", PROD, b"/testvo/b"])
    assert [n for n, _ in secondary] == [b"lcmvo", b"lcmprod", b"lcmvo"]


def test_wildcards_and_first_non_dot_mapping():
    # "/testvo/dots/*" has only a pool mapping: passed over, "/testvo/*" matches instead
    assert run([b"/testvo/dots/x"])[0] == ((b"lcmvo", 7300),)
    # "/testvo/*" does not match "/testvo" itself (fnmatch, LCMAPS)
    assert run([b"/testvo"]) == ((), ())


def test_missing_group_fails():
    data = GROUPMAP + b'"/gone/*" nosuchgroup\n'
    with pytest.raises(LookupError):
        gridmap.voms_localgroup(lines(data), [VO, b"/gone/x"], resolve)


def test_no_fqans_fails():
    with pytest.raises(gridmap.GroupMapRefused) as e:
        run([])
    assert e.value.reason == "no_voms_groups"


def test_mapall():
    assert run([VO, PROD], mapall=True)[0]
    with pytest.raises(gridmap.GroupMapRefused) as e:
        run([VO, b"/unmapped/x"], mapall=True)
    assert e.value.reason == "voms_group_unmapped"
    assert run([VO, b"/unmapped/x"]) == (((b"lcmvo", 7300),), ())


def test_mapmin():
    assert run([VO, PROD], mapmin=2)
    with pytest.raises(gridmap.GroupMapRefused) as e:
        run([VO, b"/unmapped/x"], mapmin=2)
    assert e.value.reason == "voms_groups_too_few"
    assert run([b"/unmapped/x"], mapmin=0) == ((), ())


def test_lease_names_as_lcmaps():
    base = "%2fc%3dnl%2fo%3dexample%20grid%2fou%3dusers%2fcn%3djane%20doe"
    assert lease_name(JANE, (b"lcmvo",)).decode() == base + ":lcmvo"
    assert lease_name(JANE, (b"lcmprod", b"lcmvo")).decode() == base + ":lcmprod:lcmvo"
    assert lease_name(JANE, (b"lcmvo",), 2).decode() == base + ":lcmvo:mapcount=0002"
    assert lease_name(JANE, (), 2).decode() == base + ":mapcount=0002"


BASE = "state_dir: /s\ncredentials:\n  ca_dir: /c\naudit:\n  file: /a\nmapping:\n  gridmapfile: /g\n"


def test_config_defaults():
    m = parse_config(BASE, "glexec.yaml").mapping
    assert (m.groupmapfile, m.groupmap_min, m.groupmap_all, m.lease_secondary_groups,
            m.max_mappings_per_credential) == ("", 0, False, True, 1)


def test_config_values():
    m = parse_config(BASE + "  groupmapfile: /etc/groupmap\n  groupmap_min: 2\n  groupmap_all: true\n"
                     "  lease_secondary_groups: false\n  max_mappings_per_credential: 9999\n",
                     "glexec.yaml").mapping
    assert (m.groupmapfile, m.groupmap_min, m.groupmap_all, m.lease_secondary_groups,
            m.max_mappings_per_credential) == ("/etc/groupmap", 2, True, False, 9999)


@pytest.mark.parametrize("extra", ["  groupmapfile: rel/path\n", "  max_mappings_per_credential: 0\n",
                                   "  max_mappings_per_credential: 10000\n", "  groupmap_min: -1\n",
                                   "  groupmap_all: 1\n"])
def test_config_refused(extra):
    with pytest.raises(ConfigError):
        parse_config(BASE + extra, "glexec.yaml")


# --- the name-service side (effects.accounts), with groups every Debian system has -------

class _M:
    forbidden_groups = ("sudo", "adm")


def test_lookup_voms_group_rules():
    from glexec_py.effects.accounts import lookup_voms_group, with_voms_groups, Account
    from glexec_py.errors import SystemFault
    import grp
    assert lookup_voms_group(b"daemon", _M) == grp.getgrnam("daemon").gr_gid
    for name, reason in ((b"gxtnosuchgroup", "group_missing"), (b"root", "target_unsafe"),
                         (b"adm", "target_unsafe"), (b"a:b", "groupmap_invalid"), (b"", "groupmap_invalid"),
                         (b"a/b", "groupmap_invalid"), (b"\xc3\xa9", "groupmap_invalid")):
        with pytest.raises(SystemFault) as e:
            lookup_voms_group(name, _M)
        assert e.value.reason == reason, name
    a = Account("x", 5000, 5000, "x", (5000, 7), ("x", "y"), "/h")
    b = with_voms_groups(a, 2, (1, 2, 1))
    assert (b.name, b.uid, b.gid, b.groups, b.home) == ("x", 5000, 2, (2, 1), "/h")
