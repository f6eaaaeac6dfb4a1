#!/bin/sh
# Build the RPM here: a source tarball of the tree, then rpmbuild -bb --nodeps (see
# glexec-py.spec: the BuildRequires are RPM-distribution names Debian's rpm cannot check).
# Output: $RPM_TOPDIR/RPMS/<arch>/glexec-py-<version>-1.<arch>.rpm (default RPM_TOPDIR: build/rpm)
set -eu
cd "$(dirname "$0")/../.."
top=${RPM_TOPDIR:-$(pwd)/build/rpm}
case $top in /*) ;; *) echo "RPM_TOPDIR must be an absolute path" >&2; exit 2;; esac
version=$(sed -n 's/^Version: *//p' packaging/rpm/glexec-py.spec)
rm -rf "$top"
mkdir -p "$top/SOURCES" "$top/SPECS"
tar -c --exclude=./build --exclude=./.git --exclude=__pycache__ --exclude='*.so' --exclude='*.o' \
    --exclude=./debian --transform "s|^\.|glexec-py-$version|S" . | gzip -n > "$top/SOURCES/glexec-py-$version.tar.gz"
cp packaging/rpm/glexec-py.spec "$top/SPECS/"
rpmbuild -bb --nodeps --define "_topdir $top" "$top/SPECS/glexec-py.spec"
ls "$top"/RPMS/*/glexec-py-*.rpm
