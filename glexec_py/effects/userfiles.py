"""File I/O on behalf of a user: the caller's proxy in, the target's proxy copy out.

Every path here is chosen by the caller, so every access is made with that user's file
system identity (fsuid/fsgid/groups): the kernel, not our checks, decides what may be
opened. Our checks come on top: owner, mode, type, size, no symlinks.
"""
import os
from stat import S_ISDIR, S_ISREG

from glexec_py.effects import native
from glexec_py.errors import CallerError, SystemFault


class as_user:
    """Context manager. Runs as: root; switches only the file-system identity to `user`
    (fsuid, fsgid, groups) and back to root on exit. In log-only mode (not root) it does
    nothing: the process already is the caller."""

    def __init__(self, uid, gid, groups):
        self.ids = (uid, gid, list(groups))

    def __enter__(self):
        if os.geteuid() == 0:
            native.set_fs_identity(*self.ids)
        return self

    def __exit__(self, *exc):
        if os.geteuid() == 0:
            native.restore_fs_identity()
        return False


def read_credential(path, caller, max_size, what="credential"):
    """Runs as: root, with the caller's file-system identity (see `as_user`).

    Returns the bytes of a caller-owned regular file, mode no wider than 0700, not a
    symlink, at most `max_size` bytes, read under a shared flock."""
    if not path.startswith(b"/"):
        raise CallerError(f"{what}_path", f"glexec: {what} path must be absolute", path=path)
    with as_user(caller.ruid, caller.rgid, caller.groups):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as e:
            raise _open_error(e, path, what, caller.ruid) from None
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode):
            raise CallerError(f"{what}_type", f"glexec: {what} is not a regular file", path=path)
        if st.st_uid != caller.ruid:
            raise CallerError(f"{what}_owner", f"glexec: {what} is not owned by the caller",
                              path=path, owner=st.st_uid)
        if st.st_mode & 0o7077:
            raise CallerError(f"{what}_mode", f"glexec: {what} mode {st.st_mode & 0o7777:04o} is wider than 0700",
                              path=path, mode=st.st_mode & 0o7777)
        if st.st_size > max_size:
            raise CallerError(f"{what}_size", f"glexec: {what} is larger than {max_size} bytes", path=path)
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_SH)
        data = os.read(fd, max_size + 1)
    finally:
        os.close(fd)
    if len(data) > max_size:
        raise CallerError(f"{what}_size", f"glexec: {what} is larger than {max_size} bytes", path=path)
    return data


def _open_error(e, path, what, caller_uid):
    """Runs as: root with the caller's file-system identity (stat reveals nothing the
    caller could not stat itself)."""
    import errno
    if e.errno == errno.EACCES:
        try:
            if os.lstat(path).st_uid != caller_uid:
                return CallerError(f"{what}_owner", f"glexec: {what} is not owned by the caller", path=path)
        except OSError:
            pass
    if e.errno == errno.ELOOP:
        return CallerError(f"{what}_type", f"glexec: {what} is a symbolic link", path=path)
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return CallerError(f"{what}_missing", f"glexec: {what} does not exist", path=path)
    if e.errno == errno.EACCES:
        return CallerError(f"{what}_unreadable", f"glexec: {what} is not readable by the caller", path=path)
    return CallerError(f"{what}_unreadable", f"glexec: cannot open {what}: {os.strerror(e.errno)}", path=path)


