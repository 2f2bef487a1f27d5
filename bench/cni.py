#!/usr/bin/python3
"""kuryr's CNI plugin against the reference CNI plugin: an ADD and a DEL of the
`kuryr-cni` binary (as a runtime runs it: exec, environment, config on stdin) against the
same of the `bridge` plugin of Debian's containernetworking-plugins with `host-local`
IPAM, interleaved (bridge, kuryr, kuryr+pool, bridge, ...) so that each ratio compares
figures taken at the same moment.

Run through bench/cni, which prepares the environment. Writes docs/benchmarks-cni.md.
"""

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (the plugin wrapper, /metrics, settle)
import scale as S  # noqa: E402  (the Neutron REST helper)

CNI_PATH = "/usr/lib/cni"
SUBNET = "10.95.0.0/24"
BRIDGE_SUBNET = "10.96.0.0/24"


def log(msg):
    print(f"[cni] {msg}", file=sys.stderr, flush=True)


def plugin(binary, command, ctr, netns, conf):
    """One CNI call as a runtime makes it: seconds, exit code, stdout."""
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": ctr, "CNI_NETNS": netns,
           "CNI_IFNAME": "eth0", "CNI_PATH": CNI_PATH, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    t = time.perf_counter()
    r = subprocess.run([binary], input=json.dumps(conf), env=env, capture_output=True, text=True)
    return time.perf_counter() - t, r.returncode, r.stdout + r.stderr


class Driver:
    def __init__(self, name, binary, conf, sock=None):
        self.name, self.binary, self.conf, self.sock = name, binary, conf, sock
        self.add, self.dele, self.failures, self.requests = [], [], 0, []

    def once(self, i, measure=True):
        """ADD then DEL in a fresh namespace."""
        ns = f"kbcni-{i}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        path, ctr = f"/run/netns/{ns}", uuid.uuid4().hex * 2
        try:
            before = B.neutron_requests_of(self.sock) if self.sock else None
            t, rc, out = plugin(self.binary, "ADD", ctr, path, self.conf)
            ok = rc == 0 and json.loads(out or "{}").get("ips")
            if not ok:
                self.failures += 1
                log(f"  {self.name} ADD failed ({rc}): {out.strip()[:300]}")
            elif measure:
                self.add.append(t)
            t, rc, out = plugin(self.binary, "DEL", ctr, path, self.conf)
            if rc != 0:
                self.failures += 1
                log(f"  {self.name} DEL failed ({rc}): {out.strip()[:300]}")
            elif measure and ok:
                self.dele.append(t)
            if self.sock:
                # What the ADD and DEL left to the background (bookkeeping, the port
                # given back to the pool) lands before the next measurement.
                B.settle({"sock": self.sock})
                after = B.neutron_requests_of(self.sock)
                if measure and before is not None and after is not None:
                    self.requests.append(after - before)
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)


def kuryr(binary, work, name, neutron_url, extra):
    sock, cni_sock = f"{work}/{name}.sock", f"{work}/{name}-cni.sock"
    conf = f"{work}/{name}.conf"
    with open(conf, "w") as f:
        f.write(f"[DEFAULT]\nunix_socket = {sock}\ncni_socket = {cni_sock}\n{extra}"
                f"[neutron]\nauth_type = none\nendpoint = {neutron_url}\n")
    p = B.Plugin(name, [binary, "serve", "--config-file", conf],
                 lambda: os.path.exists(sock) and os.path.exists(cni_sock), f"{work}/{name}.log")
    return p, sock, cni_sock


