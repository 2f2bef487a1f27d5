# shellcheck shell=bash
# The keystone profile of scripts/devenv (on top of the base): Keystone on MariaDB with
# fernet tokens and a second neutron-server behind it. Sourced by scripts/devenv.

ks_api() { curl -fsS -m 10 "http://127.0.0.1:$KEYSTONE_PORT/v3/$1"; }
neutron_ks_answers() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$NEUTRON_KS_PORT/v2.0/networks")" = 401 ]
}
up_keystone() {
  local k="$DIR/keystone" ksconf="$DIR/keystone/keystone.conf"
  install_packages keystone
  mkdir -p "$k/fernet-keys" "$k/credential-keys"
  # Its own database in our MariaDB (SQLite answers "database is locked" under load).
  mysql_cli -e "CREATE DATABASE IF NOT EXISTS keystone;
    CREATE USER IF NOT EXISTS 'keystone'@'127.0.0.1' IDENTIFIED BY 'keystone';
    GRANT ALL ON keystone.* TO 'keystone'@'127.0.0.1'; FLUSH PRIVILEGES;"
  write_config "$ksconf" <<KSCONF
[DEFAULT]
use_stderr = true
[database]
connection = mysql+pymysql://keystone:keystone@127.0.0.1:$DB_PORT/keystone
[token]
provider = fernet
expiration = $TOKEN_LIFETIME
[fernet_tokens]
key_repository = $k/fernet-keys
[credential]
key_repository = $k/credential-keys
[cache]
enabled = false
KSCONF
  restart_if_changed keystone "$ksconf"
  if [ ! -f "$k/bootstrapped" ]; then
    log "creating Keystone's database and admin"
    note_change "bootstrapped Keystone"
    local m=(keystone-manage --config-file "$ksconf")
    {
      "${m[@]}" db_sync &&
      "${m[@]}" fernet_setup --keystone-user root --keystone-group root &&
      "${m[@]}" credential_setup --keystone-user root --keystone-group root &&
      "${m[@]}" bootstrap --bootstrap-password "$ADMIN_PASSWORD" --bootstrap-region-id RegionOne \
        --bootstrap-admin-url "http://127.0.0.1:$KEYSTONE_PORT/v3/" \
        --bootstrap-internal-url "http://127.0.0.1:$KEYSTONE_PORT/v3/" \
        --bootstrap-public-url "http://127.0.0.1:$KEYSTONE_PORT/v3/"
    } >"$DIR/log/keystone-manage.log" 2>&1 || die "keystone-manage failed: see $DIR/log/keystone-manage.log"
    touch "$k/bootstrapped"
  fi
  if ! running keystone; then
    log "starting Keystone on 127.0.0.1:$KEYSTONE_PORT"
    start_bg keystone "$DIR/log/keystone.log" env OS_KEYSTONE_CONFIG_FILES="$ksconf" \
      keystone-wsgi-public --host 127.0.0.1 --port "$KEYSTONE_PORT"
  fi
  wait_for 60 ks_api "" || die "Keystone does not answer: see $DIR/log/keystone.log"
  if [ ! -f "$k/catalog-done" ]; then
    log "registering Neutron (:$NEUTRON_KS_PORT) as the network service"
    note_change "registered the network service in Keystone"
    KS="http://127.0.0.1:$KEYSTONE_PORT/v3" PW="$ADMIN_PASSWORD" URL="http://127.0.0.1:$NEUTRON_KS_PORT" \
      /usr/bin/python3 - <<'PY' || die "catalog registration failed"
import json, os, urllib.request
ks = os.environ["KS"]
def call(method, path, body=None, token=None):
    req = urllib.request.Request(ks + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers.get("X-Subject-Token"), json.loads(r.read() or b"null")
auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": "admin", "domain": {"id": "default"}, "password": os.environ["PW"]}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
tok, _ = call("POST", "/auth/tokens", auth)
_, svcs = call("GET", "/services?type=network", token=tok)
if svcs["services"]:
    sid = svcs["services"][0]["id"]
else:
    _, s = call("POST", "/services", {"service": {"type": "network", "name": "neutron"}}, tok)
    sid = s["service"]["id"]
_, eps = call("GET", "/endpoints?service_id=" + sid, token=tok)
have = {e["interface"] for e in eps["endpoints"]}
for iface in ("public", "internal", "admin"):
    if iface not in have:
        call("POST", "/endpoints", {"endpoint": {"service_id": sid, "interface": iface,
             "url": os.environ["URL"], "region_id": "RegionOne"}}, tok)
PY
    touch "$k/catalog-done"
  fi
  # A second neutron-server on the same database and bus, behind Keystone.
  {
    sed -e "s/^bind_port = .*/bind_port = $NEUTRON_KS_PORT/" -e "s/^auth_strategy = .*/auth_strategy = keystone/" \
      "$DIR/neutron/neutron.conf"
    cat <<KSAUTH
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:$KEYSTONE_PORT/v3
auth_url = http://127.0.0.1:$KEYSTONE_PORT/v3
auth_type = password
username = admin
password = $ADMIN_PASSWORD
project_name = admin
user_domain_name = Default
project_domain_name = Default
# Validate every token: a revoked token must be refused at once (tests rely on it).
token_cache_time = -1
KSAUTH
  } | write_config "$DIR/neutron/neutron-keystone.conf"
  restart_if_changed neutron-keystone "$DIR/neutron/neutron-keystone.conf"
  if ! running neutron-keystone; then
    log "starting neutron-server with Keystone auth on 127.0.0.1:$NEUTRON_KS_PORT"
    start_bg neutron-keystone "$DIR/log/neutron-keystone.log" neutron-server \
      --config-file "$DIR/neutron/neutron-keystone.conf" --config-file "$DIR/neutron/ml2_conf.ini"
  fi
  wait_for 120 neutron_ks_answers \
    || die "neutron-server (keystone) does not answer: see $DIR/log/neutron-keystone.log"
  log "keystone profile ready: Keystone http://127.0.0.1:$KEYSTONE_PORT/v3, Neutron behind it on :$NEUTRON_KS_PORT"
}

