# shellcheck shell=bash
# The reference profile of scripts/devenv: the Python kuryr-libnetwork in a venv under the
# state dir, for the drop-in swap test and the benchmarks. Sourced by scripts/devenv.
REFERENCE_VERSION=18.0.0
up_reference() {
  local venv="$DIR/reference/venv"
  # (No `| grep -q`: with pipefail, pip's SIGPIPE would read as "not installed".)
  if [ -x "$venv/bin/kuryr-server" ] &&
     [ "$("$venv/bin/pip" show kuryr-libnetwork 2>/dev/null | sed -n 's/^Version: //p')" = "$REFERENCE_VERSION" ]; then
    return 0
  fi
  mkdir -p "$DIR/reference" "$DIR/log"
  note_change "installed the reference into $venv"
  log "installing kuryr-libnetwork $REFERENCE_VERSION (the Python reference) into $venv"
  # Debian's python3: the same interpreter Neutron runs on.
  /usr/bin/python3 -m venv "$venv" >"$DIR/log/reference-pip.log" 2>&1 \
    || die "python3 -m venv failed (python3-venv missing?): see $DIR/log/reference-pip.log"
  "$venv/bin/pip" install -q "kuryr-libnetwork==$REFERENCE_VERSION" >>"$DIR/log/reference-pip.log" 2>&1 \
    || die "pip install kuryr-libnetwork failed: see $DIR/log/reference-pip.log"
}

