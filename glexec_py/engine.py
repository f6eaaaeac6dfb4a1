"""The privileged sequence, top to bottom.

Started by the setuid shim as full root (or as the caller in log-only mode) with the
caller's facts on fd 3. Gather facts, let `core` decide, let `effects` act, in one fixed
order. Every refusal is a GlexecError: one line to the caller, one audit record, an exit
code. Modules that only some calls need are imported where they are needed: start-up
time is most of this program's latency.
"""
import os
import sys
import time

from glexec_py import __version__
from glexec_py.effects import trust
from glexec_py.errors import (EXIT_CLIENT, EXIT_NOT_EXECUTABLE, CallerError, GlexecError, NotAuthorized,
                              SystemFault, payload_exit_status)

HANDOFF_FD = 3
SHIM_INTERPRETER = "/usr/bin/python3.11"


def main(engine_file, args, handoff=None, executor=None):
    """In-process mode: started by the shim, the hand-off on fd 3, the payload run here.
    The engine service (glexec_py/service.py) calls it per request with the hand-off's
    bytes and an executor that has the shim run the plan: the same steps either way."""
    paths = Paths(engine_file, args[0] if args else "")
    call = Call(paths)
    try:
        trust.check_interpreter_state()
        facts = call.facts = read_handoff(handoff)
        command = facts.argv[1:]
        if command and command[0] in (b"-h", b"-v", b"-V"):
            return informational(command[0], facts, paths)

        cfg = call.cfg = load_config(paths)
        check_caller(call, cfg)
        verified = verify_credential(call, cfg)
        check_namespaces(call, cfg, verified)
        identity = establish_identity(call, cfg, verified)
        apply_bans(call, cfg, identity)
        target = map_identity(call, cfg, identity)
        check_account(call, cfg, target)
        plan, staged_proxy = prepare(call, cfg, target, command)
        if plan is not None:
            plan = call.decide(open_session(call, cfg, plan), executor)

        call.audit("grant")
        call.granted = True
        if staged_proxy:
            planned = staged_proxy.path
            staged_proxy.commit()
            if plan is not None and staged_proxy.path != planned:
                plan = replan_proxy(call, plan, planned, staged_proxy.path)
        if plan is None:
            return 0  # no command: proxy copy only (DIRAC's renewal call)
        return run_payload(call, cfg, plan, executor)
    except GlexecError as refusal:
        return call.refuse(refusal)
    except Exception as bug:  # fail closed, with the evidence in the audit record
        return call.refuse(SystemFault("internal", "glexec: internal error", error=repr(bug)))


