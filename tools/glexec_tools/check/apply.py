"""glexec-check's gathering step: read-only.

Runs as: root for a complete answer (the gridmapdir's metadata sidecar and PAM are
root's), any user otherwise (what cannot be read is reported).  Nothing here writes: the
configuration and ban files are parsed without the engine's cache (``state_dir=None``), the
gridmapdir is listed and its records read without its lock, nothing is leased, audited or
run.  The decisions are ``plan``'s and the engine's own pure functions.
"""
import grp
import json
import os
import pwd
import stat
import time

from glexec_py.core import mapping
from glexec_py.errors import EXIT_DENIED, EXIT_SYSTEM, ConfigError, GlexecError, SystemFault

from glexec_tools.check import plan


class Usage(Exception):
    """A bad argument or an unreadable input: one line, exit 2."""


# --- accounts: the system's, or passwd/group files (testsudoers -p -P) -----------------------

class AccountFacts:
    __slots__ = ("name", "uid", "gid", "gids", "group_names", "home")

    def __init__(self, name, uid, gid, gids, group_names, home):
        self.name, self.uid, self.gid, self.gids = name, uid, gid, tuple(gids)
        self.group_names, self.home = tuple(group_names), home


class NameService:
    """Accounts and groups from ``passwd``/``group`` files, else from the system."""

    def __init__(self, passwd=None, group=None):
        self.from_files = passwd is not None or group is not None
        self._users = self._groups = None
        if passwd is not None:
            self._users = {}
            for n, f in self._rows(passwd, 7):
                self._users.setdefault(f[0], (int(f[2]), int(f[3]), f[5]))
        if group is not None:
            self._groups = {}
            for n, f in self._rows(group, 4):
                self._groups.setdefault(f[0], (int(f[2]), tuple(m for m in f[3].split(",") if m)))

    @staticmethod
    def _rows(path, fields):
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                data = f.read()
        except OSError as e:
            raise Usage(f"cannot read {path}: {e.strerror}") from None
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split(":")
            if len(parts) != fields or not parts[2].isdigit() or (fields == 7 and not parts[3].isdigit()):
                raise Usage(f"{path}:{n}: not a {'passwd' if fields == 7 else 'group'} line")
            yield n, parts

    def group_name(self, gid):
        if self._groups is not None:
            return next((name for name, (g, _) in self._groups.items() if g == gid), str(gid))
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)

    def group(self, name):
        if self._groups is not None:
            found = self._groups.get(name)
            return None if found is None else found[0]
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            return None

    def account(self, name):
        """AccountFacts (uid, primary gid, every gid as getgrouplist gives it) or None."""
        if self._users is not None:
            found = self._users.get(name)
            if found is None:
                return None
            uid, gid, home = found
            gids = {gid} | {g for g, members in (self._groups or {}).values() if name in members}
        else:
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                return None
            uid, gid, home = pw.pw_uid, pw.pw_gid, pw.pw_dir
            gids = set(os.getgrouplist(name, gid))
        gids = sorted(gids)
        return AccountFacts(name, uid, gid, gids, [self.group_name(g) for g in gids], home)


# --- files --------------------------------------------------------------------------------

def trust_problem(path, *, directory=False):
    """Why the engine would not trust ``path`` (its lstat-only rule), or None."""
    from glexec_py.effects import trust
    try:
        trust.check_dir_chain(path) if directory else trust.check_file(path)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return e.strerror
    except SystemFault as e:
        return e.message.removeprefix("glexec: ")
    finally:
        trust._trusted_dirs.clear()     # a tool looks again every time
    return None


def load_config(path):
    """The configuration, strictly parsed (no cache read or written).  ConfigError."""
    from glexec_py.core import config as config_model
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(path, 0, f"cannot read the configuration: {e.strerror}") from None
    try:
        data = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, raw[:e.start].count(b"\n") + 1, "not valid UTF-8") from None
    return config_model.parse_config(data, path)


