"""Stateful property test of the lease store on a real temp gridmapdir against an in-memory
model (issue 4 items 4/5): acquire / reuse / release / drain / external release (a cron
cleaner or LCMAPS, behind the index's back) / crash at step k of a grant (forked child
killed with _exit at its k-th write-path system call) / repair.  After every step:
the on-disk leases equal the model, bijection identity <-> account, no link count > 2;
compat mode: a new lease gets the first free entry in readdir order."""
import os
import shutil

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from glexec_py.core.leases import lease_name
from glexec_py.effects.gridmapdir import GridmapDir
from glexec_py.errors import NotAuthorized
from tests.leases.conftest import make_base, make_pool
from tests.leases.invariants import lease_map, owner_map

POOL = b"gxtpool"
DNS = [b"/C=NL/O=Example Grid/CN=Stateful %d" % i for i in range(6)]
HOOKED = ("link", "rename", "fsync", "unlink", "pwrite", "write", "utime", "ftruncate")


def _crash_child(gmd, dn, k):
    """In a forked child: acquire with os functions counting; _exit(9) at call k (no
    cleanup of any kind runs, like SIGKILL)."""
    pid = os.fork()
    if pid == 0:
        try:
            count = [0]

            def wrap(f):
                def w(*a, **kw):
                    count[0] += 1
                    if count[0] == k:
                        os._exit(9)
                    return f(*a, **kw)
                return w
            for name in HOOKED:
                setattr(os, name, wrap(getattr(os, name)))
            GridmapDir(gmd).acquire(dn, POOL)
            os._exit(0)
        except BaseException:       # noqa: BLE001
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


class LeaseStore(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.base = make_base()
        self.gmd = os.path.join(self.base, "gmd")
        os.mkdir(self.gmd, 0o755)
        make_pool(self.gmd, "gxtpool", 4)
        self.order = [os.fsencode(n) for n in os.listdir(self.gmd)]
        self.g = GridmapDir(self.gmd, pools=[POOL])
        self.model = {}            # lease -> account
        self.draining = set()      # leases
        self.dirty = False         # a crash happened: repair before asserting metadata

    def teardown(self):
        self.g.close()
        shutil.rmtree(self.base, ignore_errors=True)

    @rule(i=st.integers(0, 5))
    def acquire(self, i):
        lease = lease_name(DNS[i])
        free = [a for a in self.order if a not in self.model.values()]
        try:
            acc, got, reused = self.g.acquire(DNS[i], POOL)
        except NotAuthorized as e:
            if lease in self.draining:
                assert e.reason == "lease_draining"
            else:
                assert e.reason == "pool_exhausted" and lease not in self.model and not free
            return
        assert got == lease and lease not in self.draining
        if lease in self.model:
            assert (acc, reused) == (self.model[lease], True)   # same identity, same account
        else:
            assert not reused and acc == free[0]                # readdir order (compat)
            self.model[lease] = acc

    @rule(i=st.integers(0, 5))
    def release(self, i):
        lease = lease_name(DNS[i])
        assert self.g.release(lease) == self.model.pop(lease, None)
        self.draining.discard(lease)

    @rule(i=st.integers(0, 5))
    def drain(self, i):
        lease = lease_name(DNS[i])
        assert self.g.drain(lease) == self.model.get(lease)
        if lease in self.model:
            self.draining.add(lease)

    @rule(i=st.integers(0, 5))
    def external_release(self, i):
        """A cron cleaner unlinks the lease without our lock or index."""
        lease = lease_name(DNS[i])
        if lease in self.model:
            os.unlink(os.path.join(self.gmd, os.fsdecode(lease)))
            del self.model[lease]
            self.draining.discard(lease)
            self.dirty = True          # its metadata is now a meta_orphan

    @rule(i=st.integers(0, 5), k=st.integers(1, 8))
    def crash_during_grant(self, i, k):
        lease = lease_name(DNS[i])
        if lease in self.model or lease in self.draining:
            return
        _crash_child(self.gmd, DNS[i], k)
        self.dirty = True
        # whatever the crash left: a complete LCMAPS lease (kept) or nothing/solitary
        self.repair()
        now = lease_map(self.gmd, POOL)
        if lease in now:
            self.model[lease] = now[lease]

    @rule()
    def repair(self):
        self.g.repair(self.g.fsck())
        assert self.g.fsck() == []
        self.dirty = False

    @invariant()
    def on_disk_equals_model(self):
        assert lease_map(self.gmd, POOL) == self.model
        if not self.dirty:
            assert [f for f in self.g.fsck() if f.severity != "info"] == []


LeaseStore.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                        suppress_health_check=list(HealthCheck))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (root-owned gridmapdir)")
class TestLeaseStore(LeaseStore.TestCase):
    pass


# --- owners: one identity <-> one account by canonical identity ------------------------------