def exit_process(code):
    """End the engine once ``main`` returned: every audit record is written and fsync'ed
    (auditlog.append writes with os.write + fsync, no buffer), the PAM transaction has
    ended, the lease store is closed; only Python's own output streams may hold bytes.
    Flushed, then ``os._exit``: the interpreter's teardown (finalising every module and
    object, ~0.8 ms after the payload finished) has nothing left to do for the call."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # the caller closed its end: nothing more can reach it either way
    os._exit(code)


# -- the steps -------------------------------------------------------------------------

def read_handoff(blob=None):
    """The caller's facts as the shim recorded them (fd 3, a sealed memfd; or its bytes,
    read by the engine service from the memfd the shim passed)."""
    from glexec_py.core import handoff
    if blob is not None:
        return handoff.parse(blob)
    chunks = []
    try:
        while True:
            chunk = os.read(HANDOFF_FD, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(HANDOFF_FD)
    except OSError:
        raise SystemFault("handoff", "glexec: not started by the glexec shim") from None
    return handoff.parse(b"".join(chunks))


def informational(flag, facts, paths):
    """-h usage, -v version, -V compile-time defaults (root only)."""
    if flag == b"-h":
        from glexec_py.core.envplan import usage_text
        sys.stdout.write(usage_text())
    elif flag == b"-v":
        sys.stdout.write(f"glexec-py {__version__}\n")
    elif facts.ruid != 0:
        raise CallerError("usage", "glexec: -V is for root only")
    else:
        for name, value in (("GLEXEC_VERSION", __version__), ("GLEXEC_CONFIG_FILE", paths.config),
                            ("GLEXEC_ENGINE", paths.engine), ("GLEXEC_INTERPRETER", SHIM_INTERPRETER),
                            ("GLEXEC_STATE_DIR", paths.state_dir), ("GLEXEC_DEFAULT_AUDIT_FILE", paths.audit_file)):
            sys.stdout.write(f'{name}="{value}"\n')
    sys.stdout.flush()
    return 0


def load_config(paths):
    from glexec_py.effects import configfile
    return configfile.load(paths.config, paths.state_dir)


def check_caller(call, cfg):
    """The caller must be listed (user or group) before any of its files is read."""
    from glexec_py.core.authz import caller_allowed
    from glexec_py.effects.accounts import caller_names
    user, group, group_names = call.caller_names = caller_names(call.facts)
    allowed, why = caller_allowed(cfg.callers.users, cfg.callers.groups, user, group_names)
    if not allowed:
        raise NotAuthorized("caller_not_allowed", "glexec: caller is not allowed to use glexec", why=why)


def verify_credential(call, cfg):
    """The caller's credential, read as the caller: a proxy chain (GLEXEC_CLIENT_CERT) or,
    where the site accepts tokens, a JWT (GLEXEC_CLIENT_TOKEN) — never both."""
    env = call.caller_env()
    cert = env.get(b"GLEXEC_CLIENT_CERT") or (
        env.get(b"X509_USER_PROXY") if cfg.credentials.x509_user_proxy_fallback else None)
    token = env.get(b"GLEXEC_CLIENT_TOKEN")
    if cert and token:
        raise CallerError("credential_ambiguous", "glexec: set GLEXEC_CLIENT_CERT or GLEXEC_CLIENT_TOKEN, not both")
    if token:
        return verify_token(call, cfg, token)
    if not cert:
        raise CallerError("no_credential", "glexec: no credential given (set GLEXEC_CLIENT_CERT)")
    return verify_proxy(call, cfg, cert)


def verify_proxy(call, cfg, path):
    """RFC 3820 proxy chain: signatures, validity, CRLs (libcrypto), then its meaning."""
    from glexec_py.core import proxychain
    from glexec_py.core.authz import listed
    from glexec_py.effects import native, userfiles
    call.credential_path = path
    call.credential = userfiles.read_credential(path, call.facts, cfg.credentials.max_file_size)
    trust.check_dir_chain(cfg.credentials.ca_dir)
    call.verified_at = int(time.time())
    creds = cfg.credentials
    result = native.verify_chain(call.credential, creds.ca_dir, call.verified_at, crl_expired_ok=creds.crl_expired_ok)
    key_optional = listed(cfg.callers.omission_private_key, call.caller_names[0])
    verified = proxychain.interpret(
        result, key_required=not key_optional, allow_limited=creds.allow_limited_proxy,
        require_limited=creds.require_limited_proxy, max_proxy_lifetime=creds.max_proxy_lifetime or None,
        min_remaining=creds.min_proxy_remaining or None, now=call.verified_at,
        allow_legacy=creds.allow_legacy_proxy, legacy_max_levels=creds.legacy_proxy_max_levels)
    call.chain = result.chain
    return verified


def verify_token(call, cfg, path):
    """WLCG/SciTokens JWT, verified offline against the configured issuers' local keys."""
    if cfg.tokens is None:
        raise CallerError("token_disabled", "glexec: this site does not accept tokens")
    from glexec_py.core import tokens
    from glexec_py.effects import native, tokenkeys, userfiles
    policy = tokens.TokenPolicy(cfg.tokens)
    raw = userfiles.read_credential(path, call.facts, policy.max_size, "token")
    return tokens.verify_token(raw, policy, tokenkeys.KeyStore(policy), time.time(),
                               verify=native.verify_jws)


def check_namespaces(call, cfg, verified):
    """A CA speaks only for its own namespace: every certificate of the verified chain that
    a CA issued (the end-entity certificate and intermediate CAs; proxies are signed by the
    EEC) must be permitted by that CA's ``<hash>.namespaces`` in ca_dir (or, where that has
    no rule for the CA, its ``.signing_policy``). No file: refused under
    ``namespace_policy: require``, accepted under ``optional``; ``ignore``: nothing is read."""
    mode = cfg.credentials.namespace_policy
    if mode == "ignore" or getattr(verified, "kind", None) == "jwt":
        return
    from glexec_py.core import namespaces
    from glexec_py.effects import capolicy

    def structure(der):
        from glexec_py.core import dn
        return dn.parse_der_name(der)

    chain, checked = call.chain, []
    for depth in range(verified.depth, len(chain) - 1):
        cert, ca = chain[depth], chain[depth + 1]
        where = {"depth": depth, "subject": cert.subject, "ca": ca.subject, "ca_hash": ca.subject_hash}
        try:
            subject = namespaces.subject_text(cert.subject, lambda: structure(cert.subject_der))
        except namespaces.Ambiguous:
            raise CallerError("namespace_ambiguous", "glexec: credential name is ambiguous in one-line form "
                              "(contains '/', '+' or '\\'); not matched against CA namespaces", **where) from None
        except ValueError as e:    # core.dn.DNError
            raise CallerError("credential_invalid", "glexec: credential has a malformed name", error=str(e),
                              **where) from None
        verdict = namespaces.evaluate(capolicy.load(cfg.credentials.ca_dir, ca.subject_hash), ca.subject, subject)
        if verdict is None:
            if mode == "require":
                raise CallerError("namespace_missing", "glexec: the issuing CA has no namespace policy here",
                                  **where)
            continue
        if not verdict.permitted:
            raise CallerError("namespace_violation", "glexec: credential is outside its CA's namespace",
                              **where, **verdict.to_audit())
        checked.append({"depth": depth, **verdict.to_audit()})
    call.namespaces = checked