class StagedProxy:
    """A target proxy written but not yet visible, waiting for `commit` (after the audit
    record) or `discard`: an unnamed O_TMPFILE file (`fd`; `tmp_name` None) where the file
    system has them, else a file under a temporary name. Either way the file is flock'ed
    while this process lives, so a later call can tell a crashed call's leftover from one in
    progress. Holds the directory fd, so the final link cannot be redirected by renaming
    directories in between. ``path`` is where the proxy is (or will be after `commit`): for
    the default location it may be a fresh unique name instead (see `stage_target_proxy`),
    so read it again after `commit`."""

    def __init__(self, target, dirfd, tmp_name, final_name, path, fd=None, default_location=False):
        self.target, self.dirfd, self.tmp_name = target, dirfd, tmp_name
        self.final_name, self.path, self.fd = final_name, path, fd
        # the default location: a planted file there never makes the call fail
        self.default_name = final_name if default_location else None

    def commit(self):
        """Runs as: root with the target's file-system identity."""
        with as_user(*self.target):
            try:
                if self.default_name is None:
                    _refuse_foreign_file(self.dirfd, self.final_name, self.target[0], self.path)
                    self._install()
                else:
                    self._commit_default()
            except OSError as e:
                self.discard()
                raise SystemFault("target_proxy_write", f"glexec: cannot install target proxy: {os.strerror(e.errno)}",
                                  path=self.path) from None
            except CallerError:
                self.discard()
                raise
        self._close()

    def _install(self):
        """The staged file under `final_name`, replacing the target's own file there."""
        if self.tmp_name is None:
            self._link_unnamed()
        else:
            os.rename(self.tmp_name, self.final_name, src_dir_fd=self.dirfd, dst_dir_fd=self.dirfd)
            self.tmp_name = None

    def _link_unnamed(self):
        """Give the O_TMPFILE file its final name: one linkat when there is no file yet
        (never a named temporary); to replace a proxy, a temporary name then rename."""
        try:
            self._link_as(self.final_name)
            return
        except FileExistsError:
            pass
        for slot in _tmp_names(self.final_name):
            try:
                self._link_as(slot)
            except FileExistsError:
                continue                          # another call's, or a leftover
            self.tmp_name = slot
            break
        else:
            raise FileExistsError(17, "all temporary names in use")
        os.rename(self.tmp_name, self.final_name, src_dir_fd=self.dirfd, dst_dir_fd=self.dirfd)
        self.tmp_name = None

    def _commit_default(self):
        """A file planted at the default name after staging, or while we rename (the sticky
        bit then refuses to replace it), sends the proxy elsewhere as at staging; so do
        temporary names all taken by others' files (EEXIST from `_link_unnamed`)."""
        import errno
        if self.final_name == self.default_name:
            if _foreign_file(self.dirfd, self.final_name, self.target[0]):
                self.elsewhere()
            else:
                try:
                    self._install()
                    return
                except OSError as e:
                    planted = e.errno in (errno.EPERM, errno.EACCES) and _foreign_file(
                        self.dirfd, self.final_name, self.target[0])
                    if not planted and e.errno != errno.EEXIST:
                        raise
                    self.elsewhere()
        self._link_as(self.final_name)          # a fresh name
        if self.tmp_name is not None:
            os.unlink(self.tmp_name, dir_fd=self.dirfd)
            self.tmp_name = None

    def _link_as(self, name):
        """The staged file (unnamed, or its temporary name) under ``name`` too: link()
        never replaces whatever is there (FileExistsError)."""
        if self.tmp_name is None:
            os.link(b"/proc/self/fd/%d" % self.fd, name, dst_dir_fd=self.dirfd, follow_symlinks=True)
        else:
            os.link(self.tmp_name, name, src_dir_fd=self.dirfd, dst_dir_fd=self.dirfd)

    def elsewhere(self):
        """The default name is taken by someone else's file or a link: use
        ``<name>.<random>`` in the same directory (the payload's X509_USER_PROXY says where)."""
        # os.urandom, as secrets.token_hex does (importing secrets loads hashlib: ~13 ms)
        self.final_name = b"%s.%s" % (self.default_name, os.urandom(8).hex().encode())
        self.path = self.path.rpartition(b"/")[0] + b"/" + self.final_name

    def discard(self):
        """Runs as: root with the target's file-system identity."""
        if self.dirfd is None:
            return
        if self.tmp_name is not None:
            with as_user(*self.target):
                try:
                    os.unlink(self.tmp_name, dir_fd=self.dirfd)
                except OSError:
                    pass
        self._close()

    def _close(self):
        for fd in (self.fd, self.dirfd):
            if fd is not None:
                os.close(fd)
        self.fd = self.dirfd = None


TMP_SLOTS = 16


def _tmp_names(name):
    """The temporary names of `name` (``.<name>.glexec-<k>``): a fixed few, so that the
    next call finds a crashed call's leftover by probing them, without listing the
    directory (/tmp may hold many thousands of names)."""
    return [b".%s.glexec-%d" % (name, k) for k in range(TMP_SLOTS)]


