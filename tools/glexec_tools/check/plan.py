"""glexec-check's decisions, pure: lint findings and the explanation of one identity.

Everything here works on values ``apply`` gathered (file contents, stat results, passwd and
group entries, a gridmapdir listing).  The mapping and ban verdicts come from the engine's
own pure functions (``glexec_py.core.mapping``, ``core.bans``); the pool-lease prediction
follows ``effects.gridmapdir``'s algorithm step by step on a read-only listing, using the
same ``core.leases`` rules (lease names, owners, free entries).
"""

from glexec_py.core import leases as core_leases
from glexec_py.core import mapping

ERROR, WARNING, INFO = "error", "warning", "info"
EXIT_CLEAN, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 2
EXIT_GRANT, EXIT_REFUSE, EXIT_USAGE = 0, 1, 2


def text(b):
    """Bytes as the explanation shows them (undecodable bytes as \\xHH)."""
    return b.decode("utf-8", "backslashreplace") if isinstance(b, (bytes, bytearray)) else b


# --- lint -----------------------------------------------------------------------------------

class Finding:
    """One lint result: ``severity``, ``where`` ("file:line", "file" or a config key),
    ``what`` (one line)."""

    __slots__ = ("severity", "where", "what")

    def __init__(self, severity, where, what):
        self.severity, self.where, self.what = severity, where, what

    def as_dict(self):
        return {"severity": self.severity, "where": self.where, "what": self.what}

    def __repr__(self):
        return f"Finding({self.severity!r}, {self.where!r}, {self.what!r})"


def lint_exit(findings):
    """0 clean (info only), 1 warnings, 2 errors."""
    sevs = {f.severity for f in findings}
    return EXIT_ERRORS if ERROR in sevs else EXIT_WARNINGS if WARNING in sevs else EXIT_CLEAN


def sort_findings(findings):
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    return sorted(findings, key=lambda f: (order[f.severity], f.where, f.what))


def lint_gridmap(path, lines, order, names, mapping_cfg, pools_present, has_gridmapdir):
    """Findings for the parsed gridmapfile: each line's mappings against the sources that
    read them (``order``), the accounts (``names``: a NameService) and the pools present in
    the gridmapdir (``pools_present``: {pool: [entries]} or None when unreadable)."""
    out = []
    uses_local = any(s.endswith("local") for s in order)
    uses_pool = any(s.endswith("pool") for s in order)
    for line in lines:
        where = f"{path}:{line.lineno}"
        if not line.mappings:
            out.append(Finding(WARNING, where, "line has a subject but no mapping"))
        for m in line.mappings:
            if m.endswith(b"\r"):
                out.append(Finding(ERROR, where, "mapping ends in a carriage return (CRLF file): it never maps"))
                continue
            if m.startswith(b"."):
                pool = m[1:]
                if not pool:
                    out.append(Finding(WARNING, where, "bare '.' is no pool: the line is skipped"))
                elif not uses_pool:
                    out.append(Finding(INFO, where, f"pool {text(pool)} is not read: no pool source in mapping.order"))
                elif not has_gridmapdir:
                    out.append(Finding(ERROR, where, f"pool {text(pool)} but mapping.gridmapdir is not set"))
                elif pools_present is not None and not pools_present.get(pool):
                    out.append(Finding(ERROR, where, f"pool {text(pool)} has no entries in the gridmapdir"))
            elif uses_local:
                out.extend(account_findings(where, text(m), names, mapping_cfg))
    return out


def account_findings(where, name, names, mapping_cfg):
    """An account a mapping names: exists, and passes the engine's target rules."""
    found = names.account(name)
    if found is None:
        return [Finding(ERROR, where, f"account {name} does not exist")]
    why = mapping.account_refusal(name, found.uid, found.gid, found.gids, found.group_names, mapping_cfg)
    return [Finding(ERROR, where, f"account {name} may not be a target: {why[0].removeprefix('glexec: ')} "
                    f"(uid {found.uid}, min_uid {mapping_cfg.min_uid})")] if why else []


def lint_pools(gridmapdir, pools_present, names, mapping_cfg):
    """Every entry of every pool the gridmapfile names must be an account the engine may
    map to (else the request that reaches it is refused)."""
    out = []
    for pool, entries in sorted(pools_present.items()):
        for entry in entries:
            out.extend(account_findings(f"{text(gridmapdir)}/{text(entry)}", text(entry), names, mapping_cfg))
    return out


def lint_fsck(gridmapdir, fsck_findings):
    """core.leases.plan_fsck findings as lint findings."""
    sev = {"error": ERROR, "warning": WARNING, "info": INFO}
    return [Finding(sev[f.severity], f"{text(gridmapdir)}: " + ", ".join(text(n) for n in f.names),
                    f"{f.kind}: {f.why}") for f in fsck_findings]


