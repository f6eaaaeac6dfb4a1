"""prune-users planner: which processes of pool accounts are strays, and why.  Pure.

Inputs are plain values (no /proc, no passwd, no clock): a ``Snapshot`` of processes made
by ``glexec_tools.common.procfs``, a validated ``PruneConfig`` (``parse_prune_config`` on
the text of ``prune.yaml``) and a ``Scope`` (candidate uids -> account names, spared uids,
lease-protected uids) that ``glexec_tools.prune.apply`` resolves from passwd and the
lease store.  Output: a ``Plan`` with one ``Decision`` per process that has a candidate uid
among its real/effective/saved uids: ``kill`` or ``keep`` plus a stable reason code and a
human sentence (batch.md sections 7-8, security.md 2.13 and 4.I).

Decision order for a process P (first rule that applies wins):

1. ``uid_floor`` / ``uid_spared`` keep: any of P's r/e/s uids is 0, below ``min_uid``, or a
   spared account (a mixed identity involving root or a system account is never touched);
2. ``kernel_thread`` keep (PF_KTHREAD, pid 2 or ppid 2);
3. ``zombie`` keep (already dead, only its parent or init can reap it);
4. ``lease_protected`` keep: the account's lease was just granted/used (or any lease, with
   ``spare_leased``); the lease lifecycle decides, never the pruner;
5. ``job_cgroup`` keep: a line of /proc/P/cgroup lies in a job cgroup (a pattern of
   ``job_cgroups``, anchored at the hierarchy root).  Membership cannot be changed by the user;
6. ancestry, following ppid from P: the first ancestor whose comm is a registered daemon
   **and** whose real uid is 0 -> ``job_daemon`` keep; (``spare_ssh``) a root-owned ``sshd``
   -> ``ssh_session`` keep; a parent missing from the snapshot or started after its child
   (pid reused while scanning) -> ``ancestry_incomplete`` keep (the next round decides);
7. ``young`` keep: younger than ``min_age`` seconds, unless its uid is in ``no_grace`` (an
   account already being purged in this run) or its parent is itself a stray;
8. otherwise ``kill``: ``orphan`` (ppid 1), ``stray_descendant`` (parent is a stray) or
   ``no_job_ancestor`` (the chain reaches pid 1 through other processes).

Never used for a decision: the comm/cmdline of the candidate itself, environment variables
(SLURM_JOB_ID survives in escaped processes and is user-writable), session ids.
"""

import gc
from types import MappingProxyType

from glexec_py.core.text import clipped as _safe, printable

ID_MAX = 4294967294
DEFAULT_DAEMONS = ("slurmstepd", "pbs_mom", "sge_shepherd", "condor_starter", "res")
DEFAULT_JOB_CGROUPS = (
    "/slurm*/uid_*/job_*",                       # Slurm proctrack/task cgroup, cgroup v1
    "/system.slice/slurmstepd.scope/job_*",      # Slurm cgroup/v2
    "/htcondor/condor_*",                        # HTCondor BASE_CGROUP=htcondor
    "/lsf/*/job.*",                              # LSF LSF_PROCESS_TRACKING
)
SIGNALS = ("SIGTERM", "SIGKILL", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
PF_KTHREAD = 0x00200000
MAX_DEPTH = 4096          # ppid chain walk bound (pid_max is at most 4194304; chains are short)

KILL, KEEP = "kill", "keep"


class gc_paused:
    """``with gc_paused():`` no cyclic garbage collection inside (restored on exit).  The
    scan and the plan allocate ~10 objects per process, none of them in a cycle: the
    collector's passes over 10,000 young objects cost ~10 % of a run and free nothing."""

    def __enter__(self):
        self.was = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc):
        if self.was:
            gc.enable()
        return False


# --- snapshot ---------------------------------------------------------------------------

