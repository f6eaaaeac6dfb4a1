"""The lease-store contract the engine relies on, run against BOTH backends (the
gridmapdir on a root-owned temp directory, and PostgreSQL 15 started by the test run):
the owner rule of test_owner.py, the per-caller limit of test_caller_limit.py, draining,
exhaustion, the account check and PAM's entry filter, rollback, release -- each with the
store's own view of "nothing left behind" (the directory listing / the SQL invariants).
Plus a stateful model test of the PostgreSQL store with grants killed at every statement.
"""
import os
import shutil
import signal
import time

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from glexec_py.core import dn as D
from glexec_py.core.identity import Identity
from glexec_py.core.leases import lease_name
from glexec_py.effects.gridmapdir import GridmapDir
from glexec_py.core.mapping import lease_owner as _lease_owner
from glexec_py.errors import NotAuthorized, SystemFault
from tests.leases import pg_invariants
from tests.leases.conftest import make_base, make_pool
from tests.leases.invariants import owner_map
from tests.support.postgres import postgres  # noqa: F401  (session fixture)

POOL = b"gxtpool"
PILOT_A, PILOT_B = 47001, 47003


def owned(text):
    dn = D.parse_canonical(text)
    ident = Identity("x509", "/CN=CA", D.oneline(dn), (), (), 0, 0, "", {}, canonical=D.canonical(dn))
    return ident.mapping_name, _lease_owner(ident, ident.mapping_name)


# case variants and a '/' inside a value: LCMAPS names collide in pairs
ALICE, ALICE_LOW, ALICE_UP, SLASH1, SLASH2 = (owned(t) for t in (
    "/DC=org/CN=Alice", "/DC=org/CN=alice", "/DC=org/CN=ALICE", "/DC=org/CN=a\\5C/CN=b",
    "/DC=org/CN=a\\2FCN\\3Db"))
USERS = [owned("/DC=org/DC=quota/CN=User %d" % i) for i in range(12)]


class GridmapBackend:
    name = "gridmapdir"

    def __init__(self):
        self.base = make_base()
        self.gmd = os.path.join(self.base, "gmd")
        os.mkdir(self.gmd, 0o755)

    def pool(self, n):
        make_pool(self.gmd, "gxtpool", n)

    def open(self):
        return GridmapDir(self.gmd, pools=[POOL])

    def owners(self):
        return {k[0]: a.decode() for k, a in owner_map(self.gmd, POOL).items()}

    def close(self):
        shutil.rmtree(self.base, ignore_errors=True)


class PgBackend:
    name = "postgresql"

    def __init__(self, cluster):
        self.conninfo = cluster.conninfo(cluster.fresh_db())

    def pool(self, n):
        with self.open() as s:
            s.add_accounts("gxtpool", [f"gxtpool{i:03d}" for i in range(1, n + 1)])

    def open(self):
        from glexec_py.effects.pgleases import PgLeaseStore
        return PgLeaseStore(self.conninfo, node="test-node")

    def owners(self):
        return {k[0]: a for k, a in pg_invariants.check(self.conninfo).items()}

    def close(self):
        pass


@pytest.fixture(params=["gridmapdir", "postgresql"])
def backend(request):
    if os.geteuid() != 0:
        pytest.skip("lease-store tests need root")
    b = GridmapBackend() if request.param == "gridmapdir" else PgBackend(request.getfixturevalue("postgres"))
    try:
        yield b
    finally:
        b.close()


def test_one_identity_one_account_and_case_variants_apart(backend):
    backend.pool(6)
    with backend.open() as s:
        got = {}
        for who in (ALICE, ALICE_LOW, ALICE_UP, SLASH1, SLASH2):
            acc, lease, reused = s.acquire(who[0], POOL, owner=who[1])
            assert not reused
            got[who[1].key] = (acc, lease)
        assert len({a for a, _ in got.values()}) == 5            # five identities, five accounts
        assert got[ALICE[1].key][1] == lease_name(ALICE[0])        # the first keeps LCMAPS's name
        assert got[ALICE_LOW[1].key][1].startswith(lease_name(ALICE[0]) + b"~")
        for who in (ALICE_UP, ALICE, SLASH2):                      # each gets its own back
            assert s.acquire(who[0], POOL, owner=who[1]) == (*got[who[1].key], True)
    assert backend.owners() == {k: a.decode() for k, (a, _) in got.items()}


