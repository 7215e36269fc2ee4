#!/usr/bin/env bash
# The image's root filesystem, from Debian packages only: what the
# wallet-balancer binary needs at run time and nothing that runs a command.
# Used by scripts/build-image (on the host, then buildah) and by
# deploy/Dockerfile (in a build stage), so both images have one layout.
#
#   deploy/image/rootfs.sh OUT_DIR BINARY [SUITE]
#
# OUT_DIR/rootfs  the tree, every file owned by root (COPY gives it root
#                 anyway);
# OUT_DIR/journal an empty folder, mode 0700: /var/lib/wallet-balancer,
#                 the one the sidecar writes by default, copied apart with
#                 --chown=10001:10001 by the Containerfile.
#
# Contents (mmdebstrap --variant=extract: the packages' files unpacked, no
# maintainer script run, no dpkg or apt left behind):
# - libc6, libgcc-s1: the binary links glibc and the unwinder;
# - ca-certificates: the Mozilla roots, as the bundle
#   /etc/ssl/certs/ca-certificates.crt (built here, as its postinst would:
#   the RPC client verifies https endpoints with the system's roots);
# - tzdata: local times in third-party libraries; base-files: os-release.
# Their dependencies (debconf, openssl, mawk, perl-base...) come along
# through apt, and every executable of theirs is excluded below: no shell,
# no interpreter, no package manager. Checked at the end.
# Needs: mmdebstrap (Debian package), run as root (for chrootless mode's
# file ownership) with a Debian mirror reachable.
set -euo pipefail

out="${1:?usage: rootfs.sh OUT_DIR BINARY [SUITE]}"
binary="${2:?usage: rootfs.sh OUT_DIR BINARY [SUITE]}"
suite="${3:-bookworm}"
uid=10001

rootfs="$out/rootfs"
rm -rf "$rootfs"
mkdir -p "$out"

set -f # the patterns are dpkg's, not the host's files
excludes=(
  /usr/bin/* /usr/sbin/* /bin/* /sbin/* /usr/libexec/* /usr/games/*
  /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/*
  /usr/share/lintian/* /usr/share/perl5/* /usr/share/debconf/*
  /usr/share/bug/* /usr/share/menu/* /usr/share/bash-completion/* /usr/share/common-licenses/*
  /usr/lib/*/gconv/* /usr/lib/*/perl-base/* /usr/lib/*/perl/*
  /usr/lib/*/libssl.so* /usr/lib/*/libcrypto.so* /usr/lib/*/engines-3/*
  /usr/lib/*/ossl-modules/* /usr/lib/ssl/* /etc/ssl/openssl.cnf
  /etc/debconf.conf /etc/profile /etc/profile.d/* /etc/skel/* /etc/dpkg/*
  /var/lib/dpkg/* /var/cache/debconf/* /etc/update-motd.d/*
)
set +f
dpkgopts=()
for p in "${excludes[@]}"; do dpkgopts+=("--dpkgopt=path-exclude=$p"); done
# The licences stay with what is shipped.
dpkgopts+=("--dpkgopt=path-include=/usr/share/doc/*/copyright")

mmdebstrap --quiet --variant=extract --mode=chrootless \
  --include=libc6,libgcc-s1,base-files,tzdata,ca-certificates \
  "${dpkgopts[@]}" "$suite" "$rootfs"

# What mmdebstrap and apt leave behind: not part of the image.
rm -rf "$rootfs"/var/cache/apt "$rootfs"/var/lib/apt "$rootfs"/etc/apt \
  "$rootfs"/var/lib/dpkg "$rootfs"/var/log/* "$rootfs"/dev/* "$rootfs"/var/cache/ldconfig
# The host's copies; the container runtime mounts its own.
rm -f "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname

# The CA bundle update-ca-certificates would have written.
mkdir -p "$rootfs/etc/ssl/certs"
find "$rootfs/usr/share/ca-certificates/mozilla" -name '*.crt' -print0 | sort -z \
  | xargs -0 cat > "$rootfs/etc/ssl/certs/ca-certificates.crt"
[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] \
  || { echo "rootfs: no CA certificates unpacked" >&2; exit 1; }

# Users: root and the sidecar's (numeric in the image config: Kubernetes'
# runAsNonRoot needs no /etc/passwd; these name it for people and tools).
cat > "$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/nonexistent
wallet-balancer:x:$uid:$uid:wallet-balancer:/var/lib/wallet-balancer:/nonexistent
EOF
cat > "$rootfs/etc/group" <<EOF
root:x:0:
wallet-balancer:x:$uid:
EOF
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group"

install -d -m 0755 "$rootfs/etc/wallet-balancer" "$rootfs/usr/local/bin" "$rootfs/run"
install -d -m 1777 "$rootfs/tmp"
# Mount points: the journal (Kubernetes: a PersistentVolumeClaim) and the
# installed key (an emptyDir); owned by the sidecar where it writes.
# /var/lib/wallet-balancer is not in the tree: the Containerfile creates
# it from OUT_DIR/journal (empty), owned by the sidecar (COPY --chown gives
# no owner to a folder that exists already).
rm -rf "$out/journal"
install -d -m 0700 "$out/journal"
install -d -m 0755 "$rootfs/run/wallet-balancer"
install -d -m 0700 "$rootfs/run/wallet-balancer/key"
install -m 0755 "$binary" "$rootfs/usr/local/bin/wallet-balancer"

# No shell, no interpreter, no executable but ours (shared objects aside).
bad="$(find "$rootfs" -type f -perm /111 ! -name '*.so' ! -name '*.so.*' \
  ! -path "$rootfs/usr/local/bin/wallet-balancer" -printf '/%P\n')"
bad+="$(find "$rootfs" \( -type f -o -type l \) \( -name sh -o -name bash -o -name dash -o -name busybox \
  -o -name 'perl*' -o -name 'python*' -o -name '*awk' \) -printf '\n/%P')"
if [ -n "$bad" ]; then
  echo "rootfs: executables left in the image:$bad" >&2
  exit 1
fi
echo "rootfs: $(du -sh --apparent-size "$rootfs" | cut -f1) in $rootfs"
