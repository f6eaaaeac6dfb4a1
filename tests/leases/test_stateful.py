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
from tests.leases.invariants import lease_map

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