def establish_identity(call, cfg, verified):
    """The one identity model (core.identity) for what was verified: a token, or a proxy
    chain with its VOMS FQANs (canonical, in AC order; in lcmaps mode a bad attribute
    certificate drops them all, as LCMAPS does)."""
    from glexec_py.core import identity as model
    if getattr(verified, "kind", None) == "jwt":
        call.identity = model.from_token(verified)
        return call.identity
    call.eec_depth = verified.depth
    fqans = ()
    if cfg.credentials.vomsdir:
        from glexec_py.effects import vomsdir
        call.voms = vomsdir.check_voms([c.der for c in call.chain], verified.depth, cfg.credentials.ca_dir,
                                       cfg.credentials.vomsdir, call.verified_at, mode=cfg.credentials.voms_mode,
                                       skew=cfg.credentials.voms_skew)
        fqans = call.voms.fqans
    from glexec_py.core.dn import DNError
    try:
        call.identity = model.from_proxy(verified, call.chain, fqans)
    except DNError as e:
        raise CallerError("credential_invalid", "glexec: credential has a malformed name", error=str(e)) from None
    return call.identity


def apply_bans(call, cfg, identity):
    """Global bans, before any mapping: the DN at every proxy depth, the CA, fingerprints,
    FQANs/groups, token issuer+subject. A broken ban source denies everyone."""
    if not cfg.bans.configured(ignore=("max_file_size",)):
        return  # without bans, not even their modules are loaded
    from glexec_py.core import bans, dn
    from glexec_py.effects import banfiles
    banlist = banfiles.load(cfg.bans, call.paths.config, call.paths.state_dir)
    try:
        seen = bans.inputs(identity, call.chain, call.eec_depth)
    except dn.DNError as e:
        raise CallerError("credential_invalid", "glexec: credential has a malformed name", error=str(e)) from None
    _refuse_if_banned(bans.check(banlist, **seen))


def _refuse_if_banned(decision):
    if decision is not None:
        evidence = decision.to_audit()
        del evidence["reason"]
        raise NotAuthorized(decision.reason, "glexec: access denied by a site ban", **evidence)


def map_identity(call, cfg, identity):
    """The local account for this identity: the mapping sources in configured order
    (LCMAPS localaccount, then poolaccount with a gridmapdir lease, by default), decided
    by core.mapping (the same functions glexec-check explain shows).

    With ``mapping.groupmapfile``, a ``voms_*`` mapping is preceded by LCMAPS's
    voms_localgroup (``vomslocalgroup -> vomspoolaccount``): the payload's primary gid is
    the first FQAN's group, the later FQANs' groups are its secondary gids, nothing comes
    from the account, and voms_pool leases are named ``DN:primary:secondary...``."""
    from glexec_py.core import mapping
    from glexec_py.effects.accounts import lookup_target, with_voms_groups
    mapcount = requested_mapcount(call, cfg)
    lines = _read_mapfile(cfg.mapping.gridmapfile, "gridmapfile")
    # A proxy maps by its DN as LCMAPS renders it, a token by "iss,sub" (HTCondor's name).
    decision = mapping.decide(lines, cfg.mapping.order, identity.mapping_name,
                              [g.encode() for g in identity.groups], grouped=bool(cfg.mapping.groupmapfile))
    if decision.kind is None:
        raise NotAuthorized("no_mapping", "glexec: no mapping for this identity")
    call.mapped_by = {"source": decision.source, "key": decision.key}
    groups = voms_groups(call, cfg, decision.group_keys) if decision.voms_groups else None
    if decision.kind == "local":
        target = lookup_target(decision.name.decode("utf-8", "surrogateescape"), cfg.mapping)
    else:
        lease_key = mapping.lease_key(identity)
        names = ()
        if groups:
            from glexec_py.effects.accounts import voms_group_names
            names = voms_group_names(mapping.lease_gids(*groups, cfg.mapping.lease_secondary_groups))
        target = lease_pool_account(call, cfg, lease_key, decision.name, names, mapcount,
                                    owner=mapping.lease_owner(identity, lease_key))
    call.target = with_voms_groups(target, *groups) if groups else target
    return call.target