class Proc:
    """One process as read from /proc (``procscan``).  ``comm`` is bytes (raw, may hold
    ')' and newlines); ``cgroup`` a tuple of the /proc/P/cgroup lines as str (latin-1) or
    None when not read (processes without a candidate uid); ``starttime`` in clock ticks
    since boot (stat field 22)."""

    __slots__ = ("pid", "ppid", "ruid", "euid", "suid", "starttime", "comm", "state",
                 "flags", "cgroup", "full")

    def __init__(self, pid, ppid, ruid, euid, suid, starttime, comm=b"", state="S", flags=0,
                 cgroup=None, full=True):
        self.pid = pid
        self.ppid = ppid
        self.ruid = ruid
        self.euid = euid
        self.suid = suid
        self.starttime = starttime
        self.comm = comm
        self.state = state
        self.flags = flags
        self.cgroup = cgroup
        # full=False: the uids are the owner of /proc/PID (the euid of a dumpable process)
        # and cgroup was not read; a kill decision on such a Proc is "unconfirmed" until the
        # apply step re-reads the process in full (status + cgroup) and re-plans.
        self.full = full

    @property
    def uids(self):
        return (self.ruid, self.euid, self.suid)

    def same_process(self, other):
        """Same pid, start time and uids: what the apply step re-checks through the pidfd."""
        return (self.pid == other.pid and self.starttime == other.starttime
                and self.uids == other.uids)

    def __repr__(self):
        return (f"Proc(pid={self.pid}, ppid={self.ppid}, uids={self.uids}, "
                f"start={self.starttime}, comm={self.comm!r}, state={self.state!r})")


class Snapshot:
    """``procs``: {pid: Proc}; ``uptime``: seconds since boot when the scan started;
    ``hz``: clock ticks per second (``SC_CLK_TCK``)."""

    def __repr__(self):
        return f"Snapshot({len(self.procs)} processes, uptime={self.uptime})"

    __slots__ = ("procs", "uptime", "hz")

    def __init__(self, procs, uptime, hz=100):
        self.procs = procs
        self.uptime = uptime
        self.hz = hz


_STATES = {c.encode(): c for c in "RSDZTtWXxKPI"}


def parse_stat(data):
    """(pid, comm, state, ppid, flags, starttime) from the bytes of /proc/PID/stat.

    comm sits between the first '(' and the *last* ')': a process may name itself
    ``a) R 1 (`` or put newlines in it; every field after it is parsed from the last ')'.
    ``ValueError``/``IndexError`` on anything that is not a stat line (no ')' after a '(',
    too few fields, a non-numeric field).  One rpartition and one split: this runs once
    per process on the machine (procscan.scan)."""
    head, rp, tail = data.rpartition(b")")
    lp = head.index(b"(")
    f = tail.split(b" ", 21)
    # f[0]='' (the space after ')'), f[1]=state(3) f[2]=ppid(4) f[7]=flags(9) f[20]=start(22)
    if f[0] or not rp:
        raise ValueError("not a /proc/PID/stat line")
    st = f[1]
    state = _STATES.get(st)
    if state is None:
        state = st.decode("ascii", "replace")
    return int(head[:lp]), head[lp + 1:], state, int(f[2]), int(f[7]), int(f[20])


def parse_status_uids(data):
    """(ruid, euid, suid) from the bytes of /proc/PID/status (the ``Uid:`` line)."""
    i = data.index(b"\nUid:")
    j = data.index(b"\n", i + 5)
    f = data[i + 5:j].split()
    return int(f[0]), int(f[1]), int(f[2])


# --- configuration ----------------------------------------------------------------------

class PruneConfig:
    """The validated ``prune:`` section of glexec.yaml with the shared values (attributes:
    see ``CONFIG_KEYS``)."""

    def __init__(self, values):
        self.__dict__.update(values)

    def replace(self, **kw):
        d = dict(self.__dict__)
        for k, v in kw.items():
            if k not in d:
                raise AttributeError(k)
            d[k] = v
        return PruneConfig(d)

    def __repr__(self):
        return f"PruneConfig({self.__dict__!r})"


