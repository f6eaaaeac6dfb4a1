"""Bounded CI version of the pool-lease concurrency proof (tests/stress/stress.py).

K=12 identities x M=4 calls on a pool of P=8 real accounts, 2 rounds, against a freshly
installed setuid glexec: zero violations, exactly min(K, P) identities granted per round,
every other call refused 203 pool_exhausted.  The long run (>= 10^5 grants) is
``/usr/bin/python3 tests/stress/stress.py --identities 64 --calls 8 --pool 32 --rounds N``.
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stress  # noqa: E402

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

K, M, P, ROUNDS = 12, 4, 8, 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: setuid install and real accounts")
def test_no_two_identities_share_a_pool_account():
    seed = int(os.environ.get("GLEXEC_STRESS_SEED", "20240601"))
    s = stress.run(stress.Params(identities=K, calls=M, pool=P, rounds=ROUNDS, workers=16,
                                 seed=seed, max_sleep_ms=30))
    print(stress.format_summary(s))
    assert s.violation_count == 0, stress.format_summary(s)
    assert s.unexpected == 0
    assert s.rounds == ROUNDS
    assert s.calls == K * M * ROUNDS
    assert s.grants == min(K, P) * M * ROUNDS
    assert s.refusals == (K - min(K, P)) * M * ROUNDS
    # grant + end, refuse, and an intent before each new lease (also by a call that saw a
    # free entry, then found the lease made by a sibling call or the pool taken)
    assert s.audit_records == 2 * s.grants + s.refusals + s.intents
    assert min(K, P) * ROUNDS <= s.intents <= s.calls


def test_overlap_checker_finds_a_shared_uid():
    ivs = [(47701, 0, 10, 1, 0), (47701, 10, 20, 2, 0),    # touching ends overlap
           (47702, 0, 5, 3, 0), (47702, 6, 9, 4, 0),      # disjoint: fine
           (47703, 0, 100, 5, 0), (47703, 50, 60, 5, 0)]   # same identity: fine
    found = stress.overlaps(ivs)
    assert [(f["uid"], f["a"][3], f["b"][3]) for f in found] == [(47701, 1, 2)]