def _read_mapfile(path, what):
    from glexec_py.core import gridmap
    try:
        trust.check_file(path)
        with open(path, "rb") as f:
            return gridmap.parse_gridmap(f.read(), path)
    except OSError as e:
        raise SystemFault(what, f"glexec: cannot read the {what}: {e.strerror}", path=path) from None


def requested_mapcount(call, cfg):
    """The caller's GLEXEC_MAPCOUNT (LCMAPS's mapcounter): unset = 0 (the plain lease);
    otherwise 1..mapping.max_mappings_per_credential, each value its own lease
    ``...:mapcount=NNNN`` (so one identity may hold several accounts at once)."""
    from glexec_py.core import mapping
    raw = call.caller_env().get(b"GLEXEC_MAPCOUNT")
    try:
        return mapping.mapcount(raw, cfg.mapping.max_mappings_per_credential)
    except ValueError as e:
        raise CallerError("mapcount_invalid", f"glexec: {e}", value=raw[:32]) from None


def voms_groups(call, cfg, fqans):
    """LCMAPS voms_localgroup over the verified FQANs (AC order): ``(primary gid,
    (secondary gids...))``. Refused: an FQAN group that does not exist or is privileged
    (202), no FQANs / ``groupmap_all`` unmet / fewer than ``groupmap_min`` groups, and no
    primary gid because the first FQAN has no group (203: LCMAPS's return-account call
    fails without a primary gid)."""
    from glexec_py.core import mapping
    from glexec_py.effects.accounts import lookup_voms_group
    lines = _read_mapfile(cfg.mapping.groupmapfile, "groupmapfile")
    try:
        found, primary, secondary = mapping.voms_groups(
            lines, fqans, lambda name: lookup_voms_group(name, cfg.mapping),
            mapall=cfg.mapping.groupmap_all, mapmin=cfg.mapping.groupmap_min)
    except mapping.GroupsRefused as e:
        if "groups" in e.detail:
            call.mapped_by["groups"] = e.detail["groups"]
        raise NotAuthorized(e.reason, e.what, **e.detail) from None
    call.mapped_by["groups"] = found
    return primary, secondary


def lease_pool_account(call, cfg, subject, pool, groups=(), mapcount=0, owner=None):
    """A lease on a free account of `pool` in the gridmapdir (or the identity's existing
    one), in LCMAPS's on-disk format; the account is checked before it is leased.
    ``groups``: group names in the lease (voms_poolaccount); ``mapcount``: 0 = plain lease;
    ``owner``: the identity the lease is recorded for and compared with on every reuse."""
    from glexec_py.effects.accounts import lookup_target
    from glexec_py.effects.leasestore import open_store
    checked = {}

    def account_check(name):
        checked[name] = lookup_target(name, cfg.mapping)

    entry_filter = None
    if cfg.pam.enabled and call.facts.privileged:
        def entry_filter(name):
            return pam_admits(call, cfg, name)

    with open_store(cfg) as store, _noting_pam_skips(call):
        account, lease, reused = store.acquire(
            subject, pool, groups=[g.encode("ascii") for g in groups], mapcount=mapcount,
            account_check=account_check, owner=owner, caller=call.facts.ruid,
            caller_limit=cfg.mapping.max_leases_per_caller, entry_filter=entry_filter,
            # A new lease: its intent is on record (fsync'ed) before the link exists, so a
            # crash at any later point leaves no lease the audit log does not explain.
            before_link=lambda name: call.audit("lease_intent", lease={"name": name, "pool": pool}))
        adopted = store.adopted
        if store.created is not None:
            call.new_lease = (cfg, store.created)
    name = account.decode("utf-8", "surrogateescape")
    call.lease = {"name": lease, "pool": pool, "reused": reused}
    if owner is not None:
        call.lease["owner"] = list(owner.key)
        if adopted:
            call.lease["adopted"] = True
    if groups:
        call.lease["groups"] = list(groups)
    if mapcount:
        call.lease["mapcount"] = mapcount
    return checked.get(name) or lookup_target(name, cfg.mapping)


class _noting_pam_skips:
    """A refusal of the lease step (pool_exhausted ...) names the pool accounts PAM refused."""

    def __init__(self, call):
        self.call = call

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if isinstance(error, GlexecError) and self.call.pam_skipped:
            error.detail["pam_skipped"] = self.call.pam_skipped
        return False