# key -> (kind, default); kinds checked by _value; the _SHARED ones come from glexec.yaml
CONFIG_KEYS = (
    ("pool_accounts", "names", ()),          # account names, or ".prefix" = prefix + digits
    ("uid_ranges", "uidranges", ()),         # "low-high" strings or single uids
    ("min_uid", ("int", 1, ID_MAX), 1000),   # glexec.yaml's mapping.min_uid
    ("spare_accounts", "names", ("nobody",)),
    ("daemons", "names", DEFAULT_DAEMONS),
    ("job_cgroups", "cgpatterns", DEFAULT_JOB_CGROUPS),
    ("spare_ssh", "bool", False),
    ("min_age", ("int", 0, 86400), 10),      # young-process grace (seconds)
    ("signal", "signal", "SIGTERM"),
    ("term_grace", ("int", 0, 3600), 5),     # seconds between the first signal and SIGKILL
    ("max_kills", ("int", 1, 1000000), 1000),
    ("max_rounds", ("int", 1, 1000), 20),
    ("time_limit", ("int", 1, 3600), 60),
    ("kill_all", "bool", False),             # kill(-1) as the pool uid when it has no job
    ("gridmapdir", "abspath", None),         # glexec.yaml's mapping.gridmapdir
    ("lease_db", "shared", None),            # glexec.yaml's postgresql section (lease_store: postgresql)
    ("gridmapfile", "abspath", None),        # glexec.yaml's mapping.gridmapfile (its pools)
    ("lease_fresh", ("int", 0, 31536000), 300),
    ("spare_leased", "bool", False),
    ("state_dir", "abspath", None),          # glexec.yaml's state_dir
    ("audit_file", "abspath", None),         # glexec.yaml's audit.file
    ("syslog", "bool", True),
)


escape = printable  # one printable line for untrusted text (core.text)


def _str_list(c, node, key, check):
    if not isinstance(node, c.yaml.SequenceNode):
        raise c.err(node, f"'prune.{key}' must be a list")
    out = []
    for item in node.value:
        if not c.scalar(item, "str"):
            raise c.err(item, f"each entry of 'prune.{key}' must be a string")
        problem = check(item.value)
        if problem:
            raise c.err(item, problem)
        if item.value in out:
            raise c.err(item, f"duplicate entry '{_safe(item.value)}' in 'prune.{key}'")
        out.append(item.value)
    return tuple(out)


def _value(c, kind, node, key):
    """One value of the ``prune:`` section (``c``: a ``common.section.Checker``)."""
    if type(kind) is tuple:
        return c.integer(node, key, kind[1], kind[2])
    if kind == "bool":
        return c.boolean(node, key)
    if kind == "signal":
        if not c.scalar(node, "str") or node.value not in SIGNALS:
            raise c.err(node, f"'prune.{key}' must be one of {', '.join(SIGNALS)}")
        return node.value
    if kind == "names":
        return _str_list(c, node, key, _name_problem)
    if kind == "cgpatterns":
        return _str_list(c, node, key, _cgpattern_problem)
    if kind == "uidranges":
        if not isinstance(node, c.yaml.SequenceNode):
            raise c.err(node, f"'prune.{key}' must be a list")
        out = []
        for item in node.value:
            if c.scalar(item, "int"):
                lo = hi = c.integer(item, key, 0, ID_MAX)
            elif c.scalar(item, "str"):
                a, dash, b = item.value.partition("-")
                if not (dash and _digits(a) and _digits(b)):
                    raise c.err(item, f"each entry of 'prune.{key}' must be a uid or a range "
                                      f"'low-high', not '{_safe(item.value)}'")
                lo, hi = int(a), int(b)
                if lo > hi or hi > ID_MAX:
                    raise c.err(item, f"range '{_safe(item.value)}' in 'prune.{key}' is empty "
                                      f"or beyond {ID_MAX}")
            else:
                raise c.err(item, f"each entry of 'prune.{key}' must be a uid or a range")
            out.append((lo, hi, item))
        return tuple(out)
    raise AssertionError(kind)


def _digits(s):
    return s.isascii() and s.isdigit() and len(s) <= 10


def _name_problem(v):
    if not v or v == ".":
        return "empty name"
    if "*" in v or "?" in v:
        return f"'{_safe(v)}': no wildcards (list names, or '.prefix' for a pool)"
    if any(ord(c) < 0x21 or ord(c) == 0x7F or c in ":/" for c in v):
        return f"invalid name '{_safe(v)}'"
    return None


