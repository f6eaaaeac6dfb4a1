"""An LCMAPS policy as a state machine, and the one mapping order glexec-py uses instead.
Pure.

``derive_order`` reads the order in which a policy tries its account plugins when none
matches; ``lcmaps_outcome`` and ``glexec_outcome`` say what each side does in one
``World`` (does the credential carry FQANs, do they map to groups, which sources have a
matching line); ``worlds`` enumerates them all, so the translation can be proven
equivalent (or refused) combination by combination.
"""
import itertools
from dataclasses import dataclass

# --- plugins ----------------------------------------------------------------------------

# module kind -> what glexec-py does with it
CHECK, ACCOUNT, GROUP, NOOP, FAIL, UNSUPPORTED = "check", "account", "group", "noop", "fail", "unsupported"
SOURCE_OF = {"localaccount": "local", "poolaccount": "pool", "voms_localaccount": "voms_local",
             "voms_poolaccount": "voms_pool"}
_KINDS = {
    "verify_proxy": CHECK, "ban_dn": CHECK, "ban_fqan": CHECK,
    "localaccount": ACCOUNT, "poolaccount": ACCOUNT, "voms_localaccount": ACCOUNT,
    "voms_poolaccount": ACCOUNT, "voms_localgroup": GROUP,
    "dummy_good": NOOP, "posix_enf": NOOP, "glexec_tracking": NOOP, "voms": NOOP,
    "dummy_bad": FAIL,
}
UNSUPPORTED_WHY = {
    "voms_poolgroup": "pool groups (-groupmapdir leases of VOMS groups) have no glexec-py "
                      "equivalent; map FQANs to fixed groups with a groupmapfile instead",
    "scas_client": "a remote authorization service (SCAS) decides; glexec-py decides locally",
    "c_pep": "a remote authorization service (Argus PEP) decides; glexec-py decides locally",
    "gums_client": "a remote mapping service (GUMS) decides; glexec-py decides locally",
    "saz_client": "a remote authorization service (SAZ) decides; glexec-py decides locally",
    "ldap_enf": "LDAP group enforcement has no glexec-py equivalent",
    "process_tracking": "glexec-py supervises the payload itself (linger); this plugin's "
                        "tracking groups are not created",
    "proxylifetime": "use credentials.max_proxy_lifetime / min_proxy_remaining instead; "
                     "its per-level settings are not translated",
    "jobrep": "the job repository database is not written; glexec-py keeps its own audit log",
    "condor_update": "HTCondor job-ad updates are not made",
    "mount_under_scratch": "no mount namespace handling in glexec-py",
    "namespace": "no mount namespace handling in glexec-py",
    "pilot_sub_proxy": "pilot sub-proxies are not handled",
}

def module_kind(name):
    return _KINDS.get(name, UNSUPPORTED)


# --- the policy as a state machine, and the one order glexec-py will use -------------------

def run_policy(policy, instances, outcome, limit=1000):
    """Walk ``policy`` with ``outcome(instance) -> bool`` per state: ``(success,
    [(instance, ok)...])``.  A state without a rule of its own ends the policy with its
    plugin's result; ``a -> b`` ends in failure when ``a`` fails."""
    rules, state = {r.state: r for r in policy.rules}, policy.rules[0].state
    trace = []
    for _ in range(limit):
        inst = instances[state]
        ok = outcome(inst)
        trace.append((inst, ok))
        rule = rules.get(state)
        if rule is None:
            return ok, trace
        nxt = rule.on_success if ok else rule.on_failure
        if nxt is None:
            return ok, trace
        state = nxt
    return False, trace


def can_map_from(policy, instances, state, depth=0):
    """True if some path from ``state`` runs an account plugin that succeeds and the
    policy then ends in success (dummy_bad only fails, the others may go either way)."""
    rules = {r.state: r for r in policy.rules}
    memo = {}

    def walk(s, mapped, depth):
        if depth > 200:
            return True
        if (s, mapped) not in memo:
            memo[(s, mapped)] = False       # acyclic: only a guard
            memo[(s, mapped)] = step(s, mapped, depth)
        return memo[(s, mapped)]

    def step(s, mapped, depth):
        kind = module_kind(instances[s].module)
        rule = rules.get(s)
        outcomes = (False,) if kind == FAIL else (True,) if kind == NOOP else (True, False)
        for ok in outcomes:
            now = mapped or (ok and kind == ACCOUNT)
            nxt = None if rule is None else (rule.on_success if ok else rule.on_failure)
            if nxt is None:
                if ok and now:
                    return True
                continue
            if walk(nxt, now, depth + 1):
                return True
        return False
    return walk(state, False, depth)


def states_of(policy):
    out = []
    for r in policy.rules:
        for s in (r.state, r.on_success, r.on_failure):
            if s and s not in out:
                out.append(s)
    return out