def pam_admits(call, cfg, name):
    """For a free pool entry, before the lease store's locked decision takes it (outside
    the gridmapdir lock, effects/gridmapdir.py): does PAM let this account in?
    A refused one is skipped (recorded in the lease's ``skipped``) so an expired pool account
    never blocks the pool; the accepted one's PAM transaction is kept for the session."""
    from glexec_py.effects import pam
    if any(skip["account"] == name for skip in call.pam_skipped):
        return False            # refused once in this call (a second pass over the pool)
    if call.pam is None:
        pam.check_service(cfg.pam.service)
    else:
        call.pam.end()
        call.pam = None
    handle = pam.Pam(cfg.pam.service, name, call.caller_names[0])
    try:
        code = handle.account()
    except NotAuthorized as refused:
        handle.end()
        call.pam_skipped.append({"account": name, "pam_code": refused.detail["pam_code"]})
        return False
    except BaseException:
        handle.end()
        raise
    call.pam, call.pam_account = handle, (name, code)
    return True


def check_account(call, cfg, target):
    """The site must let the target in: PAM account management (``pam.service``, never
    authentication).  An expired or pam_access-denied account is refused (203, PAM's reason
    in the audit record) before anything runs; an identity's existing pool lease stays.
    A new pool lease was checked before it was made (``pam_admits``).  A missing or unsafe
    service file, or one using pam_systemd: 202."""
    if not cfg.pam.enabled:
        return
    from glexec_py.effects import pam
    if call.pam is None:  # else pam_admits checked it before leasing a pool entry
        pam.check_service(cfg.pam.service)
    call.pam_info = {"service": cfg.pam.service}
    if not call.facts.privileged:
        # log-only: pam_unix cannot read another account's shadow entry unprivileged
        # (PAM_AUTHINFO_UNAVAIL); the payload runs as the caller anyway
        call.pam_info["account"] = "not_checked_log_only"
        return
    if call.pam_skipped:
        call.lease["skipped"] = call.pam_skipped
    if call.pam is not None and call.pam_account[0] == target.name:
        call.pam_info["account"] = call.pam_account[1]   # checked when it was leased
        return
    call.pam = pam.Pam(cfg.pam.service, target.name, call.caller_names[0])
    call.pam_info["account"] = call.pam.account()


def open_session(call, cfg, plan):
    """The PAM session (pam_limits) for the payload, opened here because its setrlimit
    calls act on this process: PAM's limits go into the plan where they are stricter than
    the caller's, never where they would lift them (effects/pam.py)."""
    if call.pam is None:
        return plan
    rlimits, lowered = call.pam.open_session(dict(plan.rlimits))
    if lowered:
        call.pam_info["limits"] = {str(r): list(v) for r, v in sorted(lowered.items())}
    return plan.replace(rlimits=rlimits)


def prepare(call, cfg, target, command):
    """Everything decided before the grant record: the payload's plan (core.plan: who runs
    what, where, with which env, limits and guards, lingering or not) and the target proxy
    staged under a temporary name."""
    from glexec_py.core.envplan import payload_env
    from glexec_py.core.plan import Plan
    from glexec_py.effects import payload
    facts = call.facts
    runas = target if facts.privileged else call.caller_account()
    path = cfg.payload.path.encode()
    if command:
        call.resolved = payload.resolve_command(command[0], path, facts.cwd, runas)
    staged, proxy_path = stage_target_proxy(call, cfg, runas)
    if not command:
        return None, staged
    groups = tuple(runas.groups) + tuple(g for g in facts.groups if _kept(cfg, g) and g not in runas.groups)
    env = payload_env(facts.env, preserve=cfg.payload.preserve_env, home=runas.home.encode(),
                      user=runas.name.encode(), path=path, x509_user_proxy=proxy_path)
    linger = cfg.payload.linger
    # The guard is about another identity typing into the pilot's terminal: in log-only
    # mode the payload is the caller (and could not install it without no_new_privs).
    plan = Plan(path=call.resolved[0], argv=command, env=env, uid=runas.uid, gid=runas.gid, groups=groups,
                cwd=facts.cwd, umask=facts.umask, rlimits=facts.rlimits, switch_identity=facts.privileged,
                no_new_privs=cfg.payload.no_new_privs, tty_guard=facts.privileged and cfg.payload.tty_guard,
                linger=linger, pdeathsig=payload.DEATH_SIGNAL if linger else 0,
                forward_signals=payload.FORWARDED if linger else (), caller_ruid=facts.ruid)
    return plan, staged