def _cgpattern_problem(v):
    if not v.startswith("/") or v == "/" or "//" in v or v.endswith("/"):
        return f"job cgroup pattern '{_safe(v)}' must be an absolute path below the root"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in v) or "/../" in v + "/" or "/./" in v + "/":
        return f"invalid job cgroup pattern '{_safe(v)}'"
    if "?" in v or "[" in v or "]" in v:
        return f"job cgroup pattern '{_safe(v)}': only '*' is supported as a wildcard"
    first = v.split("/")[1]
    if first.strip("*") == "":
        return f"job cgroup pattern '{_safe(v)}' must name its first component"
    return None


# Set once in glexec.yaml for every tool (common.section.SHARED_KEYS), not in 'prune:'.
_SHARED = ("gridmapdir", "gridmapfile", "state_dir", "audit_file", "syslog", "min_uid", "lease_db")


def parse_section(text, filename):
    """The ``prune:`` section of glexec.yaml ``text`` (optional; every key has a default)
    -> ``PruneConfig``; ``ConfigError(file, line, what)`` on any problem in the file.
    Strict like the engine: unknown keys, duplicates, anchors/aliases, tags and wrongly
    typed values are refused.  state_dir, audit file (and syslog), gridmapdir and min_uid
    are glexec.yaml's own.  ``pool_accounts`` None (not given, no ``uid_ranges``): the
    pools the gridmapfile names (resolved by the CLI).  Refused: a range that includes uid
    0 or reaches below ``min_uid``."""
    from glexec_tools.common import section
    from glexec_tools.common.leasestore import lease_db_settings

    def walk(main, c, node):
        shared = {"gridmapdir": main.mapping.gridmapdir or None,
                  "gridmapfile": main.mapping.gridmapfile, "state_dir": main.state_dir,
                  "audit_file": main.audit.file, "syslog": main.audit.syslog,
                  "min_uid": main.mapping.min_uid,
                  "lease_db": lease_db_settings(main)}
        return _document(c, c.entries(node, {k for k, _, _ in CONFIG_KEYS} - set(_SHARED)),
                         shared, node)
    return section.load(text, filename, "prune", walk)


def _document(c, seen, shared, node):
    values = dict(shared)
    for key, kind, default in CONFIG_KEYS:
        if key in shared:
            continue
        values[key] = _value(c, kind, seen[key], key) if key in seen else default
    if "pool_accounts" not in seen and not values["uid_ranges"]:
        values["pool_accounts"] = None           # the gridmapfile's pools
    elif not values["pool_accounts"] and not values["uid_ranges"]:
        raise c.err(seen.get("pool_accounts", node),
                    "'prune.pool_accounts' and 'prune.uid_ranges' are both empty: refusing to "
                    "run without a scope (leave both out for the gridmapfile's pools)")
    floor = values["min_uid"]
    ranges = []
    for lo, hi, item in values["uid_ranges"]:
        if lo == 0:
            raise c.err(item, "a uid range must never include uid 0 (root)")
        if lo < floor:
            raise c.err(item, f"uid range {lo}-{hi} reaches below min_uid {floor}")
        ranges.append((lo, hi))
    values["uid_ranges"] = tuple(ranges)
    if not values["daemons"]:
        raise c.err(seen.get("daemons", node), "'prune.daemons' must not be empty")
    return PruneConfig(values)


def default_config(**kw):
    """A PruneConfig with the defaults and the given values (tests, benches)."""
    values = {k: d for k, _kind, d in CONFIG_KEYS}
    values.update(state_dir="/nonexistent", audit_file="/nonexistent/audit.jsonl")
    for k, v in kw.items():
        if k not in values:
            raise KeyError(k)
        values[k] = v
    return PruneConfig(values)


# --- scope ------------------------------------------------------------------------------

