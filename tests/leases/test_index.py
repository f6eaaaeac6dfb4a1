"""The sidecar index (.glexec-py/.index, .state) is a hint: external changes are noticed,
a corrupt or lying state never causes a wrong answer, and the account check refuses with
nothing left behind."""
import json
import os
import zlib

import pytest

from glexec_py.effects.gridmapdir import GridmapDir
from glexec_py.errors import NotAuthorized, SystemFault
from tests.leases.conftest import make_pool
from tests.leases.invariants import lease_map

DN = [b"/C=NL/O=Example Grid/CN=Index %d" % i for i in range(20)]


def test_external_release_noticed(gmd):
    make_pool(gmd, "gxtpool", 8)
    order = [os.fsencode(n) for n in os.listdir(gmd)]
    with GridmapDir(gmd) as g:
        leases = [g.acquire(DN[i], b"gxtpool")[1] for i in range(5)]
        os.unlink(os.path.join(gmd, os.fsdecode(leases[1])))    # cron cleaner, no lock
        assert g.acquire(DN[10], b"gxtpool")[0] == order[1]     # LCMAPS's choice too
        g.release(leases[0])
        assert g.acquire(DN[11], b"gxtpool")[0] == order[0]
    lease_map(gmd)


def test_lying_or_corrupt_state_is_harmless(gmd):
    make_pool(gmd, "gxtpool", 4)
    sp = os.path.join(gmd, ".glexec-py", ".state")
    with GridmapDir(gmd) as g:
        g.acquire(DN[0], b"gxtpool")
        rec = json.loads(open(sp, "rb").read().split(b" ", 1)[1])
        rec["cur"]["gxtpool"] = 99                       # claims: nothing free
        body = json.dumps(rec, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        open(sp, "wb").write(b"%08x %s" % (zlib.crc32(body), body))
        assert g.acquire(DN[1], b"gxtpool")[2] is False  # full rescan before "exhausted"
        open(sp, "wb").write(b"garbage")
        assert g.acquire(DN[2], b"gxtpool")[2] is False
        os.unlink(os.path.join(gmd, ".glexec-py", ".index"))
        assert g.acquire(DN[3], b"gxtpool")[2] is False
        with pytest.raises(NotAuthorized):
            g.acquire(DN[4], b"gxtpool")
        assert g.fsck() == []
    assert len(lease_map(gmd)) == 4


def test_account_check_refuses_with_nothing_left(gmd):
    make_pool(gmd, "gxtpool", 2)
    before = sorted(n for n in os.listdir(gmd) if not n.startswith("."))

    def check(name):
        raise SystemFault("target_unsafe", "glexec: mapped account does not exist",
                          account=name)
    with GridmapDir(gmd) as g:
        with pytest.raises(SystemFault) as ei:
            g.acquire(DN[0], b"gxtpool", account_check=check)
        assert ei.value.reason == "target_unsafe"
        assert sorted(n for n in os.listdir(gmd) if not n.startswith(".")) == before
        assert lease_map(gmd) == {}
        acc, lease, _ = g.acquire(DN[0], b"gxtpool")
        with pytest.raises(SystemFault):                 # checked on reuse too
            g.acquire(DN[0], b"gxtpool", account_check=check)
        assert g.fsck() == []


def test_index_off_same_choices(gmd):
    make_pool(gmd, "gxtpool", 6)
    order = [os.fsencode(n) for n in os.listdir(gmd)]
    with GridmapDir(gmd) as g, GridmapDir(gmd, index=False) as h:
        got = [(g if i % 2 else h).acquire(DN[i], b"gxtpool")[0] for i in range(6)]
    assert got == order          # indexed and plain scans interleaved: readdir order