def lint_bans(sources):
    """``[(label, BanList)]``: an unusable source denies everyone."""
    out = []
    for label, banlist in sources:
        if banlist.unusable_why is not None:
            out.append(Finding(ERROR, label, f"ban source unusable, glexec denies EVERYONE: {banlist.unusable_why}"))
    return out


# --- explain: the pool lease ----------------------------------------------------------------

class Listing:
    """A read-only gridmapdir view: ``names`` in readdir order, ``stat(name)`` ->
    (ino, nlink, is_reg, uid, mode) or None, ``record(account)`` -> metadata dict, None or
    False (unreadable)."""

    def __init__(self, rows, records):
        self.names = [r[0] for r in rows]
        self._stat = {r[0]: r[1:] for r in rows}
        self._records = records

    def stat(self, name):
        return self._stat.get(name)

    def record(self, account):
        return self._records.get(account)

    def other_name(self, ino, lease):
        return next((n for n in self.names if n != lease and self._stat[n][0] == ino), None)


class LeaseRefused(Exception):
    def __init__(self, reason, what):
        super().__init__(what)
        self.reason, self.what = reason, what


def _inspect(listing, lease, pool, owner, groups, count, by_digest, strict):
    """gridmapdir._inspect without writes: ("reuse", account) / "free" / "taken"."""
    st = listing.stat(lease)
    if st is None:
        return "free"
    ino, nlink, is_reg, uid, mode = st
    if not is_reg:
        return "taken"
    if nlink > 2:
        raise LeaseRefused("lease_overlinked", "pool lease is linked more than twice (run glexec-leases fsck)")
    if nlink < 2:
        return "free"                    # solitary: glexec would remove it and lease anew
    other = listing.other_name(ino, lease)
    if other is None:
        return "free"
    verdict = core_leases.claim(listing.record(other), lease, owner, groups, count, by_digest=by_digest)
    if verdict == "other":
        return "taken"
    if not core_leases.pool_member(other, pool, strict):
        raise LeaseRefused("wrong_pool", "existing lease points into another pool")
    if core_leases.entry_unsafe(*listing.stat(other)[3:]):
        raise LeaseRefused("pool_entry_unsafe", "the leased pool entry is not trustworthy")
    rec = listing.record(other)
    if rec and rec.get("state") == "draining":
        raise LeaseRefused("lease_draining", "pool account is being drained; retry later")
    return ("reuse", other, verdict == "adopt")


def predict_lease(listing, lease_key, pool, owner, groups=(), count=0, strict=True, skip=()):
    """Which entry ``GridmapDir.acquire`` would give this owner, without taking it:
    ``{"status": "existing lease" | "would lease", "lease", "account", ...}``.
    LeaseRefused when it would refuse (collision, exhausted, overlinked, draining ...).
    ``skip``: free entries PAM refused (the engine's ``entry_filter`` passes over them)."""
    lease = core_leases.lease_name(lease_key, groups, count)
    if len(lease) > 255:
        raise LeaseRefused("lease_name", "identity too long for a pool lease")
    got = _inspect(listing, lease, pool, owner, groups, count, False, strict)
    if isinstance(got, tuple):
        return {"status": "existing lease", "lease": lease, "account": got[1], "adopted": got[2]}
    plain_free = got == "free"
    alt = core_leases.alternate_name(lease, core_leases.owner_digest(owner.key, groups, count))
    if len(alt) <= 255:
        got = _inspect(listing, alt, pool, owner, groups, count, True, strict)
        if isinstance(got, tuple):
            return {"status": "existing lease", "lease": alt, "account": got[1], "adopted": got[2]}
        if got == "taken":
            raise LeaseRefused("lease_collision", "the pool lease for this identity is held by another identity")
    elif not plain_free:
        raise LeaseRefused("lease_name", "identity too long for a pool lease")
    name = lease if plain_free else alt
    for entry in listing.names:
        if entry in skip or not core_leases.pool_member(entry, pool, strict):
            continue
        ino, nlink, is_reg, uid, mode = listing.stat(entry)
        if not is_reg or nlink != 1 or core_leases.entry_unsafe(uid, mode):
            continue
        return {"status": "would lease", "lease": name, "account": entry,
                "note": "the first free entry in directory order now; a concurrent request may take it first"}
    raise LeaseRefused("pool_exhausted", "no free pool account (pool exhausted)")


# --- explain: the whole decision ------------------------------------------------------------