class Scope:
    """Resolved scope of one run.  ``candidates``: {uid: account name or None};
    ``spared``: {uid: name} of spared accounts; ``protected``: {uid: reason text} from the
    lease store; ``no_grace``: uids already being purged in this run (no young-process
    grace for them)."""

    __slots__ = ("candidates", "spared", "protected", "no_grace", "ranges", "min_uid")

    def __init__(self, candidates, spared=None, protected=None, no_grace=(), ranges=(),
                 min_uid=1000):
        self.candidates = dict(candidates)
        self.spared = dict(spared or {})
        self.protected = dict(protected or {})
        self.no_grace = frozenset(no_grace)
        self.ranges = tuple(ranges)
        self.min_uid = min_uid

    def is_candidate(self, uid):
        if uid in self.candidates:
            return True
        for lo, hi in self.ranges:
            if lo <= uid <= hi:
                return True
        return False

    __contains__ = is_candidate      # procscan: "is this uid of interest?"

    def account(self, uid):
        return self.candidates.get(uid)

    def with_leases(self, protected, no_grace=()):
        return Scope(self.candidates, self.spared, protected, no_grace, self.ranges,
                     self.min_uid)


def check_scope(cfg, candidates, spared):
    """Refuse (``ValueError`` with the reason) a scope that would touch root or a system
    account: a resolved pool account with uid 0 or below the floor, or a spared account
    that is also a pool account."""
    if not candidates and not cfg.uid_ranges:
        raise ValueError("no pool account resolved and no uid range: nothing is in scope")
    for uid, name in candidates.items():
        if uid == 0 or uid < cfg.min_uid:
            raise ValueError(f"pool account {escape(str(name))} has uid {uid}, below "
                             f"min_uid {cfg.min_uid}: refusing to run")
        if uid in spared:
            raise ValueError(f"account {escape(str(name))} (uid {uid}) is both a pool "
                             f"account and spared")


# --- cgroups ----------------------------------------------------------------------------

_CG_CACHE = {}


def _cg_regex(patterns):
    rx = _CG_CACHE.get(patterns)
    if rx is None:
        import re
        alts = ["/" + "/".join(re.escape(c).replace("\\*", "[^/]*") for c in pat.split("/")[1:])
                for pat in patterns]
        rx = re.compile("(?:" + "|".join(alts) + ")(?=/|$)")
        if len(_CG_CACHE) < 64:
            _CG_CACHE[patterns] = rx
    return rx


def job_cgroup(lines, patterns):
    """The job cgroup (matched prefix of the path) of the first /proc/P/cgroup line whose
    path starts with a pattern ('*' matches within one component, never a '/'; anchored at
    the hierarchy root), or None.  Lines are ``id:controllers:path`` (v1) or ``0::path``."""
    if not lines:
        return None
    rx = _cg_regex(tuple(patterns))
    for line in lines:
        path = line.split(":", 2)[-1]
        m = rx.match(path)
        if m:
            return line.split(":", 2)[1] + ":" + m.group(0)
    return None


# --- planning ---------------------------------------------------------------------------

_ESCAPED = {}


def _escape_cached(v):
    """``escape`` for the few distinct comm values of 10,000 report lines."""
    r = _ESCAPED.get(v)
    if r is None:
        r = escape(v)
        if len(_ESCAPED) < 4096:
            _ESCAPED[v] = r
    return r


def _once(fn):
    """``fn`` evaluated at the first call only (a text shared by many decisions)."""
    box = []

    def get():
        if not box:
            box.append(fn())
        return box[0]
    return get


class Decision:
    """``action`` kill/keep, ``reason`` a stable code, ``text`` the sentence (built lazily:
    most of 10,000 decisions are never printed), ``detail`` evidence (pids, cgroup)."""

    __slots__ = ("proc", "account", "action", "reason", "_text", "detail")

    def __init__(self, proc, account, action, reason, text, detail=None):
        self.proc = proc
        self.account = account
        self.action = action
        self.reason = reason
        self._text = text
        self.detail = detail or {}

    @property
    def text(self):
        t = self._text
        if callable(t):
            t = self._text = t()
        return t

    def as_dict(self):
        p = self.proc
        d = {"pid": p.pid, "ppid": p.ppid, "uid": p.ruid, "euid": p.euid, "suid": p.suid,
             "account": self.account, "starttime": p.starttime,
             "comm": _escape_cached(p.comm), "state": p.state, "action": self.action,
             "reason": self.reason, "why": self.text}
        detail = self.detail
        if detail:
            for k, v in detail.items():
                d[k] = _escape_cached(v) if isinstance(v, (bytes, str)) else v
        return d

    def __repr__(self):
        return f"Decision({self.proc.pid}, {self.action}, {self.reason}: {self.text})"


