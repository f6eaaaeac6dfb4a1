"""One process of a "node" in the cross-node lease tests (tests/leases/test_pg_nodes.py):
grants leases from a shared PostgreSQL lease store and writes one JSON line per call to
its output file (in the node's own state directory):

    {"i": identity index, "ok": account | null, "reused": bool, "reason": refusal,
     "exit": 202|203, "ms": duration, "t": monotonic start}

    python3.11 pg_node_driver.py <conninfo> <node> <out> <identities> <grants> [seed] [timeout_ms]

Identities are "/DC=org/DC=test/CN=Node Stress <i>" for i in the comma list <identities>
(shared between nodes on purpose: the same identity on two nodes must get one account),
picked at random, <grants> calls in all (0 = until killed).  The store is opened once per
process and re-opened after a 202 (a dropped connection), like an engine service would.
"""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from glexec_py.core.leases import LeaseOwner  # noqa: E402
from glexec_py.effects.pgleases import PgLeaseStore  # noqa: E402
from glexec_py.errors import GlexecError  # noqa: E402

POOL = "gxtpool"


def identity(i):
    text = b"/DC=org/DC=test/CN=Node Stress %d" % i
    return text, LeaseOwner(("x509", "CN=Node Stress %d,DC=test,DC=org" % i), text, True)


def main():
    conninfo, node, out, idents, grants = sys.argv[1:6]
    seed = int(sys.argv[6]) if len(sys.argv) > 6 else os.getpid()
    timeout = int(sys.argv[7]) / 1000 if len(sys.argv) > 7 else 5.0
    idents = [int(x) for x in idents.split(",")]
    grants = int(grants)
    rnd = random.Random(seed)
    store = None
    n = 0
    with open(out, "a", buffering=1) as f:
        while grants == 0 or n < grants:
            n += 1
            i = rnd.choice(idents)
            text, owner = identity(i)
            t0 = time.monotonic()
            rec = {"i": i, "t": t0, "node": node, "pid": os.getpid()}
            try:
                if store is None:
                    store = PgLeaseStore(conninfo, node=node, connect_timeout=2, timeout=timeout)
                account, lease, reused = store.acquire(text, POOL, owner=owner, caller=4700,
                                                       caller_limit=0)
                rec.update(ok=account.decode(), reused=reused, lease=lease.decode("latin-1"))
            except GlexecError as e:
                rec.update(ok=None, exit=e.exit_code, reason=e.reason)
                if e.exit_code == 202 and store is not None:
                    store.close()
                    store = None
            rec["ms"] = round((time.monotonic() - t0) * 1000, 3)
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