def _owned(texts):
    """(text, LeaseOwner) per identity as the engine builds them (tests/leases/test_owner.py)."""
    from glexec_py.core import dn as D
    from glexec_py.core.identity import Identity
    from glexec_py.core.mapping import lease_owner as _lease_owner
    out = []
    for t in texts:
        dn = D.parse_canonical(t)
        ident = Identity("x509", "/CN=CA", D.oneline(dn), (), (), 0, 0, "", {},
                         canonical=D.canonical(dn))
        out.append((ident.mapping_name, _lease_owner(ident, ident.mapping_name)))
    return out


# case variants, a '/' inside a value vs two RDNs, a \xHH text vs the raw byte: all six
# share LCMAPS names in pairs or triples
OWNED = _owned(["/DC=org/CN=Alice", "/DC=org/CN=alice", "/DC=org/CN=ALICE",
                "/DC=org/CN=a\\5C/CN=b", "/DC=org/CN=a\\2FCN\\3Db",
                "/DC=org/CN=Ren\u00e9", "/DC=org/CN=Ren\\5CxC3\\5CxA9"])


class OwnedLeaseStore(RuleBasedStateMachine):
    """The engine's way (owners recorded) on colliding identities, with LCMAPS-made leases,
    releases by name, drains, external releases and crashes in between."""

    def __init__(self):
        super().__init__()
        self.base = make_base()
        self.gmd = os.path.join(self.base, "gmd")
        os.mkdir(self.gmd, 0o755)
        make_pool(self.gmd, "gxtpool", 5)
        self.order = [os.fsencode(n) for n in os.listdir(self.gmd)]
        self.g = GridmapDir(self.gmd, pools=[POOL])
        self.mine = {}             # identity index -> (lease, account)
        self.unowned = {}          # lease -> account (LCMAPS-made, or left by a crash)
        self.draining = set()      # identity indexes

    def teardown(self):
        self.g.close()
        shutil.rmtree(self.base, ignore_errors=True)

    def _taken(self):
        return set(a for _, a in self.mine.values()) | set(self.unowned.values())

    @rule(i=st.integers(0, len(OWNED) - 1))
    def acquire(self, i):
        text, owner = OWNED[i]
        free = [a for a in self.order if a not in self._taken()]
        try:
            acc, lease, reused = self.g.acquire(text, POOL, owner=owner)
        except NotAuthorized as e:
            if i in self.draining:
                assert e.reason == "lease_draining"
            else:
                assert e.reason == "pool_exhausted" and i not in self.mine and not free
            return
        assert i not in self.draining
        if i in self.mine:
            assert (lease, acc, reused) == (*self.mine[i], True)   # its own account back
            return
        assert not reused and acc == free[0] and acc not in self._taken()
        plain = lease_name(text)
        on_disk = plain in lease_map(self.gmd, POOL) and lease != plain
        assert lease == plain or on_disk or self.unowned.get(plain) is not None
        self.mine[i] = (lease, acc)

    @rule(i=st.integers(0, len(OWNED) - 1))
    def release(self, i):
        if i in self.mine:
            lease, acc = self.mine.pop(i)
            assert self.g.release(lease) == acc
            self.draining.discard(i)

    @rule(i=st.integers(0, len(OWNED) - 1))
    def drain(self, i):
        if i in self.mine:
            assert self.g.drain(self.mine[i][0]) == self.mine[i][1]
            self.draining.add(i)

    @rule(i=st.integers(0, len(OWNED) - 1))
    def lcmaps_lease(self, i):
        """LCMAPS (no lock, no record) maps identity i's text: it reuses whatever holds the
        name, or links the first free entry."""
        text, _ = OWNED[i]
        plain = lease_name(text)
        if plain in lease_map(self.gmd, POOL):
            return
        free = [a for a in self.order if a not in self._taken()]
        if not free:
            return
        os.link(os.path.join(self.gmd, os.fsdecode(free[0])),
                os.path.join(self.gmd, os.fsdecode(plain)))
        self.unowned[plain] = free[0]

    @rule(i=st.integers(0, len(OWNED) - 1))
    def external_release(self, i):
        """A cron cleaner unlinks identity i's lease behind our back (its record stays)."""
        if i in self.mine and i not in self.draining:
            lease, acc = self.mine.pop(i)
            os.unlink(os.path.join(self.gmd, os.fsdecode(lease)))
            self.g.repair(self.g.fsck())

    @invariant()
    def one_identity_one_account(self):
        owners = owner_map(self.gmd, POOL)
        want = {(OWNED[i][1].key, (), 0): acc for i, (_, acc) in self.mine.items()}
        assert owners == want
        leases = lease_map(self.gmd, POOL)
        assert {l: a for l, a in leases.items() if l in self.unowned} == self.unowned
        assert not [f for f in self.g.fsck() if f.severity != "info"]


OwnedLeaseStore.TestCase.settings = settings(max_examples=40, stateful_step_count=25,
                                             deadline=None,
                                             suppress_health_check=list(HealthCheck))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (root-owned gridmapdir)")
class TestOwnedLeaseStore(OwnedLeaseStore.TestCase):
    pass
