# shellcheck shell=bash
# The package profile of scripts/devenv: pristine Debian 12 (bookworm) and Debian 13
# (trixie) roots for tests/package.rs, which installs kuryr's .deb (scripts/package) into
# a fresh copy of each. Each root is made once by debootstrap (minbase, plus systemd for
# `systemd-analyze verify` and man-db for `man`) from this machine's mirror and kept only
# as a tarball, $PKG_DIR/<suite>.tar: a test unpacks it into $PKG_DIR/test-<suite>-<id>,
# installs, runs and purges there, and removes that copy, so every run starts from a root
# nothing was ever installed into. Nothing of this profile runs. Sourced by scripts/devenv.
PKG_DIR=$DIR/package
PKG_SUITES=(bookworm trixie)
PKG_INCLUDE=man-db,systemd

# What a kept root was made from: another mirror or package list makes it again.
pkg_recipe() { printf 'suite=%s include=%s mirror=%s\n' "$1" "$PKG_INCLUDE" "$(e2_mirror)"; }
pkg_ready() { # pkg_ready SUITE: its tarball is there and was made by this recipe
  [ -f "$PKG_DIR/$1.tar" ] && [ "$(cat "$PKG_DIR/$1.recipe" 2>/dev/null || true)" = "$(pkg_recipe "$1")" ]
}

# pkg_rm_tree DIR: a root of ours removed, never anything mounted under it (rm would
# reach through a bind mount).
pkg_rm_tree() {
  [ -e "$1" ] || return 0
  if awk -v d="$1/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    die "mounts remain under $1; not removing it"
  fi
  rm -rf --one-file-system "$1"
}

pkg_build_root() { # pkg_build_root SUITE
  local suite=$1 mirror root
  mirror=$(e2_mirror)
  root=$PKG_DIR/build-$suite
  log "building a pristine $suite root for the package tests (debootstrap from $mirror)"
  note_change "built the package profile's $suite root"
  pkg_rm_tree "$root"
  rm -f "$PKG_DIR/$suite.tar" "$PKG_DIR/$suite.recipe"
  debootstrap --variant=minbase --include="$PKG_INCLUDE" "$suite" "$root" "$mirror" \
    >"$DIR/log/package-$suite-debootstrap.log" 2>&1 \
    || die "debootstrap of $suite failed: see $DIR/log/package-$suite-debootstrap.log"
  # Downloaded packages are not part of a root; its apt lists (debootstrap's) stay.
  rm -f "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin
  tar --numeric-owner -C "$root" -cf "$PKG_DIR/$suite.tar.tmp" .
  mv -f "$PKG_DIR/$suite.tar.tmp" "$PKG_DIR/$suite.tar"
  pkg_recipe "$suite" >"$PKG_DIR/$suite.recipe"
  pkg_rm_tree "$root"
}

up_package() {
  install_packages debootstrap
  mkdir -p "$PKG_DIR"
  local suite
  for suite in "${PKG_SUITES[@]}"; do
    pkg_ready "$suite" || pkg_build_root "$suite"
  done
  log "package profile ready: pristine roots ${PKG_SUITES[*]} in $PKG_DIR/<suite>.tar"
}

# Processes whose root is a test's copy (a kuryr an interrupted test left running).
pkg_pids() {
  local p root
  for p in /proc/[0-9]*; do
    root=$(readlink "$p/root" 2>/dev/null) || continue
    case "$root" in "$PKG_DIR"/test-*) echo "${p#/proc/}" ;; esac
  done
}

down_package() {
  local pids
  mapfile -t pids < <(pkg_pids)
  if [ ${#pids[@]} -gt 0 ]; then
    log "stopping ${#pids[@]} process(es) left in package test roots"
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
}

# What an interrupted test left: its processes and its copy of a root.
reset_package() {
  down_package
  local d
  for d in "$PKG_DIR"/test-*; do
    if [ -d "$d" ]; then pkg_rm_tree "$d"; fi
  done
}

status_package() {
  local suite left
  for suite in "${PKG_SUITES[@]}"; do
    if pkg_ready "$suite"; then
      printf '%-18s pristine root %s (%s)\n' "package-$suite" "$PKG_DIR/$suite.tar" "$(du -h "$PKG_DIR/$suite.tar" | cut -f1)"
    else
      printf '%-18s not built (profile: scripts/devenv package)\n' "package-$suite"
    fi
  done
  left=$(find "$PKG_DIR" -maxdepth 1 -name 'test-*' 2>/dev/null | wc -l)
  if [ "$left" != 0 ]; then
    printf '%-18s %s test root(s) left by interrupted tests (scripts/devenv reset removes them)\n' package "$left"
  fi
}