def trace_view(decision, order, lines, path):
    """The mapping trace in order: every Attempt of ``decision`` (core.mapping.decide), and
    a voms_* source the identity has no FQANs for, which looks at nothing."""
    out, tried = [], {a.source for a in decision.trace}
    attempts = iter(decision.trace)
    pending = next(attempts, None)
    for source in order:
        if source not in tried and source.startswith("voms_") and not decision.group_keys:
            out.append({"source": source, "result": "not tried", "why": "the identity has no FQANs / groups"})
        while pending is not None and pending.source == source:
            out.append(attempt_view(pending, lines, path))
            pending = next(attempts, None)
        if decision.kind is not None and source == decision.source:
            break
    return out


def attempt_view(attempt, lines, path):
    """One mapping Attempt for the explanation: the line that matched, or why none did."""
    out = {"source": attempt.source, "key": text(attempt.key)}
    if attempt.matched:
        kind = "account" if attempt.source.endswith("local") else "pool"
        out.update(result="matched", line=f"{path}:{attempt.line.lineno}", **{kind: text(attempt.value)})
        return out
    if attempt.line is not None:         # a bare '.': found, but no pool name
        out.update(result="no mapping", line=f"{path}:{attempt.line.lineno}",
                   why="bare '.' (empty pool name) is no mapping")
        return out
    from glexec_py.core import gridmap
    wild = mapping.wildcards_of(attempt.source)
    hits = gridmap.matching_lines(lines, attempt.key, wildcards=wild)
    compare = "exactly or as a pattern" if wild else "exactly (no wildcards for this source)"
    if not hits:
        why = f"no line's subject matches {compare}"
    else:
        want = "an account (a mapping not starting with '.')" if attempt.source.endswith("local") \
            else "a pool (a mapping starting with '.')"
        why = f"line(s) {', '.join(str(h.lineno) for h in hits)} match but none has {want}"
    out.update(result="no mapping", why=why)
    return out


def ban_view(trace):
    out = []
    for label, decision in trace:
        if decision is None:
            out.append({"source": label, "result": "no match"})
        elif decision.reason == "bans_unavailable":
            out.append({"source": label, "result": "unusable: denies everyone", "why": decision.explain})
        else:
            out.append({"source": label, "result": "banned", "reason": decision.reason,
                        "entry": decision.entry.where if decision.entry else None, "why": decision.explain})
    return out


def verdict(steps):
    """The first refusal in the engine's order, else the grant: (exit code, dict)."""
    for step in steps:
        if step.get("refused"):
            return EXIT_REFUSE, {"decision": "refuse", "step": step["step"], "reason": step["reason"],
                                 "why": step["why"], "exit": step.get("exit")}
    return EXIT_GRANT, {"decision": "grant"}


def render_text(exp):
    """The explanation as lines for a terminal."""
    out = []
    ident = exp["identity"]
    out.append(f"identity      {ident['kind']} {ident['subject']}")
    if ident.get("issuer"):
        out.append(f"  issuer      {ident['issuer']}")
    for g in ident.get("groups", []):
        out.append(f"  group/fqan  {g}")
    ver = exp["verification"]
    out.append(f"verification  {ver['result']}" + (f": {ver['why']}" if ver.get("why") else ""))
    out.append("bans" + ("          none configured" if not exp["bans"] else ""))
    for b in exp["bans"]:
        out.append(f"  {b['result']:<12}{b['source']}" + (f"  ({b['why']})" if b.get("why") else ""))
    out.append("mapping       order: " + ", ".join(exp["mapping"]["order"]))
    for a in exp["mapping"]["tried"]:
        got = a.get("account") or a.get("pool")
        where = f" at {a['line']}" if a.get("line") else ""
        key = f" {a['key']}" if "key" in a else ""
        out.append(f"  {a['source']:<11}{key}: {a['result']}{where}" + (f" -> {got}" if got else "")
                   + (f" ({a['why']})" if a.get("why") else ""))
    if exp.get("groups"):
        out.append(f"voms groups   {exp['groups']}")
    if exp.get("lease"):
        le = exp["lease"]
        out.append(f"lease         {le['status']}: {le.get('account', '')} as {le.get('lease', '')}")
        if le.get("note"):
            out.append(f"  note        {le['note']}")
    if exp.get("account"):
        acc = exp["account"]
        out.append(f"account       {acc['name']} uid={acc.get('uid')} gid={acc.get('gid')}")
    if exp.get("pam"):
        out.append(f"pam           {exp['pam']}")
    v = exp["verdict"]
    if v["decision"] == "grant":
        out.append(f"verdict       WOULD GRANT: {exp['account']['name'] if exp.get('account') else ''}")
    else:
        out.append(f"verdict       WOULD REFUSE at {v['step']} ({v['reason']}): {v['why']}")
    out.append("(nothing was leased, audited or run)")
    return out