def _remove_leftovers(dirfd, name, uid):
    """Runs as: root with the target's file-system identity.  Temporary copies of `name`
    that crashed calls left (owned by the target, not empty, not flock'ed by a live call)
    are removed: they may hold a private key."""
    import fcntl
    for leftover in _tmp_names(name):
        try:
            # O_RDWR: on NFS flock is a POSIX write lock, which needs a writable fd
            fd = os.open(leftover, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                         dir_fd=dirfd)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not S_ISREG(st.st_mode) or st.st_uid != uid or not st.st_size:
                continue                          # not ours, or just created (not yet locked)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue                          # a live call is staging it
            now = os.stat(leftover, dir_fd=dirfd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(leftover, dir_fd=dirfd)
        except OSError:
            pass
        finally:
            os.close(fd)


def _foreign_file(dirfd, name, uid):
    """True if `name` exists and is not a regular file owned by `uid` (a link, someone
    else's file, a directory ...)."""
    try:
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return not S_ISREG(st.st_mode) or st.st_uid != uid


def _refuse_foreign_file(dirfd, name, uid, path):
    if _foreign_file(dirfd, name, uid):
        raise CallerError("target_proxy_location",
                          "glexec: target proxy exists and is not a file owned by the target",
                          path=path)


def stage_target_proxy(path, data, target, sticky_root_dir_ok, caller_uid=None):
    """Runs as: root with the target's file-system identity (see `as_user`).

    Writes `data` (0600, owned by the target) under a temporary name in the directory of
    `path`, which must be reached without symlinks and be owned by the target and not
    writable by others — or the caller's sandbox (`mkgltempdir -t 777`: owned by the
    target, sticky, writable besides only by `caller_uid` through an ACL; core.sandboxdir)
    — or, for the configured default directory only, a root-owned sticky directory such
    as /tmp. Returns a StagedProxy.

    At the default location (`sticky_root_dir_ok`) a file of another user or a link at
    `path` (anyone can plant /tmp/x509up_u<uid>) must not make the target's calls fail: the
    proxy then goes to a fresh ``<name>.<random>`` next to it and the StagedProxy's
    ``path`` says so. A location the caller chose (GLEXEC_TARGET_PROXY) is refused instead."""
    directory, _, name = path.rpartition(b"/")
    if not path.startswith(b"/") or not name or name in (b".", b".."):
        raise CallerError("target_proxy_location", "glexec: target proxy path must be an absolute file path",
                          path=path)
    import fcntl
    uid = target[0]
    with as_user(*target):
        dirfd = _open_dir_nofollow(directory or b"/", path)
        try:
            st = os.fstat(dirfd)
            owned = st.st_uid == uid and not st.st_mode & 0o022
            sticky_root = sticky_root_dir_ok and st.st_uid == 0 and st.st_mode & 0o1000
            sandbox = not owned and caller_uid is not None and S_ISDIR(st.st_mode) \
                and _caller_sandbox(dirfd, st, uid, caller_uid)
            if not S_ISDIR(st.st_mode) or not (owned or sticky_root or sandbox):
                raise CallerError("target_proxy_location",
                                  "glexec: target proxy directory must be owned by the target and not writable by others",
                                  path=path)
            if not sticky_root_dir_ok:
                _refuse_foreign_file(dirfd, name, uid, path)
            _remove_leftovers(dirfd, name, uid)
            fd, tmp = _create_unnamed(dirfd, name, path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)          # "in progress" for _remove_leftovers
                os.fchmod(fd, 0o600)
                _write_all(fd, data)
                os.fsync(fd)
            except OSError as e:
                os.close(fd)
                if tmp is not None:
                    os.unlink(tmp, dir_fd=dirfd)
                raise SystemFault("target_proxy_write", f"glexec: cannot write target proxy: {os.strerror(e.errno)}",
                                  path=path) from None
            staged = StagedProxy(target, dirfd, tmp, name, path, fd, default_location=sticky_root_dir_ok)
            if sticky_root_dir_ok and _foreign_file(dirfd, name, uid):
                staged.elsewhere()
        except BaseException:
            os.close(dirfd)
            raise
    return staged


def _caller_sandbox(dirfd, st, uid, caller_uid):
    """Runs as: the target's file-system identity.  Is the open directory the caller's
    sandbox (core.sandboxdir.caller_sandbox), judged by its mode and access ACL?"""
    import errno
    from glexec_py.core import sandboxdir
    try:
        acl = sandboxdir.parse_acl(os.getxattr(dirfd, "system.posix_acl_access"))
    except OSError as e:
        if e.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
            return False
        acl = None
    except ValueError:
        return False
    return sandboxdir.caller_sandbox(st.st_mode, acl, uid, st.st_uid, caller_uid)[0]


def _create_unnamed(dirfd, name, path):
    """Runs as: the target's file-system identity.  (fd, None) for an O_TMPFILE file in
    the directory: a crash leaves nothing anyone can open.  Where the file system has no
    O_TMPFILE (NFS, some FUSE): (fd, temporary name), cleaned by the next call."""
    import errno
    try:
        return os.open(b".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o600, dir_fd=dirfd), None
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise SystemFault("target_proxy_write", f"glexec: cannot create target proxy: {os.strerror(e.errno)}",
                              path=path) from None
    failure = None
    for tmp in _tmp_names(name):
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                           dir_fd=dirfd), tmp
        except FileExistsError as e:
            failure = e                           # a live call's (leftovers are gone by now)
        except OSError as e:
            failure = e
            break
    raise SystemFault("target_proxy_write", f"glexec: cannot create target proxy: {os.strerror(failure.errno)}",
                      path=path)


def _open_dir_nofollow(directory, path):
    """Open `directory` component by component, refusing any symlink on the way."""
    fd = os.open(b"/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in directory.split(b"/"):
            if part in (b"", b"."):
                continue
            try:
                nfd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as e:
                raise CallerError("target_proxy_location",
                                  f"glexec: target proxy directory not usable: {os.strerror(e.errno)}",
                                  path=path) from None
            os.close(fd)
            fd = nfd
        # Re-open for real (O_PATH fds cannot be used with fchmod/unlinkat permissions checks).
        real = os.open(b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return real


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
