"""Site-wide audit shipping and back-mapping: a private PostgreSQL for the session (and a
private rsyslog pair where a test asks for it), both stopped by pid afterwards."""
import os
import shutil
import sys
import tempfile
import uuid

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for p in (_ROOT, os.path.join(_ROOT, "tools")):
    if p not in sys.path:
        sys.path.insert(0, p)

from tests.support import postgres as pgcluster  # noqa: E402
from tests.support.skips import strict  # noqa: E402


@pytest.fixture(scope="session")
def pg():
    why = pgcluster.available() if os.geteuid() == 0 else "needs root (initdb as postgres)"
    if why:
        if strict():
            pytest.fail(why)
        pytest.skip(why)
    server = pgcluster.start()
    yield server
    pgcluster.remove(server)


@pytest.fixture
def site_db(pg):
    """A fresh database of the session's cluster: its conninfo."""
    return pg.create_db("gxt_" + uuid.uuid4().hex[:12])


@pytest.fixture
def private_dir():
    if os.geteuid() != 0:
        pytest.skip("the audit file and the index are root-only")
    os.makedirs("/var/lib/glexec-py-tests", mode=0o755, exist_ok=True)
    d = tempfile.mkdtemp(prefix="sitelog-", dir="/var/lib/glexec-py-tests")
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d)


@pytest.fixture
def relay(pg, site_db):
    """A private collector (imrelp on 127.0.0.1 -> ompgsql into ``site_db``) and a factory
    for senders; every instance stopped by pid at the end."""
    from tests.support import rsyslog
    why = rsyslog.available()
    if why:
        if strict():
            pytest.fail(why)
        pytest.skip(why)
    from glexec_tools.backmap.site import SiteIndex
    SiteIndex(site_db).close()                  # the staging table must exist for ompgsql
    base = tempfile.mkdtemp(prefix="gxt-rsyslog-")
    db = site_db.split("dbname=")[1].split()[0]
    port = pgcluster.free_port()
    started = []

    class Relay:
        conninfo = site_db
        collector = rsyslog.collector(os.path.join(base, "collector"), port, pg.port, db)

        @staticmethod
        def sender(host, reliable=True):
            s = rsyslog.sender(os.path.join(base, host), host, port, reliable=reliable)
            started.append(s)
            return s

    started.append(Relay.collector)
    yield Relay
    rsyslog.remove(*started)
    shutil.rmtree(base, ignore_errors=True)
