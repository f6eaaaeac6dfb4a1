"""effects.payload.rlimit_ceiling: the hard limits the plan's executor cannot raise, read
for a process of another real uid as the engine service reads the shim's.

The class of failure: prlimit(2) on another process needs matching real/effective/saved
ids or CAP_SYS_RESOURCE.  The shim's real uid is the caller's while the service decides,
so on a host whose root lacks CAP_SYS_RESOURCE (containers, this CI machine) a service
call failed with "cannot read the executor's limits" whenever the child asked before
the shim had taken full root: a race that load decides."""
import json
import os
import resource
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from glexec_py.effects import payload

CHILD = r"""
import json, resource, sys
for res, hard in json.loads(sys.argv[1]).items():
    res = int(res)
    soft, old = resource.getrlimit(res)
    if old == resource.RLIM_INFINITY or hard < old:
        resource.setrlimit(res, (min(soft, hard) if soft != resource.RLIM_INFINITY else hard, hard))
got = {r: resource.getrlimit(r)[1] for r in range(16)}
print(json.dumps({r: -1 if h == resource.RLIM_INFINITY else h for r, h in got.items()}), flush=True)
sys.stdin.read()
"""


def another_uid(lowered):
    """A process of uid 65534, with no capabilities, that lowered the given hard limits."""
    p = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                          sys.executable, "-I", "-c", CHILD, json.dumps(lowered)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return p, {int(r): h for r, h in json.loads(p.stdout.readline()).items()}


@pytest.fixture(autouse=True)
def root_only():
    if os.geteuid() != 0:
        pytest.fail("as root: reads another uid's limits as the engine service does")


# resources a process may lower freely without breaking the interpreter that runs the child
LOWERABLE = (resource.RLIMIT_CORE, resource.RLIMIT_FSIZE, 10,  # RLIMIT_LOCKS (not in the resource module)
             resource.RLIMIT_MEMLOCK, resource.RLIMIT_MSGQUEUE, resource.RLIMIT_RTTIME, resource.RLIMIT_SIGPENDING)


@settings(max_examples=20, deadline=None)
@given(st.dictionaries(st.sampled_from(LOWERABLE), st.integers(0, 2**40), max_size=len(LOWERABLE)))
def test_the_hard_limits_of_another_uids_process_as_it_has_them(lowered):
    proc, has = another_uid(lowered)
    try:
        assert payload.rlimit_ceiling(proc.pid) == has
    finally:
        proc.communicate(b"")


def test_a_process_with_cap_sys_resource_has_no_ceiling():
    if int(open("/proc/self/status").read().split("CapEff:")[1].split()[0], 16) >> 24 & 1 == 0:
        pytest.skip("optional: this root lacks CAP_SYS_RESOURCE (a container)")
    assert payload.rlimit_ceiling(os.getpid()) == {}


@pytest.mark.parametrize("text", [b"", b"Limit\n", b"Limit\n" + b"Max cpu time              x y z\n" * 16,
                                  b"Limit\n" + b"Min cpu time              1 2 s\n" * 16])
def test_an_unreadable_limits_text_is_an_error(text):
    with pytest.raises(ValueError):
        payload.hard_limits(text)
