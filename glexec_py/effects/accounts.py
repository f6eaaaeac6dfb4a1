"""Account facts from the name service (passwd/group)."""
import grp
import os
import pwd

from glexec_py.errors import SystemFault


class Account:
    __slots__ = ("name", "uid", "gid", "group", "groups", "group_names", "home")

    def __init__(self, name, uid, gid, group, groups, group_names, home):
        self.name, self.uid, self.gid, self.group = name, uid, gid, group
        self.groups, self.group_names, self.home = groups, group_names, home


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def caller_names(facts):
    """Runs as: any user (name service lookups). (user name, primary group name,
    names of all the caller's groups) for the caller's real ids."""
    try:
        user = pwd.getpwuid(facts.ruid).pw_name
    except KeyError:
        user = str(facts.ruid)
    primary = _group_name(facts.rgid)
    names = [primary] + [_group_name(g) for g in facts.groups if g != facts.rgid]
    return user, primary, tuple(names)


def lookup_target(name, mapping_cfg):
    """Runs as: any user (name service lookups).

    The mapped account, refused (SystemFault, a site configuration fault) when it does not
    exist, is root, has a uid outside [min_uid, max_uid], or has a forbidden primary or
    supplementary group."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise SystemFault("target_unsafe", "glexec: mapped account does not exist", account=name) from None
    if pw.pw_uid == 0 or not mapping_cfg.min_uid <= pw.pw_uid <= mapping_cfg.max_uid:
        raise SystemFault("target_unsafe", "glexec: mapped account has a uid outside the allowed range",
                          account=name, uid=pw.pw_uid)
    gids = sorted(set(os.getgrouplist(name, pw.pw_gid)))
    names = tuple(_group_name(g) for g in gids)
    forbidden = set(mapping_cfg.forbidden_groups)
    if pw.pw_gid == 0 or 0 in gids or forbidden.intersection(names):
        raise SystemFault("target_unsafe", "glexec: mapped account is in a privileged group",
                          account=name, groups=list(names))
    return Account(name, pw.pw_uid, pw.pw_gid, _group_name(pw.pw_gid), tuple(gids), names, pw.pw_dir)