def test_caller_limit_counts_live_new_leases_of_one_caller(backend):
    backend.pool(6)
    with backend.open() as s:
        for i in range(3):
            assert s.acquire(USERS[i][0], POOL, owner=USERS[i][1], caller=PILOT_A, caller_limit=3)[2] is False
        before = backend.owners()
        with pytest.raises(NotAuthorized) as e:
            s.acquire(USERS[3][0], POOL, owner=USERS[3][1], caller=PILOT_A, caller_limit=3)
        assert e.value.reason == "caller_lease_limit" and e.value.detail["live"] == 3
        assert backend.owners() == before                          # nothing left behind
        assert s.acquire(USERS[0][0], POOL, owner=USERS[0][1], caller=PILOT_A, caller_limit=3)[2] is True
        assert s.acquire(USERS[4][0], POOL, owner=USERS[4][1], caller=PILOT_B, caller_limit=3)[2] is False
        s.drain(s.acquire(USERS[1][0], POOL, owner=USERS[1][1])[1])   # draining: no longer live
        assert s.acquire(USERS[3][0], POOL, owner=USERS[3][1], caller=PILOT_A, caller_limit=3)[2] is False


def test_draining_is_refused_and_release_frees(backend):
    backend.pool(2)
    with backend.open() as s:
        acc, lease, _ = s.acquire(USERS[0][0], POOL, owner=USERS[0][1])
        assert s.drain(lease) == acc
        with pytest.raises(NotAuthorized) as e:
            s.acquire(USERS[0][0], POOL, owner=USERS[0][1])
        assert e.value.reason == "lease_draining"
        assert s.acquire(USERS[1][0], POOL, owner=USERS[1][1])[0] != acc    # not handed out
        with pytest.raises(NotAuthorized) as e:
            s.acquire(USERS[2][0], POOL, owner=USERS[2][1])
        assert e.value.reason == "pool_exhausted"
        assert s.release(lease) == acc and s.release(lease) is None
        assert s.acquire(USERS[2][0], POOL, owner=USERS[2][1])[0] == acc


def test_account_check_and_entry_filter(backend):
    backend.pool(3)
    with backend.open() as s:
        def refuse(name):
            raise NotAuthorized("target_uid", "no", account=name)
        with pytest.raises(NotAuthorized):
            s.acquire(USERS[0][0], POOL, owner=USERS[0][1], account_check=refuse)
        assert backend.owners() == {}                              # nothing left behind
        seen = []
        acc, _, _ = s.acquire(USERS[0][0], POOL, owner=USERS[0][1],
                              entry_filter=lambda n: seen.append(n) or len(seen) > 1)
        assert len(seen) == 2 and acc.decode() == seen[1] != seen[0]   # the refused one skipped
        intents = []
        s.acquire(USERS[1][0], POOL, owner=USERS[1][1], before_link=intents.append)
        assert intents == [lease_name(USERS[1][0])]


def test_rollback_only_an_unused_new_lease(backend):
    backend.pool(3)
    with backend.open() as s:
        s.acquire(USERS[0][0], POOL, owner=USERS[0][1])
        first = s.created
        s.acquire(USERS[1][0], POOL, owner=USERS[1][1])
        second = s.created
        s.acquire(USERS[1][0], POOL, owner=USERS[1][1])           # used again meanwhile
        assert s.rollback(first) is True
        assert s.rollback(second) is False
    assert list(backend.owners()) == [USERS[1][1].key]


# --- the PostgreSQL store only: the database enforces the bijection --------------------------

@pytest.fixture
def pg(postgres):  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("needs root")
    b = PgBackend(postgres)
    b.pool(4)
    return b


def test_database_refuses_a_second_account_for_an_identity_and_a_half_lease(pg):
    from glexec_py.effects.pgclient import Connection, DbError
    with pg.open() as s:
        acc, lease, _ = s.acquire(USERS[0][0], POOL, owner=USERS[0][1])
    with Connection(pg.conninfo) as db:
        row = db.query("SELECT pool, owner, groups, mapcount FROM lease")[0]
        tries = [  # a second account for the same identity (names differ, account free)
            ("BEGIN", ()), ("UPDATE pool_account SET state='leased' WHERE account='gxtpool002'", ()),
            ("INSERT INTO lease (account, pool, state, name, owner, groups, mapcount, made_by, node) "
             "VALUES ('gxtpool002', $1, 'leased', '\\x6f74686572', $2, $3, $4, 'x', 'x')", row)]
        with pytest.raises(DbError) as e:
            for sql, params in tries:
                db.query(sql, params)
        assert e.value.sqlstate == "23505"
        db.query("ROLLBACK")
        for half in ("UPDATE pool_account SET state='leased' WHERE account='gxtpool003'",   # no lease
                     f"DELETE FROM lease WHERE account='{acc.decode()}'"):               # account stays leased
            db.query("BEGIN")
            db.query(half)
            with pytest.raises(DbError) as e:
                db.query("COMMIT")
            assert e.value.sqlstate in ("23000", "23503")
    assert pg.owners() == {USERS[0][1].key: acc.decode()}