def read_mapfile(path):
    """``(lines, problem)``: the parsed grid-mapfile and why the engine would not read it."""
    from glexec_py.core import gridmap
    problem = trust_problem(path)
    try:
        with open(path, "rb") as f:
            return gridmap.parse_gridmap(f.read(), path), problem
    except OSError as e:
        return None, problem or e.strerror


def gridmapdir_listing(path):
    """A read-only view of the gridmapdir: ``plan.Listing`` (names in readdir order with
    lstat facts, the metadata records, read without the lock) and the sidecar names;
    ``(None, None, why)`` when it cannot be listed."""
    from glexec_py.effects.gridmapdir import META_DIR, decode_record
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        return None, None, e.strerror
    try:
        rows = []
        with os.scandir(fd) as it:
            for e in it:
                name = os.fsencode(e.name)
                if name[:1] == b".":
                    continue
                try:
                    st = os.lstat(e.name, dir_fd=fd)
                except FileNotFoundError:
                    continue
                rows.append((name, st.st_ino, st.st_nlink, stat.S_ISREG(st.st_mode), st.st_uid, st.st_mode))
        records, side = {}, None
        try:
            mfd = os.open(META_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError:
            mfd = None                      # no sidecar yet (nothing leased by glexec-py) or not root
        if mfd is not None:
            try:
                side = [os.fsencode(n) for n in os.listdir(mfd)]
                for n in side:
                    if n.startswith(b"."):
                        continue
                    try:
                        rfd = os.open(n, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=mfd)
                    except OSError:
                        records[n] = False
                        continue
                    with open(rfd, "rb") as f:
                        records[n] = decode_record(f.read(65537))
            finally:
                os.close(mfd)
        return plan.Listing(rows, records), (rows, records, side or []), None
    finally:
        os.close(fd)


class Refused(Exception):
    """The engine would refuse at ``step`` (``reason``, one-line ``why``, exit code)."""

    def __init__(self, step, reason, why, exit_code):
        super().__init__(why)
        self.step, self.reason, self.why, self.exit = step, reason, why.removeprefix("glexec: "), exit_code


def _from_glexec(step, error):
    return Refused(step, error.reason, error.message, error.exit_code)


# --- explain --------------------------------------------------------------------------------

class Request:
    """What to explain: exactly one of ``proxy``/``token``/``dn`` (+ ``fqans``, ``issuer``),
    and ``mapcount`` (GLEXEC_MAPCOUNT), ``caller`` (for omission_private_key), ``pam``."""

    def __init__(self, *, proxy=None, token=None, dn=None, fqans=(), issuer=None, mapcount=None,
                 caller=None, pam=True):
        self.proxy, self.token, self.dn, self.fqans, self.issuer = proxy, token, dn, tuple(fqans), issuer
        self.mapcount, self.caller, self.pam = mapcount, caller, pam


class _Seen:
    """The engine's ``call`` attributes its verification steps read and set."""

    def __init__(self):
        self.chain = self.verified_at = self.voms = self.namespaces = self.eec_depth = None
        self.identity = None


def verify(cfg, req):
    """``(identity, seen, verification view)``: the credential verified as the engine does
    it (chain, proxy policy, namespaces, VOMS; or the token), or the given DN taken as is."""
    if req.dn is not None:
        return _dn_identity(req), None, {"result": "not verified",
                                         "why": "--dn: the DN and FQANs are taken as if verified"}
    if req.token is not None:
        return _verify_token(cfg, req)
    return _verify_proxy(cfg, req)


def _read(path, cap):
    try:
        with open(path, "rb") as f:
            data = f.read(cap + 1)
    except OSError as e:
        raise Usage(f"cannot read {path}: {e.strerror}") from None
    if len(data) > cap:
        raise Refused("verify", "credential_too_large", "credential is larger than credentials.max_file_size",
                      201)
    return data


def _verify_proxy(cfg, req):
    from glexec_py import engine
    from glexec_py.core import proxychain
    from glexec_py.core.authz import listed
    from glexec_py.effects import native, trust
    data = _read(req.proxy, cfg.credentials.max_file_size)
    seen = _Seen()
    creds = cfg.credentials
    try:
        trust.check_dir_chain(creds.ca_dir)
        seen.verified_at = int(time.time())
        result = native.verify_chain(data, creds.ca_dir, seen.verified_at, crl_expired_ok=creds.crl_expired_ok)
        key_optional = req.caller is not None and listed(cfg.callers.omission_private_key, req.caller)
        verified = proxychain.interpret(
            result, key_required=not key_optional, allow_limited=creds.allow_limited_proxy,
            require_limited=creds.require_limited_proxy, max_proxy_lifetime=creds.max_proxy_lifetime or None,
            min_remaining=creds.min_proxy_remaining or None, now=seen.verified_at,
            allow_legacy=creds.allow_legacy_proxy, legacy_max_levels=creds.legacy_proxy_max_levels)
        seen.chain = result.chain
        engine.check_namespaces(seen, cfg, verified)
        identity = engine.establish_identity(seen, cfg, verified)
    except GlexecError as e:
        raise _from_glexec("verify", e) from None
    finally:
        trust._trusted_dirs.clear()
    view = {"result": "verified", "depth": verified.depth, "kinds": list(verified.kinds)}
    if seen.voms is not None:
        view["voms"] = seen.voms.to_audit()
    if seen.namespaces:
        view["namespaces"] = seen.namespaces
    return identity, seen, view


def _verify_token(cfg, req):
    from glexec_py.core import identity as model
    from glexec_py.core import tokens
    from glexec_py.effects import native, tokenkeys
    if cfg.tokens is None:
        raise Refused("verify", "token_disabled", "this site does not accept tokens", 201)
    policy = tokens.TokenPolicy(cfg.tokens)
    raw = _read(req.token, policy.max_size)
    try:
        verified = tokens.verify_token(raw, policy, tokenkeys.KeyStore(policy), time.time(),
                                       verify=native.verify_jws)
    except GlexecError as e:
        raise _from_glexec("verify", e) from None
    return model.from_token(verified), None, {"result": "verified", "kind": "jwt"}


def _dn_identity(req):
    from glexec_py.core import dn
    from glexec_py.core import identity as model
    from glexec_py.core.fqan import FQANError, canonical_fqan
    try:
        canonical = dn.canonical(dn.parse_slash(req.dn))
        if req.issuer is not None:
            dn.parse_slash(req.issuer)
    except dn.DNError as e:
        raise Usage(f"--dn/--issuer: {e}") from None
    fqans = []
    for f in req.fqans:
        try:
            fqans.append(canonical_fqan(f))
        except FQANError as e:
            raise Usage(f"--fqan {f!r}: {e}") from None
    return model.Identity("x509", req.issuer or "", req.dn, fqans, model.roles_of(fqans), 0, 0, "", {},
                          canonical)


def _ban_inputs(identity, seen, req):
    from glexec_py.core import bans, dn
    if seen is not None or identity.kind == "jwt":
        return bans.inputs(identity, seen.chain if seen else None, seen.eec_depth if seen else None)
    # --dn: the DN as the end-entity certificate (no proxies), the issuer if given
    issuer = [dn.parse_slash(req.issuer)] if req.issuer else []
    return {"subject_dns": [dn.parse_slash(identity.subject)], "issuer_dns": issuer,
            "fqans": identity.groups, "fingerprints": [],
            "subject_onelines": [identity.subject], "issuer_onelines": [req.issuer] if req.issuer else []}


def explain_bans(cfg, config_path, identity, seen, req):
    """``(view, refusal or None)``: each source's verdict and the merged one the engine uses."""
    if not cfg.bans.configured(ignore=("max_file_size",)):
        return [], None
    from glexec_py.core import bans
    from glexec_py.effects import banfiles
    sources = banfiles.load_sources(cfg.bans, config_path, None)
    seen_by_bans = _ban_inputs(identity, seen, req)
    decision = bans.check(bans.merge(*(b for _, b in sources)), **seen_by_bans)
    view = plan.ban_view(bans.trace(sources, seen_by_bans))
    refusal = None if decision is None else Refused("bans", decision.reason, "access denied by a site ban: " + decision.explain, EXIT_DENIED)
    return view, refusal


def _target(names, name, cfg):
    found = names.account(name)
    if found is None:
        raise Refused("map", "target_unsafe", "mapped account does not exist", EXIT_SYSTEM)
    why = mapping.account_refusal(name, found.uid, found.gid, found.gids, found.group_names, cfg.mapping)
    if why:
        raise Refused("map", "target_unsafe", why[0], EXIT_SYSTEM)
    return found


def _resolver(names, cfg):
    def resolve(raw):
        problem = mapping.voms_group_name_problem(bytes(raw))
        if problem:
            raise Refused("map", "groupmap_invalid", problem, EXIT_SYSTEM)
        text = bytes(raw).decode("ascii")
        gid = names.group(text)
        if gid is None:
            raise Refused("map", "group_missing", "a VOMS group of the groupmapfile does not exist", EXIT_SYSTEM)
        if mapping.voms_group_privileged(text, gid, names.group_name(gid), cfg.mapping):
            raise Refused("map", "target_unsafe", "a VOMS group of the groupmapfile is privileged", EXIT_SYSTEM)
        return gid
    return resolve


def explain_mapping(cfg, identity, req, names, gridmapdir, exp):
    """Fills ``exp`` (mapping, groups, lease, account); raises Refused where the engine would."""
    mp = cfg.mapping
    raw = None if req.mapcount is None else str(req.mapcount).encode()
    try:
        count = mapping.mapcount(raw, mp.max_mappings_per_credential)
    except ValueError as e:
        raise Refused("map", "mapcount_invalid", str(e), 201) from None
    lines, problem = read_mapfile(mp.gridmapfile)
    if lines is None or problem:
        raise Refused("map", "gridmapfile", f"cannot read the gridmapfile: {problem}", EXIT_SYSTEM)
    decision = mapping.decide(lines, mp.order, identity.mapping_name, [g.encode() for g in identity.groups],
                              grouped=bool(mp.groupmapfile))
    exp["mapping"]["tried"] = plan.trace_view(decision, mp.order, lines, mp.gridmapfile)
    if decision.kind is None:
        raise Refused("map", "no_mapping", "no mapping for this identity", EXIT_DENIED)
    groups = None
    if decision.voms_groups:
        glines, problem = read_mapfile(mp.groupmapfile)
        if glines is None or problem:
            raise Refused("map", "groupmapfile", f"cannot read the groupmapfile: {problem}", EXIT_SYSTEM)
        try:
            found, primary, secondary = mapping.voms_groups(glines, decision.group_keys, _resolver(names, cfg),
                                                            mapall=mp.groupmap_all, mapmin=mp.groupmap_min)
        except mapping.GroupsRefused as e:
            if "groups" in e.detail:
                exp["groups"] = e.detail["groups"]
            raise Refused("map", e.reason, e.what, EXIT_DENIED) from None
        exp["groups"] = found
        groups = (primary, secondary)
    if decision.kind == "local":
        target = _target(names, plan.text(decision.name), cfg)
    else:
        target = _explain_lease(cfg, identity, req, decision, groups, count, names, gridmapdir, exp)
    gids = [groups[0], *[g for g in groups[1] if g != groups[0]]] if groups else list(target.gids)
    exp["account"] = {"name": target.name, "uid": target.uid, "gid": groups[0] if groups else target.gid,
                      "groups": [names.group_name(g) for g in dict.fromkeys(gids)]}
    return target


def _explain_lease(cfg, identity, req, decision, groups, count, names, gridmapdir, exp):
    mp = cfg.mapping
    if not mp.gridmapdir:
        raise Refused("map", "gridmapdir", "the gridmapfile names a pool but mapping.gridmapdir is not set",
                      EXIT_SYSTEM)
    path = gridmapdir or mp.gridmapdir
    if gridmapdir is None:
        problem = trust_problem(path, directory=True)
        if problem:
            raise Refused("map", "gridmapdir_unsafe", f"gridmapdir: {problem}", EXIT_SYSTEM)
    listing, _raw, why = gridmapdir_listing(path)
    if listing is None:
        raise Refused("map", "gridmapdir_open", f"cannot open gridmapdir: {why}", EXIT_SYSTEM)
    key = mapping.lease_key(identity)
    group_names = ()
    if groups:
        gids = mapping.lease_gids(*groups, mp.lease_secondary_groups)
        group_names = tuple(names.group_name(g).encode() for g in gids)
    owner = mapping.lease_owner(identity, key)
    skip = set()
    while True:
        try:
            lease = plan.predict_lease(listing, key, decision.name, owner, group_names, count, skip=skip)
        except plan.LeaseRefused as e:
            raise Refused("map", e.reason, e.what, EXIT_DENIED if e.reason in (
                "pool_exhausted", "lease_collision", "lease_draining", "wrong_pool", "lease_name") else EXIT_SYSTEM)
        exp["lease"] = {k: plan.text(v) for k, v in lease.items()}
        account = plan.text(lease["account"])
        try:
            target = _target(names, account, cfg)
        except Refused:
            exp["lease"]["status"] += ": refused, the account may not be a target (nothing is leased)"
            raise
        if lease["status"] != "would lease" or not req.pam or not _pam_wanted(cfg, names):
            return target
        _pam_service(cfg)          # as the engine's pam_admits: the service first
        ok, code = pam_account(cfg, account, req.caller or "root")
        if ok:
            return target
        exp.setdefault("pam_skipped", []).append({"account": account, "pam_code": code})
        skip.add(lease["account"])


def _pam_service(cfg):
    from glexec_py.effects import pam
    try:
        pam.check_service(cfg.pam.service)
    except SystemFault as e:
        raise _from_glexec("pam", e) from None


def _pam_wanted(cfg, names):
    return cfg.pam.enabled and not names.from_files and os.geteuid() == 0


def pam_account(cfg, account, caller="root"):
    """Runs as: root.  PAM account management for ``account`` (the engine's check, never
    authentication or a session): ``(admitted, pam_code)``."""
    from glexec_py.effects import pam
    from glexec_py.errors import NotAuthorized
    handle = pam.Pam(cfg.pam.service, account, caller)
    try:
        return True, handle.account()
    except NotAuthorized as refused:
        return False, refused.detail.get("pam_code")
    finally:
        handle.end()


def explain(config_path, req, names, gridmapdir=None):
    """The explanation of one request: a plain dict (plan.render_text / JSON) and the
    exit code (0 would grant, 1 would refuse)."""
    cfg = load_config(config_path)
    exp = {"config": config_path, "identity": None, "verification": None, "bans": [],
           "mapping": {"order": list(cfg.mapping.order), "tried": []}}
    steps = []
    problem = trust_problem(config_path)
    if problem:
        steps.append(_step(Refused("config", "untrusted_install", f"configuration: {problem}", EXIT_SYSTEM)))
    try:
        identity, seen, exp["verification"] = verify(cfg, req)
    except Refused as r:
        exp["verification"] = {"result": "refused", "why": r.why}
        exp["identity"] = {"kind": "unknown", "subject": "(not verified)"}
        steps.append(_step(r))
        return _finish(exp, steps)
    exp["identity"] = {"kind": identity.kind, "subject": identity.subject, "issuer": identity.issuer,
                       "groups": list(identity.groups), "mapping_name": plan.text(identity.mapping_name),
                       "key": list(identity.key)}
    try:
        exp["bans"], refusal = explain_bans(cfg, config_path, identity, seen, req)
    except ValueError as e:      # core.dn.DNError: the engine refuses a malformed name
        exp["bans"], refusal = [], Refused("bans", "credential_invalid", f"malformed name: {e}", 201)
    if refusal:
        steps.append(_step(refusal))
    target = None
    try:
        target = explain_mapping(cfg, identity, req, names, gridmapdir, exp)
    except Refused as r:
        steps.append(_step(r))
    if target is not None and cfg.pam.enabled:
        exp["pam"] = explain_pam(cfg, target, names, req, exp, steps)
    return _finish(exp, steps)


def explain_pam(cfg, target, names, req, exp, steps):
    from glexec_py.effects import pam
    try:
        pam.check_service(cfg.pam.service)
    except SystemFault as e:
        steps.append(_step(_from_glexec("pam", e)))
        return {"service": cfg.pam.service, "result": e.message.removeprefix("glexec: ")}
    if not req.pam or not _pam_wanted(cfg, names):
        return {"service": cfg.pam.service, "result": "account check not run (needs root, the system's "
                "accounts and no --no-pam)"}
    if exp.get("lease", {}).get("status") == "would lease":
        return {"service": cfg.pam.service, "result": "admitted (checked for the pool entry above)"}
    ok, code = pam_account(cfg, target.name, req.caller or "root")
    if not ok:
        steps.append(_step(Refused("pam", "pam_account", f"PAM refused the account ({code})", EXIT_DENIED)))
    return {"service": cfg.pam.service, "result": "admitted" if ok else f"refused ({code})"}


def _step(refused):
    return {"step": refused.step, "refused": True, "reason": refused.reason, "why": refused.why,
            "exit": refused.exit}


_ORDER = ("config", "verify", "bans", "map", "pam")


def _finish(exp, steps):
    steps.sort(key=lambda s: _ORDER.index(s["step"]))
    code, exp["verdict"] = plan.verdict(steps)
    return exp, code


def dumps(exp):
    return json.dumps(exp, indent=2, sort_keys=True, ensure_ascii=False)


# --- lint -----------------------------------------------------------------------------------

def lint(config_path, names, gridmapdir=None):
    """Every finding for the configuration and the files it names (plan.Finding list)."""
    F, E, W, I = plan.Finding, plan.ERROR, plan.WARNING, plan.INFO
    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        return [F(E, f"{e.filename}:{e.line}" if e.line else e.filename, e.what)], None
    out = _lint_tool_sections(config_path)
    problem = trust_problem(config_path)
    if problem:
        out.append(F(E, config_path, f"glexec refuses this configuration: {problem}"))
    for where, path, is_dir in (("state_dir", cfg.state_dir, True), ("credentials.ca_dir", cfg.credentials.ca_dir, True)):
        problem = trust_problem(path, directory=is_dir)
        if problem:
            out.append(F(E, f"{config_path}: {where}", f"{path}: {problem}"))
    audit_dir = os.path.dirname(cfg.audit.file)
    if not os.path.isdir(audit_dir):
        out.append(F(E, f"{config_path}: audit.file", f"directory {audit_dir} does not exist"))
    out += _lint_ca_dir(cfg, config_path)
    if cfg.credentials.vomsdir:
        problem = trust_problem(cfg.credentials.vomsdir, directory=True)
        if problem:
            out.append(F(E, f"{config_path}: credentials.vomsdir", f"{cfg.credentials.vomsdir}: {problem}"))
    out += _lint_mapping(cfg, config_path, names, gridmapdir)
    if cfg.bans.configured(ignore=("max_file_size",)):
        from glexec_py.effects import banfiles
        out += plan.lint_bans(banfiles.load_sources(cfg.bans, config_path, None))
    if cfg.pam.enabled:
        from glexec_py.effects import pam
        try:
            pam.check_service(cfg.pam.service)
        except SystemFault as e:
            out.append(F(E, f"{config_path}: pam.service", e.message.removeprefix("glexec: ")))
    if not cfg.callers.users and not cfg.callers.groups:
        out.append(F(W, f"{config_path}: callers", "no caller is allowed: every call is refused"))
    if names.from_files:
        out.append(F(I, "accounts", "accounts from --passwd/--group files, not the system's"))
    return plan.sort_findings(out), cfg


def _lint_tool_sections(config_path):
    """Each site tool's section (prune:, sweep:, leases:, backmap:), checked by the tool's
    own parser (front.SECTIONS), so a section the timer would refuse is found now."""
    import importlib
    from glexec_tools import front
    with open(config_path, "rb") as f:
        text = f.read().decode("utf-8")
    out = []
    for name, module in sorted(front.SECTIONS.items()):
        try:
            importlib.import_module(module).parse_section(text, config_path)
        except ConfigError as e:
            where = f"{e.filename}:{e.line}" if e.line else e.filename
            out.append(plan.Finding(plan.ERROR, where, f"{e.what} (read by the {name} tool)"))
    return out


def _lint_ca_dir(cfg, config_path):
    ca_dir, mode = cfg.credentials.ca_dir, cfg.credentials.namespace_policy
    try:
        entries = sorted(os.listdir(ca_dir))
    except OSError as e:
        return [plan.Finding(plan.ERROR, f"{config_path}: credentials.ca_dir", f"{ca_dir}: {e.strerror}")]
    hashes = sorted({n.split(".")[0] for n in entries if len(n) > 9 and n[8] == "." and n[9:].isdigit()})
    if not hashes:
        return [plan.Finding(plan.ERROR, ca_dir, "no CA certificates (<hash>.0): every proxy is refused")]
    out = []
    if mode != "ignore":
        sev = plan.ERROR if mode == "require" else plan.INFO
        for h in hashes:
            if f"{h}.namespaces" not in entries and f"{h}.signing_policy" not in entries:
                out.append(plan.Finding(sev, f"{ca_dir}/{h}.0", "no .namespaces or .signing_policy: "
                                        + ("certificates this CA issued are refused (namespace_policy: require)"
                                           if mode == "require" else "not restricted (namespace_policy: optional)")))
    return out


def _lint_mapping(cfg, config_path, names, gridmapdir):
    from glexec_py.core import leases as core_leases
    mp, F = cfg.mapping, plan.Finding
    out = []
    lines, problem = read_mapfile(mp.gridmapfile)
    if problem:
        out.append(F(plan.ERROR, mp.gridmapfile, f"glexec cannot use the gridmapfile: {problem}"))
    if lines is None:
        return out
    pools = sorted({m[1:] for line in lines for m in line.mappings if m.startswith(b".") and len(m) > 1
                    and not m.endswith(b"\r")})
    present = None
    path = gridmapdir or mp.gridmapdir
    if path:
        if gridmapdir is None:
            problem = trust_problem(path, directory=True)
            if problem:
                out.append(F(plan.ERROR, f"{config_path}: mapping.gridmapdir", f"{path}: {problem}"))
        listing, raw, why = gridmapdir_listing(path)
        if listing is None:
            out.append(F(plan.ERROR, f"{config_path}: mapping.gridmapdir", f"{path}: {why}"))
        else:
            present = {p: [n for n in listing.names if core_leases.pool_member(n, p)] for p in pools}
            out += plan.lint_pools(path, present, names, mp)
            rows, records, side = raw
            fsck = core_leases.plan_fsck([r[:4] for r in rows], pools, meta={k: v or None for k, v in records.items()},
                                         sidecar=side, owners={r[0]: (r[4], r[5]) for r in rows})
            out += plan.lint_fsck(path, fsck)
    out += plan.lint_gridmap(mp.gridmapfile, lines, mp.order, names, mp, present, bool(mp.gridmapdir))
    if mp.groupmapfile:
        glines, problem = read_mapfile(mp.groupmapfile)
        if problem:
            out.append(F(plan.ERROR, mp.groupmapfile, f"glexec cannot use the groupmapfile: {problem}"))
        for line in glines or ():
            for m in line.mappings:
                if m.startswith(b"."):
                    continue
                where = f"{mp.groupmapfile}:{line.lineno}"
                try:
                    _resolver(names, cfg)(m)
                except Refused as r:
                    out.append(F(plan.ERROR, where, f"group {plan.text(m)}: {r.why}"))
    return out