class Plan:
    """``decisions``: one per in-scope process, pid order.  ``kills``/``keeps`` filter it;
    ``legit_uids``: uids with at least one live process that is kept for a reason other than
    age (a job, an ssh session, the floor) - kill(-1) is never used for them."""

    __slots__ = ("decisions", "by_pid")

    def __init__(self, decisions):
        self.decisions = decisions
        self.by_pid = {d.proc.pid: d for d in decisions}

    @property
    def kills(self):
        return [d for d in self.decisions if d.action == KILL]

    @property
    def unconfirmed(self):
        """Kill decisions made on partial facts (``Proc.full`` False): re-read, re-plan."""
        return [d for d in self.decisions if d.action == KILL and not d.proc.full]

    @property
    def keeps(self):
        return [d for d in self.decisions if d.action == KEEP]

    def uids_with_kept(self):
        """uids (any of r/e/s) that have a live kept process: kill(-1) as that uid would
        hit it."""
        out = set()
        for d in self.decisions:
            if d.action == KEEP and d.reason != "zombie":
                out.update(d.proc.uids)
        return out


def plan_prune(snap, cfg, scope):
    """The plan for ``snap``: one Decision per process with a candidate uid."""
    procs = snap.procs
    decide, in_scope = _planner(snap, cfg, scope)
    out = []
    with gc_paused():
        for pid in sorted(procs):
            p = procs[pid]
            if in_scope(p):
                out.append(decide(p))
    return Plan(out)


def decide_one(proc, snap, cfg, scope):
    """Re-decide a single (re-read) process against a snapshot: the apply step's re-check
    after opening the pidfd.  Returns a Decision (kill/keep)."""
    return _planner(snap, cfg, scope)[0](proc)