def test_unreachable_database_is_202_in_bounded_time(postgres):  # noqa: F811
    from glexec_py.effects.pgleases import PgLeaseStore
    import socket
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        sk.listen(1)                 # accepts the TCP connection, never answers: a hung server
        port = sk.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(SystemFault) as e:
            PgLeaseStore(f"hostaddr=127.0.0.1 port={port} user=postgres dbname=x", node="n",
                         connect_timeout=1, timeout=0.5)
        took = time.monotonic() - t0
    assert e.value.exit_code == 202 and e.value.reason == "lease_db" and 0.9 < took < 1.6
    t0 = time.monotonic()
    with pytest.raises(SystemFault) as e:          # nobody listening: refused at once
        PgLeaseStore(f"hostaddr=127.0.0.1 port={port} user=postgres dbname=x", node="n", connect_timeout=1)
    assert e.value.reason == "lease_db" and time.monotonic() - t0 < 0.5


def test_a_stalled_database_is_202_within_the_statement_timeout(pg):
    """The connection's server process stops (SIGSTOP) between two grants: the next grant
    fails 202 within ``timeout``, and nothing was granted."""
    from glexec_py.effects.pgleases import PgLeaseStore
    s = PgLeaseStore(pg.conninfo, node="n", timeout=0.5)
    s.acquire(USERS[0][0], POOL, owner=USERS[0][1])
    backend_pid = int(s.db.query("SELECT pg_backend_pid()")[0][0])
    def no_deadline(*_):
        raise AssertionError("the grant waited past its deadline")
    old = signal.signal(signal.SIGALRM, no_deadline)
    os.kill(backend_pid, signal.SIGSTOP)
    try:
        signal.alarm(3)                # a watchdog: without the deadline the call would hang
        t0 = time.monotonic()
        with pytest.raises(SystemFault) as e:
            s.acquire(USERS[1][0], POOL, owner=USERS[1][1])
        took = time.monotonic() - t0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.kill(backend_pid, signal.SIGCONT)
    s.close()
    assert e.value.exit_code == 202 and 0.45 < took < 1.0
    assert list(pg.owners()) == [USERS[0][1].key]


def test_a_wrong_schema_version_is_refused(pg):
    from glexec_py.effects.pgclient import Connection
    from glexec_py.effects.pgleases import PgLeaseStore
    with Connection(pg.conninfo) as db:
        db.query("INSERT INTO glexec_schema VALUES (3)")         # a later, unknown version
    with pytest.raises(SystemFault) as e:
        PgLeaseStore(pg.conninfo, node="n")
    assert e.value.reason == "lease_db_schema"
    with Connection(pg.conninfo) as db:
        db.query("DELETE FROM glexec_schema WHERE version >= 2")  # version 1: still served
    with PgLeaseStore(pg.conninfo, node="n") as s:
        assert s.acquire(USERS[0][0], POOL, owner=USERS[0][1])[2] is False


# --- stateful: grants killed at their k-th statement ------------------------------------------


def _killed_grant(conninfo, who, k):
    """A forked child grants for ``who`` and dies (_exit, no cleanup) at its k-th statement."""
    pid = os.fork()
    if pid == 0:
        try:
            from glexec_py.effects import pgclient
            from glexec_py.effects.pgleases import PgLeaseStore
            real = pgclient.Connection.query
            count = [0]

            def query(self, *a, **kw):
                count[0] += 1
                if count[0] == k:
                    os._exit(9)
                return real(self, *a, **kw)
            pgclient.Connection.query = query
            PgLeaseStore(conninfo, node="killed").acquire(who[0], POOL, owner=who[1])
            os._exit(0)
        except BaseException:   # noqa: BLE001
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