def _kept(cfg, gid):
    from glexec_py.core.config import gid_kept
    return gid_kept(cfg, gid)


def stage_target_proxy(call, cfg, runas):
    """GLEXEC_TARGET_PROXY (default <default_dir>/x509up_u<uid>; /dev/null = no copy),
    written as the target from GLEXEC_SOURCE_PROXY (default: the client credential)."""
    from glexec_py.effects import userfiles
    env = call.caller_env()
    dest = env.get(b"GLEXEC_TARGET_PROXY")
    if not cfg.target_proxy.create or dest == b"/dev/null":
        return None, None
    source = env.get(b"GLEXEC_SOURCE_PROXY")
    data = call.credential  # None for a token: there is no proxy to copy unless one is given
    if source and source != call.credential_path:
        data = userfiles.read_credential(source, call.facts, cfg.credentials.max_file_size, "source_proxy")
    if data is None:
        return None, None
    default = not dest
    if default:
        dest = b"%s/x509up_u%d" % (cfg.target_proxy.default_dir.encode().rstrip(b"/"), runas.uid)
    staged = userfiles.stage_target_proxy(dest, data, (runas.uid, runas.gid, runas.groups), default,
                                          caller_uid=call.facts.ruid)
    call.staged_proxy = staged
    return staged, staged.path  # the default location may have been taken: see userfiles


def replan_proxy(call, plan, planned, path):
    """A file planted at the default target-proxy name between staging and commit sent the
    proxy elsewhere (userfiles.StagedProxy): the payload's X509_USER_PROXY must say where.
    The path is known only once the commit has run, and the commit stays after the grant
    record -- before it, a refused or crashed call would have replaced the target's proxy
    with nothing on record -- so the plan that runs is on record here, before it runs, in a
    ``plan`` record saying why it differs from the grant's (fail closed: unwritable, refused)."""
    old = b"X509_USER_PROXY=" + planned
    plan = call.decide(plan.replace(env=[b"X509_USER_PROXY=" + path if e == old else e for e in plan.env]),
                       limits=False)
    call.audit("plan", changed="target_proxy_moved", target_proxy=path)
    return plan


def run_payload(call, cfg, plan, executor=None):
    """The plan runs here (effects.payload), or in the shim for the engine service (its
    executor has the same two entry points)."""
    if executor is None:
        from glexec_py.effects import payload as executor
    if not plan.linger:
        call.started(executor.in_place_pid())   # that process becomes the payload
        executor.exec_in_place(plan)  # returns only in the service; the PAM session stays open
        return None                   # the shim is the payload now: no verdict to send
    pid, status, signum, cpu_user, cpu_system, failure = executor.run_lingering(plan, on_started=call.started)
    if call.pam is not None and os.geteuid() == 0:
        os.setresuid(0, 0, 0)  # the payload ended: close the session with the ids that opened it
    pam_end = call.end_pam()
    if failure is not None:
        # Nothing of the payload ran; chdir as the target failing is the caller's problem.
        code = EXIT_CLIENT if failure.step == "chdir" else EXIT_NOT_EXECUTABLE
        call.audit("end", status=code, reason="exec_failed", step=failure.step, errno=failure.errno,
                   **pam_end)
        call.say(f"glexec: cannot execute payload ({failure.step}): {os.strerror(failure.errno)}")
        return code
    code = payload_exit_status(status, signum)
    end = dict(payload_pid=pid, status=code, signal=signum, cpu_user=round(cpu_user, 6),
               cpu_system=round(cpu_system, 6), **pam_end)
    try:
        call.audit("end", **end)
    except SystemFault as lost:
        # The payload has run: its status stands, but a lost end record is never silent.
        call.end_record_lost(lost, end)
    call.monitor(lambda audit: [audit.monitor_terminated(cpu_user, cpu_system)])
    return code


# -- the call's state and its audit trail ----------------------------------------------