def _planner(snap, cfg, scope):
    """(decide, in_scope) for one plan: closures over the snapshot with per-plan caches
    (candidate and floor verdicts per uid, decisions per pid, ancestry verdicts per pid,
    one text and detail per job daemon), so that 10,000 processes of a few uids cost a few
    dict lookups each.  ``decide`` applies the rules of the module docstring in order."""
    procs = snap.procs
    daemons = frozenset(n.encode("latin-1", "replace") if isinstance(n, str) else n
                        for n in cfg.daemons)
    spare_ssh = cfg.spare_ssh
    patterns = cfg.job_cgroups
    min_age = cfg.min_age
    candidates = scope.candidates
    spared = scope.spared
    protected = scope.protected
    no_grace = scope.no_grace
    floor = scope.min_uid
    uptime, hz = snap.uptime, snap.hz
    cand = {}         # uid -> in scope
    uidkeep = {}      # uid -> None or (reason, text): rule 1 for that uid
    decided = {}      # pid -> Decision
    anc = {}          # pid -> ancestry verdict of the chain starting at pid
    dkeep = {}        # daemon pid -> (text, detail) shared by its descendants' decisions

    def is_cand(u):
        v = cand.get(u)
        if v is None:
            v = cand[u] = scope.is_candidate(u)
        return v

    def in_scope(p):
        r = p.ruid
        if r == p.euid == p.suid:
            return is_cand(r)
        return is_cand(r) or is_cand(p.euid) or is_cand(p.suid)

    def uid_keep(u):
        try:
            return uidkeep[u]
        except KeyError:
            pass
        v = None
        if u == 0 or u < floor:
            v = ("uid_floor", f"uid {u} is root or below the floor {floor}")
        elif u in spared:
            v = ("uid_spared", f"uid {u} is the spared account {escape(str(spared[u]))}")
        uidkeep[u] = v
        return v

    def ancestry(pid):
        """Verdict of the ppid chain starting at ``pid`` (the parent of some process):
        ("daemon", Proc) / ("ssh", Proc) / ("init", last pid: 0 or 1) / ("incomplete",
        pid of the missing or reused ancestor)."""
        path = []
        seen = set()
        child = None
        while True:
            verdict = anc.get(pid)
            if verdict is not None:
                break
            if pid == 0 or pid == 1:
                verdict = ("init", pid)
                break
            q = procs.get(pid)
            if q is None or pid in seen or len(path) > MAX_DEPTH:
                verdict = ("incomplete", pid)
                break
            if child is not None and q.starttime > child.starttime:
                verdict = ("incomplete", pid)
                break
            if q.ruid == 0 and q.comm in daemons:
                verdict = anc[pid] = ("daemon", q)
                break
            if spare_ssh and q.ruid == 0 and q.comm == b"sshd":
                verdict = anc[pid] = ("ssh", q)
                break
            seen.add(pid)
            path.append(pid)
            child = q
            pid = q.ppid
        if verdict[0] != "incomplete":
            for x in path:
                anc[x] = verdict
        return verdict

    def decide(p):
        hit = decided.get(p.pid)
        if hit is not None and hit.proc is p:
            return hit
        d = decided[p.pid] = _decide(p)
        return d

    def _decide(p):
        r, e, s = p.ruid, p.euid, p.suid
        if r == e == s:
            uid = r
            k = uid_keep(r)
        else:
            uid = r if r in candidates else (
                r if is_cand(r) else e if is_cand(e) else s if is_cand(s) else r)
            k = uid_keep(r) or uid_keep(e) or uid_keep(s)
        acct = candidates.get(uid)
        if k is not None:
            return Decision(p, acct, KEEP, k[0], k[1])
        if p.flags & PF_KTHREAD or p.pid == 2 or p.ppid == 2:
            return _keep(p, acct, "kernel_thread", "kernel thread")
        if p.state in ("Z", "X", "x"):
            return _keep(p, acct, "zombie", "zombie: already dead, reaped by its parent or init")
        if protected:
            for u in (r, e, s):
                if u in protected:
                    return _keep(p, acct, "lease_protected", protected[u])
        if p.cgroup:
            cg = job_cgroup(p.cgroup, patterns)
            if cg is not None:
                return _keep(p, acct, "job_cgroup", f"in job cgroup {escape(cg)}", cgroup=cg)
        # ancestry
        ppid = p.ppid
        first = procs.get(ppid)
        if ppid != 0 and ppid != 1 and first is not None and first.starttime > p.starttime:
            return _keep(p, acct, "ancestry_incomplete",
                         f"ancestor pid {ppid} started after its child (pid reused during "
                         f"the scan): decided next round", ancestor=ppid)
        kind, q = ancestry(ppid)
        if kind == "daemon":
            td = dkeep.get(q.pid)
            if td is None or td[2] is not q:
                td = dkeep[q.pid] = (
                    _once(lambda: f"descendant of {escape(q.comm)} pid {q.pid} (root-owned "
                                  f"job daemon)"),
                    MappingProxyType({"daemon": q.comm, "daemon_pid": q.pid}), q)
            return Decision(p, acct, KEEP, "job_daemon", td[0], td[1])
        if kind == "ssh":
            return _keep(p, acct, "ssh_session", f"in an ssh session (sshd pid {q.pid})",
                         sshd_pid=q.pid)
        if kind == "incomplete":
            return _keep(p, acct, "ancestry_incomplete",
                         f"ancestor pid {q} vanished or was reused during the scan: decided "
                         f"next round", ancestor=q)
        # the direct parent's own verdict: a child of a stray is a stray whatever its age
        if first is not None and ppid != 0 and ppid != 1 and in_scope(first):
            if decide(first).action == KILL:
                return Decision(p, acct, KILL, "stray_descendant",
                                f"descendant of stray pid {first.pid}, no job daemon above",
                                {"stray_parent": first.pid})
        if min_age and uid not in no_grace:
            age = uptime - p.starttime / hz
            if age < min_age:
                return _keep(p, acct, "young", f"younger than {min_age} s ({age:.1f} s): "
                                               f"maybe a job still being set up",
                             age=round(age, 3))
        if ppid == 1:
            return Decision(p, acct, KILL, "orphan",
                            "orphan reparented to pid 1, no job daemon or job cgroup", {})
        return Decision(p, acct, KILL, "no_job_ancestor",
                        f"ancestry reaches pid {q} without a registered job daemon "
                        f"(parent pid {ppid}) and no job cgroup", {})

    return decide, in_scope


def _keep(p, acct, reason, text, **detail):
    return Decision(p, acct, KEEP, reason, text, detail)