class PgLeaseModel(RuleBasedStateMachine):
    CLUSTER = None
    WHO = [ALICE, ALICE_LOW, ALICE_UP, SLASH1, SLASH2, USERS[0]]

    def __init__(self):
        super().__init__()
        self.b = PgBackend(self.CLUSTER)
        self.b.pool(4)
        self.s = self.b.open()
        self.mine = {}          # identity index -> account
        self.draining = set()

    def teardown(self):
        self.s.close()

    @rule(i=st.integers(0, 5))
    def acquire(self, i):
        who = self.WHO[i]
        try:
            acc, _, reused = self.s.acquire(who[0], POOL, owner=who[1])
        except NotAuthorized as e:
            assert e.reason == ("lease_draining" if i in self.draining else "pool_exhausted")
            assert i in self.draining or (i not in self.mine and len(self.mine) == 4)
            return
        assert reused == (i in self.mine) and self.mine.setdefault(i, acc.decode()) == acc.decode()

    @rule(i=st.integers(0, 5), k=st.integers(2, 12))
    def killed_grant(self, i, k):
        code = _killed_grant(self.b.conninfo, self.WHO[i], k)
        now = {key: a for key, a in self.b.owners().items()}
        key = self.WHO[i][1].key
        if code == 0 or key in now:      # it got as far as its commit (or had it already)
            if key in now and i not in self.mine:
                self.mine[i] = now[key]

    @rule(i=st.integers(0, 5))
    def drain(self, i):
        if i in self.mine:
            self.s.drain(self.s.acquire(self.WHO[i][0], POOL, owner=self.WHO[i][1])[1]) \
                if i not in self.draining else None
            self.draining.add(i)

    @rule(i=st.integers(0, 5))
    def release(self, i):
        if i in self.mine:
            leases = {rec["owner"][1]: name for name, (_, rec, _) in self.s.leases().items()}
            assert self.s.release(leases[self.WHO[i][1].key[1]]).decode() == self.mine.pop(i)
            self.draining.discard(i)

    @invariant()
    def database_equals_model(self):
        assert self.b.owners() == {self.WHO[i][1].key: a for i, a in self.mine.items()}


PgLeaseModel.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None,
                                          suppress_health_check=list(HealthCheck))


@pytest.fixture
def model_cluster(postgres):  # noqa: F811
    PgLeaseModel.CLUSTER = postgres
    yield


@pytest.mark.usefixtures("model_cluster")
class TestPgLeaseModel(PgLeaseModel.TestCase):
    pass


def test_server_notices_never_reach_stderr(pg):
    """libpq prints server notices (WARNING: there is already a transaction in progress)
    on stderr by default; the engine's caller must only ever see glexec's one line."""
    import subprocess
    import sys
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from glexec_py.effects.pgclient import Connection\n"
            "c = Connection(%r)\n"
            "c.query('BEGIN'); c.query('BEGIN'); c.query('COMMIT'); c.query('COMMIT')\n"
            "c.query(\"DO $$ BEGIN RAISE WARNING 'w'; END $$\")\n" % (os.getcwd(), pg.conninfo))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr


# --- test_owner.py's adversarial identity pairs, on the PostgreSQL store ----------------------

_EXAMPLE = [0]


@pytest.fixture(scope="module")
def pg_owner_db(postgres):  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("needs root")
    return PgBackend(postgres)


def test_distinct_identities_never_share_an_account_postgresql(pg_owner_db):
    """test_owner.py's property (pairs of identities whose DN texts or LCMAPS names collide:
    case, '/' inside a value, multi-valued RDNs, \\xHH escapes vs raw bytes, token case and
    commas), with groups and mapcount, on the database: never one account for two
    identities, always the same account back for one."""
    from hypothesis import given, note, settings as hsettings, strategies as hst
    from tests.leases.test_owner import identity_pairs, owner_of

    @hsettings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(pair=identity_pairs(), mapcount=hst.sampled_from([0, 0, 3]),
           groups=hst.sampled_from([(), (b"gxtvo",)]))
    def prop(pair, mapcount, groups):
        pool = "gxtown"
        with pg_owner_db.open() as s:
            if not _EXAMPLE[0]:
                s.add_accounts(pool, [f"{pool}{i}" for i in range(3)])
            _EXAMPLE[0] += 1
            s._txn(lambda: (s._q("DELETE FROM lease"), s._q("UPDATE pool_account SET state = 'free'")))

            def get(ident):
                text, owner = owner_of(ident)
                try:
                    return s.acquire(text, pool, groups=groups, mapcount=mapcount, owner=owner)[:2]
                except NotAuthorized as e:
                    assert e.reason in ("lease_name", "lease_collision"), e.reason
                    return None
            a, b = pair
            note(f"a={a.key!r} b={b.key!r}")
            ga, gb = get(a), get(b)
            for _ in range(2):
                assert get(a) == ga and get(b) == gb
            if ga and gb:
                assert ga[0] != gb[0] and ga[1] != gb[1]
        owners = pg_invariants.check(pg_owner_db.conninfo)
        for ident, got in ((a, ga), (b, gb)):
            if got:
                assert owners[(tuple(ident.key), tuple(g.decode() for g in groups), mapcount)] == got[0].decode()
    prop()
