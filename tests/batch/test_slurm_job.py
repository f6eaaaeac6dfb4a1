"""glexec-job on the real private Slurm (issue 11): one pilot job of gxtbpilot runs the jobs
of two identities (DN 1 -> gxtbtarget, DN 2 -> gxtbtarget2) one after another and then two at
once, each with an input sandbox, a daemonizing payload, declared outputs with a hostile
symlink to the pilot's own proxy, and a proxy renewal while it runs.  Afterwards: outputs
exact, the renewed proxy seen whole by each payload, the pilot's proxy never readable by
any payload, and -- checked inside the pilot's Slurm job, before Slurm's own cleanup could
hide anything -- no process of either account and no job directory left."""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.support import accounts as acc
from tests.support import install as inst
from tests.support.job_payload import PAYLOAD, tar_gz

DN2 = "/DC=test/DC=glexec-py/CN=Batch Test User Two"
TARGET2 = ("gxtbtarget2", 47602)
JOBS = ("seq1", "seq2", "par1", "par2")
OWNER = {"seq1": "p1", "seq2": "p2", "par1": "p1", "par2": "p2"}

PILOT_SCRIPT = r'''#!/bin/sh
J=@TOOL@
W=@WORK@
export X509_USER_PROXY=$W/pilot.pem
run() {   # name owner-proxy
  mkdir -m 700 $W/out-$1 $W/state-$1
  $J run --json --state-dir $W/state-$1 --proxy $W/$2.pem --outdir $W/out-$1 --input $W/in.tar.gz \
     --env JOBNAME=$1 --env PILOT_PROXY=$W/pilot.pem --output result.txt --output leak.txt \
     -- /usr/bin/python3 payload.py renew > $W/status-$1.json 2> $W/err-$1.txt
  echo $? > $W/rc-$1
}
renew() { # name new-proxy
  i=0
  while [ $i -lt 600 ] && ! grep -q ready $W/out-$1/stdout 2>/dev/null; do sleep 0.1; i=$((i+1)); done
  id=$(basename $(ls $W/state-$1/live/*.json) .json)
  $J renew --json --state-dir $W/state-$1 --job $id --proxy $W/$2.pem > $W/renew-$1.json 2>&1
  echo $? > $W/renewrc-$1
}
run seq1 p1 & renew seq1 p1new; wait
run seq2 p2 & renew seq2 p2new; wait
run par1 p1 & run par2 p2 & renew par1 p1new & renew par2 p2new & wait
ps -o pid=,uid=,args= -u @UIDS@ > $W/left.txt
ls -A @SCRATCH@ > $W/scratch.txt
echo done > $W/done
'''


@pytest.fixture(scope="module")
def target2(baccounts):
    acc.remove_user(TARGET2[0])
    acc.remove_group(TARGET2[0])
    acc.create_group(TARGET2[0], TARGET2[1])
    try:
        yield acc.create_user(TARGET2[0], TARGET2[1], TARGET2[0], home=True)
    finally:
        acc.kill_uid_processes([TARGET2[1]])
        acc.remove_user(TARGET2[0])
        acc.remove_group(TARGET2[0])


def _own(path, a, mode=0o600):
    os.chown(path, a.uid, a.gid)
    os.chmod(path, mode)
    return path


def test_two_identities_one_after_another_and_at_once(slurm, binstall, baccounts, target2):
    pilot, t1 = baccounts.pilot, baccounts.target
    pki = binstall.pki
    inst.write_gridmap(binstall.prefix, [(binstall.dn, "gxtbtarget"), (DN2, TARGET2[0])])
    scratch = inst.make_run_dir("jobscratch")
    os.chmod(scratch, 0o1777)
    inst.write_config(binstall.prefix, callers={"users": ["gxtbpilot"], "groups": []},
                      payload={"keep_caller_groups": ["47650-47659"]},
                      job={"scratch_root": str(scratch), "grace": 2, "heartbeat": 1})
    work = inst.make_run_dir("jobpilot")
    _own(work, pilot, 0o700)
    try:
        u1, u2 = pki.user(binstall.dn), pki.user(DN2)
        proxies = {"p1": pki.proxy(u1, work / "p1.pem"), "p1new": pki.proxy(u1, work / "p1new.pem"),
                   "p2": pki.proxy(u2, work / "p2.pem"), "p2new": pki.proxy(u2, work / "p2new.pem"),
                   "pilot": pki.proxy(u1, work / "pilot.pem")}
        for p in proxies.values():
            _own(p, pilot)
        sha = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in proxies.items()}
        assert len(set(sha.values())) == 5
        (work / "in.tar.gz").write_bytes(tar_gz({"payload.py": PAYLOAD.encode(), "data/in.txt": b"input data\n"}))
        _own(work / "in.tar.gz", pilot)
        script = (PILOT_SCRIPT.replace("@TOOL@", str(binstall.prefix / "sbin" / "glexec-job"))
                  .replace("@WORK@", str(work)).replace("@UIDS@", f"{t1.uid},{target2.uid}")
                  .replace("@SCRATCH@", str(scratch)))
        jobid = slurm.submit("gxtbpilot", script, args=("--time", "10"))
        slurm.wait_state(jobid, ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"), timeout=400)
        assert (work / "done").exists(), slurm.log_tail()
        uid_of = {"p1": t1.uid, "p2": target2.uid}
        for name in JOBS:
            owner = OWNER[name]
            status = json.loads((work / f"status-{name}.json").read_text())
            err = (work / f"err-{name}.txt").read_text()
            assert (work / f"rc-{name}").read_text().strip() == "0", (name, status, err)
            assert status["kind"] == "ok" and status["processes_left"] == 0 and status["wipe"]["gone"], status
            assert (work / f"renewrc-{name}").read_text().strip() == "0", (work / f"renew-{name}.json").read_text()
            lines = (work / f"out-{name}" / "stdout").read_text().splitlines()
            seen = json.loads([ln for ln in lines if '"uid"' in ln][-1])
            assert seen["uid"] == uid_of[owner] == status["target_uid"]
            assert seen["proxy"] == "READ:" + sha[owner]
            assert seen["pilot_proxy"] == "Permission denied"
            assert set(seen["proxies"]) <= {sha[owner], sha[owner + "new"]} and sha[owner + "new"] in seen["proxies"]
            with tarfile.open(work / f"out-{name}" / "outputs.tar") as tf:
                files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
            assert files == {"result.txt": f"result of {name}\n".encode()}
            manifest = json.loads((work / f"out-{name}" / "manifest.json").read_text())
            assert manifest["refused"] == [{"name": "leak.txt", "reason": "a symlink (not followed)"}]
            assert list((work / f"state-{name}" / "live").iterdir()) == []
        assert (work / "left.txt").read_text().strip() == "", "processes left inside the pilot's job"
        assert (work / "scratch.txt").read_text().strip() == "", "job directories left"
        assert acc.live_uid_processes([t1.uid, target2.uid]) == []
    finally:
        acc.kill_uid_processes([t1.uid, target2.uid])
        inst.write_gridmap(binstall.prefix, [(binstall.dn, "gxtbtarget")])
        inst._safe_rmtree(work)
        inst._safe_rmtree(scratch)