def spread(xs, f):
    return f"{f(B.median(xs))} ({f(min(xs))}-{f(max(xs))})" if xs else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kuryr", required=True)
    ap.add_argument("--kuryr-cni", required=True)
    ap.add_argument("--neutron", required=True)
    ap.add_argument("--backend", default="ML2/linuxbridge")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default="docs/benchmarks-cni.md")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="kuryr-bench-cni-")
    neutron = S.Neutron(a.neutron)
    net_name = f"kbcni-{uuid.uuid4().hex[:8]}"
    net = neutron.req("POST", "/v2.0/networks", {"network": {"name": net_name, "tenant_id": S.PROJECT}})["network"]
    neutron.req("POST", "/v2.0/subnets", {"subnet": {
        "network_id": net["id"], "tenant_id": S.PROJECT, "cidr": SUBNET, "ip_version": 4,
        "name": f"{net_name}-v4"}})
    procs = []
    try:
        plain, _, plain_cni = kuryr(a.kuryr, work, "kuryr", a.neutron, "")
        procs.append(plain)
        pooled, pool_sock, pool_cni = kuryr(a.kuryr, work, "pool", a.neutron, "port_pool_size = 10\n")
        procs.append(pooled)
        base = {"cniVersion": "1.0.0", "type": "kuryr-cni", "network": net_name}
        drivers = [
            Driver("bridge", f"{CNI_PATH}/bridge",
                   {"cniVersion": "1.0.0", "name": "kbcni-bridge", "type": "bridge", "bridge": "kbcni0",
                    "isGateway": True, "ipMasq": False,
                    "ipam": {"type": "host-local", "subnet": BRIDGE_SUBNET,
                             "dataDir": f"{work}/host-local"}}),
            Driver("kuryr", a.kuryr_cni, dict(base, name="kbcni-kuryr", socket=plain_cni),
                   sock=f"{work}/kuryr.sock"),
            Driver("kuryr+pool", a.kuryr_cni, dict(base, name="kbcni-pool", socket=pool_cni), sock=pool_sock),
        ]
        # Warm-up: the first ADD of a config resolves its network and fills the pool.
        for d in drivers:
            d.once("warm", measure=False)
        for d in drivers:
            d.failures = 0
        log(f"ADD + DEL x{a.reps}, interleaved")
        for i in range(a.reps):
            for d in drivers:
                d.once(i)
        rss = {p.name: p.rss_mb() for p in procs}
    finally:
        for p in procs:
            p.stop()
        for p in neutron.req("GET", f"/v2.0/ports?network_id={net['id']}")["ports"]:
            neutron.req("DELETE", f"/v2.0/ports/{p['id']}")
        neutron.req("DELETE", f"/v2.0/networks/{net['id']}")
        subprocess.run(["ip", "link", "del", "kbcni0"], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    write(a, drivers, rss)


def write(a, drivers, rss):
    by = {d.name: d for d in drivers}
    bridge = by["bridge"]

    def ms(x):
        return f"{x * 1000:.0f} ms"

    def per_rep(d, key):
        """Ratios of each repetition to bridge's of the same round."""
        return [x / y for x, y in zip(getattr(d, key), getattr(bridge, key)) if y]

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L = ["# CNI benchmark: kuryr-cni against the bridge plugin", "",
         f"Measured {now} on {B.machine().rsplit(' (', 1)[0]} ({a.backend}). {a.reps} ADD + DEL "
         "per driver, interleaved (bridge, kuryr, kuryr+pool, then again), each in a fresh "
         "network namespace, the plugin binary run as a runtime runs it (exec, CNI_* "
         "environment, config on stdin). `bridge` is Debian's containernetworking-plugins "
         "`bridge` with `host-local` IPAM: no Neutron, the floor. kuryr+pool has "
         "`port_pool_size = 10`. Regenerate with `bench/cni`.", "",
         "| driver | ADD median | ADD p95 | DEL median | DEL p95 | ADD vs bridge | DEL vs bridge | Neutron requests per ADD + DEL | plugin RSS | failures |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    names = {"kuryr": "kuryr", "kuryr+pool": "pool"}
    for d in drivers:
        add_r = per_rep(d, "add")
        del_r = per_rep(d, "dele")
        reqs = f"{B.median(d.requests):.0f}" if d.requests else "0"
        mem = f"{rss[names[d.name]]:.1f} MB" if d.name in names else "-"
        L.append(f"| {d.name} | {ms(B.median(d.add))} | {ms(B.pct(d.add, 95))} | {ms(B.median(d.dele))} | "
                 f"{ms(B.pct(d.dele, 95))} | {spread(add_r, lambda v: f'{v:.2f}x')} | "
                 f"{spread(del_r, lambda v: f'{v:.2f}x')} | {reqs} | {mem} | {d.failures} |")
    pooled = by["kuryr+pool"]
    r = B.median(per_rep(pooled, "add"))
    L += ["", "Ratios are the median (min-max) of per-repetition ratios to bridge's ADD or DEL of "
          "the same repetition.", "", "## Target", "", "| target | met | measured |", "|---|---|---|",
          f"| pooled CNI ADD <= 1.5x the bridge plugin's | {'yes' if r <= 1.5 else 'no'} | {r:.2f}x, "
          f"{pooled.failures} failures |", "",
          "A pooled ADD asks Neutron nothing on its path: it takes a port the pool bound to this "
          "host before, plugs it and answers; the port's name, `device_id` and tags are written "
          "after the answer, and the pool is refilled in the background. Without the pool the "
          "ADD creates its port (bound, tagged) before it answers, which is most of its time. A "
          "DEL removes the interfaces and looks the port up; without the pool it deletes the "
          "port before it answers, with the pool it gives the port back (or deletes it) after "
          "the answer. The container end of the veth is made inside the namespace, not moved there "
          "(a move waits for an RCU grace period, about 35 ms here).", ""]
    if "OVN" in a.backend:
        L[-1:-1] = ["On ML2/OVN a pooled ADD also runs `ovs-vsctl --no-wait add-port` on br-int "
                    "(the commit to ovsdb-server, not ovs-vswitchd's datapath update): the difference "
                    "to linuxbridge.", ""]
    with open(a.out, "w") as f:
        f.write("\n".join(L) + "\n")
    log(f"wrote {a.out}")


if __name__ == "__main__":
    main()