@dataclass(frozen=True)
class World:
    """One combination the equivalence check runs: does the credential carry FQANs, do
    they map to groups (voms_localgroup), and which mapping sources find a line."""
    fqans: bool
    groups_ok: bool
    matches: frozenset

    def describe(self):
        m = ", ".join(sorted(self.matches)) or "none"
        return (f"FQANs: {'yes' if self.fqans else 'no'}"
                + (f", VOMS groups map: {'yes' if self.groups_ok else 'no'}" if self.fqans else "")
                + f", sources with a matching line: {m}")


def lcmaps_outcome(policies, instances_of, world):
    """What LCMAPS does in ``world``: ('mapped', source, grouped) or ('denied',) or
    ('conflict', sources) when one path maps twice."""
    for policy in policies:
        instances = instances_of[policy.name]

        def outcome(inst):
            kind = module_kind(inst.module)
            if kind == ACCOUNT:
                return SOURCE_OF[inst.module] in world.matches
            if kind == GROUP:
                return world.groups_ok
            return kind != FAIL
        ok, trace = run_policy(policy, instances, outcome)
        if not ok:
            continue            # credential data is reset; the next policy is tried
        mapped = [i for i, good in trace if good and module_kind(i.module) == ACCOUNT]
        if len(mapped) > 1:
            return ("conflict", tuple(SOURCE_OF[i.module] for i in mapped))
        if not mapped:          # the first policy that succeeds ends the evaluation: no uid
            return ("denied",)
        grouped = any(good and module_kind(i.module) == GROUP for i, good in trace)
        return ("mapped", SOURCE_OF[mapped[0].module], grouped)
    return ("denied",)


def glexec_outcome(order, grouped, world):
    """What glexec-py's engine.map_identity does in ``world`` with ``mapping.order`` and a
    groupmapfile (``grouped``)."""
    for source in order:
        if source in world.matches:
            if source.startswith("voms_") and grouped:
                if not world.groups_ok:
                    return ("denied",)
                return ("mapped", source, True)
            return ("mapped", source, False)
    return ("denied",)


def worlds(sources, mapmin_or_all):
    """Every combination (voms_* sources match only when there are FQANs; with FQANs the
    groups always map unless ``-mapmin``/``-mapall`` can make voms_localgroup fail)."""
    sources = sorted(set(sources))
    for fqans in (True, False):
        for groups_ok in ((True, False) if fqans and mapmin_or_all else (fqans,)):
            for bits in itertools.product((False, True), repeat=len(sources)):
                m = frozenset(s for s, b in zip(sources, bits) if b
                              and (fqans or not s.startswith("voms_")))
                yield World(fqans, groups_ok, m)


def derive_order(policies, instances_of):
    """The order in which the policies try the account plugins when none matches (with
    FQANs whose groups map, then without FQANs)."""
    order = []
    for fqans in (True, False):
        nothing = World(fqans, fqans, frozenset())
        for policy in policies:
            def outcome(inst):
                kind = module_kind(inst.module)
                if kind in (ACCOUNT, FAIL):
                    return False
                if kind == GROUP:
                    return nothing.groups_ok
                return True
            _ok, trace = run_policy(policy, instances_of[policy.name], outcome)
            for inst, _ in trace:
                if module_kind(inst.module) == ACCOUNT and SOURCE_OF[inst.module] not in order:
                    order.append(SOURCE_OF[inst.module])
    return order


def compare(policies, instances_of, order, grouped, sources, strict_groups):
    """Run both sides in every ``World``: ``(mismatches, notes)``, lists of ``(world,
    lcmaps outcome, glexec outcome)``.  A mismatch forbids the translation: glexec-py would
    map differently (or map where LCMAPS refused, or LCMAPS maps twice on one path).  A
    note is an announced difference: a DN source after voms_localgroup (LCMAPS keeps the
    VOMS group as primary gid) or an unmet -mapmin/-mapall (LCMAPS falls through,
    glexec-py refuses)."""
    mismatches, notes = [], []
    for w in worlds(sources, strict_groups):
        theirs = lcmaps_outcome(policies, instances_of, w)
        ours = glexec_outcome(order, grouped, w)
        if theirs[0] == "conflict":
            mismatches.append((w, theirs, ours))
        elif theirs[0] == ours[0] == "denied":
            continue
        elif theirs[0] == ours[0] == "mapped" and theirs[1] == ours[1]:
            if theirs[2] != ours[2]:
                # a voms_* account must get its groups the same way on both sides
                (mismatches if theirs[1].startswith("voms_") else notes).append((w, theirs, ours))
        elif theirs[0] == "mapped" and ours[0] == "denied" and strict_groups and not w.groups_ok:
            notes.append((w, theirs, ours))
        else:
            mismatches.append((w, theirs, ours))
    return mismatches, notes