def _boot_id():
    """This boot's id: the back-mapper never compares monotonic times across boots."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return f.read(64).strip().decode("ascii", "replace")
    except OSError:
        return None


class Paths:
    """Compiled-in locations: the shim passes the config path; the default state and log
    directories are those ``make install`` wrote into site_paths (LOCALSTATEDIR)."""

    def __init__(self, engine_file, config):
        from glexec_py import site_paths
        self.engine = engine_file
        self.config = config
        self.state_dir = site_paths.STATE_DIR
        self.audit_file = site_paths.LOG_DIR + "/audit.jsonl"


class Call:
    """What is known about this invocation so far; every audit record is built from it."""

    def __init__(self, paths):
        self.paths = paths
        self.facts = self.cfg = self.identity = self.target = self.resolved = None
        self.caller_names = None
        self.credential = self.credential_path = self.staged_proxy = self.chain = None
        self.voms = self.mapped_by = self.verified_at = self.eec_depth = None
        self.payload_pid = self.lease = self.namespaces = self.new_lease = None
        self.plan_view = None
        self.granted = False
        self.pam = self.pam_info = self.pam_account = None
        self.pam_skipped = []
        self._env = None

    def caller_env(self):
        if self._env is None:
            env = {}
            for entry in self.facts.env:
                name, sep, value = entry.partition(b"=")
                if sep and name not in env:
                    env[name] = value
            self._env = env
        return self._env

    def caller_account(self):
        from glexec_py.effects.accounts import Account
        import pwd
        pw = pwd.getpwuid(self.facts.ruid)
        return Account(pw.pw_name, pw.pw_uid, self.facts.rgid, self.caller_names[1],
                       tuple(sorted({self.facts.rgid, *self.facts.groups})), (), pw.pw_dir)

    def decide(self, plan, executor=None, *, limits=True):
        """`plan` is what runs: its rlimits as the executor (effects.payload, or the engine
        service's) can give them (core.plan.within; ``limits``), its audit view
        (core.plan.audit_view, over the very bytes the executor is given) for the next
        record.  An unencodable plan is refused here, before anything is granted."""
        from glexec_py.core.plan import audit_view, within
        from glexec_py.effects import payload
        if limits:
            ceiling = payload.rlimit_ceiling((executor or payload).in_place_pid())
            plan = plan.replace(rlimits=within(plan.rlimits, ceiling)) if ceiling else plan
        self.plan_view = audit_view(plan, payload.encoded_plan(plan))
        return plan

    def glexec_pid(self):
        """The glexec process's pid: this one in-process (the shim exec'd the engine), the
        shim's when the engine service runs the call."""
        return self.facts.pid if self.facts is not None else os.getpid()

    def started(self, pid):
        self.payload_pid = pid
        self.monitor(self.monitor_started)

    def monitor_started(self, audit):
        ident, voms = self.identity, self.voms
        first_ac = voms.acs[0] if voms is not None and voms.acs else None
        return audit.monitor_started(
            self.target.uid, ident.subject if ident is not None else None,
            (first_ac["vo"], first_ac["issuer"]) if first_ac else None, ident.groups if ident is not None else ())

    def monitor(self, lines):
        """The tracking monitor's syslog lines (audit.monitor_lines), for Gratia's probe:
        ident ``glexec.mon[<this engine's pid>#<the payload's pid>]``. Best effort, as syslog."""
        if self.cfg is None or not self.cfg.audit.monitor_lines or self.payload_pid is None:
            return
        from glexec_py.core import audit
        from glexec_py.effects import auditlog
        auditlog.to_syslog(lines(audit), self.cfg.audit.syslog_facility,
                           ident=audit.monitor_ident(self.glexec_pid(), self.payload_pid))

    def say(self, line):
        try:
            os.write(2, line.encode("utf-8", "backslashreplace").replace(b"\n", b" ") + b"\n")
        except OSError:
            pass

    def end_pam(self):
        """Close the PAM session (if one is open) and end the transaction: the payload
        has ended, or nothing will run.  Returns the end record's ``pam_close`` field."""
        if self.pam is None:
            return {}
        pam, self.pam = self.pam, None
        try:
            closed = pam.close_session()
        finally:
            pam.end()
        return {"pam_close": closed} if closed else {}

    def refuse(self, refusal):
        if self.staged_proxy is not None:
            self.staged_proxy.discard()
        self.rollback_lease()
        try:
            self.end_pam()
        except Exception:
            pass  # nothing runs; the refusal and its record matter more
        try:
            self.audit("refuse", exit=refusal.exit_code, reason=refusal.reason, message=refusal.message,
                       detail=refusal.detail)
        except GlexecError:
            pass  # the refusal stands; there is nothing left to run
        message = refusal.message
        self.say(message if message.startswith("glexec: ") else "glexec: " + message)
        return refusal.exit_code

    def rollback_lease(self):
        """A refused call gives back a lease it made itself (never one it reused) before
        its grant record was written: the refuse record says whether it did."""
        if self.new_lease is None or self.granted:
            return
        from glexec_py.effects.leasestore import open_store
        cfg, created = self.new_lease
        self.new_lease = None
        try:
            with open_store(cfg) as store:
                done = store.rollback(created)
        except (GlexecError, OSError):
            done = False
        if self.lease is not None:
            self.lease["rolled_back"] = done

    def end_record_lost(self, fault, end):
        """The end record could not be written: one line to the caller, the record to
        syslog (the back-mapper shows the grant as "end not recorded")."""
        from glexec_py.core.audit import encode
        from glexec_py.effects import auditlog
        cause = fault.detail.get("cause", fault.message)
        self.say(f"glexec: warning: the payload's end record could not be written ({cause})")
        rec = self.record("end", {**end, "lost": str(cause)})
        rec["time"] = auditlog.iso_time(time.time())
        auditlog.to_syslog("end record not written: " + encode(rec).decode("ascii").rstrip(),
                           self.cfg.audit.syslog_facility if self.cfg else "LOG_DAEMON", error=True,
                           pid=self.glexec_pid())

    def record(self, event, extra):
        facts, ident, target = self.facts, self.identity, self.target
        # time and mono are placeholders here, read under the append lock (auditlog.stamper)
        rec = {"time": None, "event": event, "host": os.uname().nodename, "boot_id": _boot_id(), "mono": None,
               "pid": self.glexec_pid()}
        if facts is not None:
            names = self.caller_names or (None, None, ())
            rec["caller"] = {"uid": facts.ruid, "gid": facts.rgid, "user": names[0], "group": names[1],
                             "pid": facts.pid, "ppid": facts.ppid, "sid": facts.sid, "pgid": facts.pgid,
                             "groups": list(facts.groups)}
            rec["log_only"] = not facts.privileged
        if ident is not None:
            rec["identity"] = ident.to_audit()
            if ident.kind == "jwt":
                rec["token"] = ident.detail
            else:  # the classic fields, as back-mapping and log parsers read them
                rec.update(dn=ident.subject, issuer=ident.issuer, eec_fingerprint=ident.fingerprint, **ident.detail)
        if self.voms is not None:
            rec["voms"] = self.voms.to_audit()
        if self.namespaces:
            rec["namespaces"] = self.namespaces
        if target is not None:
            rec.update(account=target.name, uid=target.uid, gid=target.gid, groups=list(target.groups))
            if self.mapped_by is not None:
                rec["mapped_by"] = self.mapped_by
            if self.lease is not None:
                rec["lease"] = self.lease
            if self.pam_info is not None:
                rec["pam"] = self.pam_info
        if facts is not None and event not in ("end", "plan"):
            argv = facts.argv[1:]
            rec.update(command=argv[0] if argv else None, resolved=self.resolved[1] if self.resolved else None,
                       args=argv[1:], cwd=facts.cwd)
            if event == "grant" and target is not None:
                rec["classic"] = self.classic_line()
        if event in ("grant", "plan") and self.plan_view is not None:
            rec["plan"] = self.plan_view    # what runs (none for a proxy copy only)
        rec.update(extra)
        return rec

    def classic_line(self):
        from glexec_py.core.audit import classic_line
        argv = self.facts.argv[1:]
        return classic_line(self.caller_names[0], self.caller_names[1], self.target.name, self.target.group,
                            self.facts.cwd, argv[0] if argv else b"", self.resolved[1] if self.resolved else b"",
                            argv[1:])

    def identity_line(self):
        from glexec_py.core.audit import identity_line
        ident, target = self.identity, self.target
        who = ident.subject if ident.kind == "x509" else ident.mapping_name   # a token: "iss,sub"
        return identity_line(who, ident.groups, target.uid, target.gid, target.groups,
                             lease=self.lease["name"] if self.lease else None, kind=ident.kind)

    def audit(self, event, **extra):
        """Write one record; SystemFault if it cannot be written (then nothing may run)."""
        from glexec_py.core.audit import encode
        from glexec_py.effects import auditlog
        rec = self.record(event, extra)
        path = self.cfg.audit.file if self.cfg else self.paths.audit_file
        privileged = self.facts.privileged if self.facts is not None else os.geteuid() == 0
        ship_to = (self.cfg.audit.ship_socket, self.cfg.audit.ship_facility, self.glexec_pid()) \
            if self.cfg is not None and self.cfg.audit.ship else None
        auditlog.append(path, auditlog.stamper(rec, encode), privileged=privileged, ship_to=ship_to)
        if self.cfg is not None and self.cfg.audit.syslog:
            if event == "grant" and "classic" in rec:
                auditlog.to_syslog([self.identity_line(), rec["classic"]], self.cfg.audit.syslog_facility,
                                   pid=self.glexec_pid())
            elif event == "refuse":
                auditlog.to_syslog(f"refused ({rec.get('reason')}): {rec.get('message')}",
                                   self.cfg.audit.syslog_facility, error=True, pid=self.glexec_pid())

