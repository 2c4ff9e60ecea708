#!/bin/sh
# Build the mongod stand-in as Debian packages named like MongoDB's:
#   mongodb-org-server_<VERSION>_all.deb  (/usr/bin/mongod, mongod.service, /etc/mongod.conf)
#   mongodb-org_<VERSION>_all.deb         (metapackage depending on the server, as upstream)
# Usage: build-deb.sh VERSION OUTDIR      e.g. build-deb.sh 8.0.4 /tmp/debs
set -eu
VERSION=${1:?usage: build-deb.sh VERSION OUTDIR}
OUT=${2:?usage: build-deb.sh VERSION OUTDIR}
HERE=$(cd "$(dirname "$0")" && pwd)
case "$VERSION" in
    [0-9]*.[0-9]*.[0-9]*) ;;
    *) echo "VERSION must look like 8.0.4" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- mongodb-org-server
S="$WORK/server"
mkdir -p "$S/DEBIAN" "$S/usr/bin" "$S/usr/lib/mongodb-standin/mongod_standin" \
         "$S/lib/systemd/system" "$S/etc" "$S/var/lib/mongodb" "$S/var/log/mongodb" \
         "$S/usr/share/doc/mongodb-org-server"
install -m 0755 "$HERE/mongod" "$S/usr/bin/mongod"
install -m 0644 "$HERE"/mongod_standin/*.py "$S/usr/lib/mongodb-standin/mongod_standin/"
printf 'VERSION = "%s"\n' "$VERSION" > "$S/usr/lib/mongodb-standin/mongod_standin/version.py"
install -m 0644 "$HERE/debian/mongod.service" "$S/lib/systemd/system/mongod.service"
install -m 0644 "$HERE/debian/mongod.conf" "$S/etc/mongod.conf"
install -m 0644 "$HERE/README.md" "$S/usr/share/doc/mongodb-org-server/README.standin.md"
install -m 0755 "$HERE/debian/postinst" "$S/DEBIAN/postinst"
install -m 0755 "$HERE/debian/postrm" "$S/DEBIAN/postrm"
echo /etc/mongod.conf > "$S/DEBIAN/conffiles"
cat > "$S/DEBIAN/control" <<CTL
Package: mongodb-org-server
Version: $VERSION
Architecture: all
Maintainer: rocket-wizard lab <lab@rocket-wizard.invalid>
Depends: python3 (>= 3.11), python3-bson, python3-yaml, adduser
Conflicts: mongodb-server, mongodb-server-core
Section: database
Priority: optional
Description: MongoDB database server (rocket-wizard lab stand-in)
 A small Python program that answers like mongod at the boundaries the
 rocket-wizard touches: /etc/mongod.conf, keyfile checks, bindIp, the wire
 protocol, SCRAM authentication, the localhost exception, replica set
 initiation, heartbeats, elections and replication. Not a database for real
 use; see /usr/share/doc/mongodb-org-server/README.standin.md.
CTL
dpkg-deb --root-owner-group -Zgzip -b "$S" "$OUT/mongodb-org-server_${VERSION}_all.deb" >/dev/null

# --- mongodb-org (metapackage)
M="$WORK/meta"
mkdir -p "$M/DEBIAN"
cat > "$M/DEBIAN/control" <<CTL
Package: mongodb-org
Version: $VERSION
Architecture: all
Maintainer: rocket-wizard lab <lab@rocket-wizard.invalid>
Depends: mongodb-org-server (= $VERSION)
Section: database
Priority: optional
Description: MongoDB open source document-oriented database system (metapackage, lab stand-in)
CTL
dpkg-deb --root-owner-group -Zgzip -b "$M" "$OUT/mongodb-org_${VERSION}_all.deb" >/dev/null
echo "$OUT/mongodb-org-server_${VERSION}_all.deb"
echo "$OUT/mongodb-org_${VERSION}_all.deb"
