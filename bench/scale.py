#!/usr/bin/python3
"""How kuryr's costs grow with the host and with the cloud: at 0, 1,000 and 5,000 ports
of other hosts in Neutron (made through the bulk API, named, tagged and bound as another
host's kuryr leaves them) and with 1, 50 and 200 containers running here, it measures
`docker run` time and Neutron requests per start, kuryr's start-up with
`reconcile_on_start`, `kuryr gc` and `kuryr doctor` (time and Neutron requests), kuryr's
RSS, and Neutron requests per minute while idle. From the Neutron time a container
lifecycle costs, it derives how many hosts one neutron-server API worker serves.

Run through bench/scale, which prepares the environment. Writes docs/scale.md
(docs/scale-ovn.md on ML2/OVN).
"""

import argparse
import concurrent.futures as cf
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402  (the lifecycle helpers and the plugin wrapper)

LABEL = "kuryr-scale"
NET = "ks-net"
OTHERS_NET = "kuryr-scale-others"
PROJECT = "kuryr-scale"
SOCK = "/run/docker/plugins/kscale.sock"


def log(msg):
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def wsgi_lines(path):
    """neutron-server's API log: (count of requests, their summed time in s) so far."""
    n, t = 0, 0.0
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if "neutron.wsgi" in line and "/v2.0/" in line and "status:" in line:
                    n += 1
                    m = re.search(r"time: ([0-9.]+)", line)
                    t += float(m.group(1)) if m else 0.0
    except FileNotFoundError:
        pass
    return n, t


def others_up_to(neutron, net_id, have, want):
    """Ports of other hosts' kuryr endpoints, made in bulk up to `want`: named, owned
    and tagged as another host's kuryr leaves them, but not bound (binding each to a host
    name with no agent costs Neutron ~0.25 s a port here, and this host's queries filter
    on its own host name either way). ML2/OVN (Debian 12's Neutron) sometimes fails a
    bulk create in its OVN driver ("expected uuid, got NoneType" from ovsdbapp, seen after
    ~3,000 ports): the request is rolled back, so the ports are counted again and the
    rest asked for again, a few times."""
    failures = 0
    while have < want:
        n = min(250, want - have)
        ports = []
        for i in range(have, have + n):
            ep = f"{i:064x}"
            ports.append({
                "network_id": net_id, "tenant_id": PROJECT, "name": f"{ep}-port",
                "device_owner": "compute:kuryr", "device_id": ep,
                "tags": ["compute:kuryr", f"kuryr.net.uuid.lh:{ep[:32]}", f"kuryr.net.uuid.uh:{ep[32:]}"],
            })
        try:
            neutron.req("POST", "/v2.0/ports", {"ports": ports})
            have += n
        except urllib.error.HTTPError as e:
            failures += 1
            if e.code < 500 or failures > 5:
                raise
            have = len(neutron.req("GET", f"/v2.0/ports?network_id={net_id}&fields=id")["ports"])
            log(f"  a bulk create failed ({e.code}); {have} ports there, asking again")
            time.sleep(2)
    return have


def kuryr_requests(sock):
    n = B.neutron_requests_of(sock)
    return n if n is not None else float("nan")


class Kuryr:
    """kuryr serve with the bench's config; restartable."""

    def __init__(self, binary, conf, logfile):
        self.binary, self.conf, self.logfile = binary, conf, logfile
        self.p = None

    def start(self):
        """Starts it; seconds until it serves and until its reconcile has run."""
        if os.path.exists(SOCK):
            os.remove(SOCK)
        open(self.logfile, "w").close()
        t0 = time.perf_counter()
        self.p = B.Plugin("kuryr", [self.binary, "--log-format", "json", "serve", "--config-file", self.conf],
                          lambda: os.path.exists(SOCK), self.logfile, env=dict(os.environ, RUST_LOG="info"))
        serving = time.perf_counter() - t0
        deadline = time.time() + 300
        while time.time() < deadline:
            with open(self.logfile, errors="replace") as f:
                if any('"reconcile:' in line or "reconcile skipped" in line for line in f):
                    break
            time.sleep(0.05)
        return serving, time.perf_counter() - t0

    def stop(self):
        if self.p:
            self.p.stop()
            self.p = None


def run_cli(binary, conf, *args):
    t = time.perf_counter()
    r = subprocess.run([binary, *args, "--config-file", conf], capture_output=True, text=True)
    return time.perf_counter() - t, r.returncode


def containers_up_to(have, want):
    for i in range(have, want):
        B.docker("run", "-d", "--label", LABEL, "--name", f"ks-c{i}", "--network", NET, B.IMAGE, "sleep", "36000")
    return max(have, want)


def measure(a, k, neutron_log, others, running):
    row = {"others": others, "containers": running}
    # docker run (and rm) of one more container, 10 times; requests counted by kuryr.
    before = kuryr_requests(SOCK)
    runs = []
    for i in range(10):
        t, ok, r = B.timed("run", "-d", "--label", LABEL, "--name", f"ks-probe{i}", "--network", NET, B.IMAGE, "sleep", "3600")
        if not ok:
            raise RuntimeError(r.stderr)
        runs.append(t)
        B.docker("rm", "-f", f"ks-probe{i}")
        time.sleep(0.5)
    B.settle({"sock": SOCK})
    row["run_ms"] = statistics.median(runs) * 1000
    row["requests_per_lifecycle"] = (kuryr_requests(SOCK) - before) / 10
    row["rss_mb"] = k.p.rss_mb()
    # Idle: Neutron requests in 60 s with the host as it is.
    before = kuryr_requests(SOCK)
    time.sleep(a.idle_seconds)
    row["idle_per_min"] = (kuryr_requests(SOCK) - before) * 60 / a.idle_seconds
    # gc and doctor, as an operator runs them (their own processes).
    for cmd in (["gc"], ["doctor"]):
        n0, _ = wsgi_lines(neutron_log)
        t, rc = run_cli(a.kuryr, a.conf, *cmd)
        time.sleep(0.5)
        n1, _ = wsgi_lines(neutron_log)
        row[f"{cmd[0]}_s"], row[f"{cmd[0]}_requests"], row[f"{cmd[0]}_rc"] = t, n1 - n0, rc
    # A restart with reconcile_on_start.
    k.stop()
    n0, _ = wsgi_lines(neutron_log)
    serving, reconciled = k.start()
    time.sleep(0.5)
    n1, _ = wsgi_lines(neutron_log)
    row["start_serving_s"], row["start_reconciled_s"], row["start_requests"] = serving, reconciled, n1 - n0
    log(f"  {row}")
    return row


def capacity(a, k, neutron_log):
    """Neutron worker time per container lifecycle (pooled), from neutron-server's log."""
    n0, t0 = wsgi_lines(neutron_log)
    for i in range(20):
        B.docker("run", "-d", "--label", LABEL, "--name", f"ks-cap{i}", "--network", NET, B.IMAGE, "sleep", "3600")
        B.docker("rm", "-f", f"ks-cap{i}")
    B.settle({"sock": SOCK})
    n1, t1 = wsgi_lines(neutron_log)
    return (n1 - n0) / 20, (t1 - t0) / 20


def write(rows, cap, out, a):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = "# Scale" if a.backend == "ML2/linuxbridge" else f"# Scale on {a.backend}"
    other = ("scale-ovn.md", "ML2/OVN") if a.backend == "ML2/linuxbridge" else ("scale.md", "ML2/linuxbridge")
    L = [title, "",
         f"Measured {now} by `bench/scale` on {B.machine()}. kuryr with `port_pool_size = 10` "
         "and `reconcile_on_start = true`. Other hosts' ports are made through Neutron's bulk API "
         "on a network of their own, named, owned and tagged as another host's kuryr leaves "
         "them (not bound: binding each to a host with no agent costs Neutron ~0.25 s a port "
         "here; this host's queries filter on its own host name either way). Each row: 10 "
         "`docker run` + `docker rm` of one more container (requests counted by kuryr's "
         "/metrics, background work included), idle load over `--idle-seconds`, then `kuryr "
         "gc` and `kuryr doctor` as separate processes and a restart of kuryr (requests counted "
         "in neutron-server's API log). RSS is read after the row's lifecycles: in the first "
         "row of a level the process has just removed the previous level's 200 containers, and "
         "its allocator keeps that high-water mark.", "",
         "| other hosts' ports | containers here | `docker run` median | Neutron requests per lifecycle | "
         "kuryr start-up: serving / reconciled | start-up requests | `kuryr gc` | gc requests | "
         "`kuryr doctor` | doctor requests | RSS | idle requests per minute |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['others']} | {r['containers']} | {r['run_ms']:.0f} ms | {r['requests_per_lifecycle']:.1f} | "
                 f"{r['start_serving_s']:.2f} s / {r['start_reconciled_s']:.2f} s | {r['start_requests']} | "
                 f"{r['gc_s']:.2f} s | {r['gc_requests']} | {r['doctor_s']:.2f} s | {r['doctor_requests']} | "
                 f"{r['rss_mb']:.1f} MB | {r['idle_per_min']:.0f} |")
    reqs, secs = cap
    L += ["", "## What one Neutron API worker serves", "",
          f"A pooled container lifecycle (`docker run`, `docker rm`) cost neutron-server {reqs:.1f} requests "
          f"and {secs * 1000:.0f} ms of request time (the sum of the times its API log gives them; "
          "20 lifecycles, with the pool's bulk refills and the ports given back). An idle host "
          "costs it nothing (the last column). One API worker of this neutron-server "
          "(Debian 12's, one worker, on the same 2 cores as dockerd) therefore serves about:", "",
          "| container starts per host per minute | hosts per API worker |", "|---|---|"]
    for rate in (1, 5, 10, 30):
        hosts = 60 / (secs * rate) if secs > 0 else float("inf")
        L.append(f"| {rate} | {hosts:.0f} |")
    L += ["", "This is a measured figure of this machine's neutron-server, not of a production "
          "one: there, workers run on cores of their own and the database on another host. The "
          "ratio to read is the shape: a start costs the same requests whatever the cloud "
          "holds, and an idle host costs nothing.", ""]
    if "OVN" in a.backend:
        L += ["On ML2/OVN a start also waits for what each port change costs OVN: ovn-northd "
              "recomputes the logical flows of the switches, and its work grows with the logical "
              "switch ports the cloud holds (other hosts' ports included), on the same 2 cores as "
              "neutron-server and dockerd. So `docker run` grows with the cloud here while kuryr's "
              "requests per start, its start-up, `kuryr gc` and `kuryr doctor` do not.", ""]
    if os.path.exists(os.path.join(os.path.dirname(out), other[0])):
        L += [f"The same on {other[1]}: [{other[0]}]({other[0]}).", ""]
    with open(out, "w") as f:
        f.write("\n".join(L) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kuryr", required=True)
    ap.add_argument("--neutron", required=True)
    ap.add_argument("--neutron-log", required=True)
    ap.add_argument("--others", default="0,1000,5000")
    ap.add_argument("--containers", default="1,50,200")
    ap.add_argument("--idle-seconds", type=int, default=60)
    ap.add_argument("--out", default="docs/scale.md")
    ap.add_argument("--backend", default="ML2/linuxbridge")
    a = ap.parse_args()
    B.BACKEND = a.backend
    work = tempfile.mkdtemp(prefix="kuryr-scale-")
    a.conf = f"{work}/kuryr.conf"
    with open(a.conf, "w") as f:
        f.write(f"[DEFAULT]\nunix_socket = {SOCK}\nport_pool_size = 10\nreconcile_on_start = true\n"
                f"[neutron]\nauth_type = none\nendpoint = {a.neutron}\n")
    neutron = B.Neutron(a.neutron, {"X-Project-Id": PROJECT, "X-Roles": "admin"})
    k = Kuryr(a.kuryr, a.conf, f"{work}/kuryr.log")
    others_net = None
    rows = []
    try:
        k.start()
        B.docker("network", "create", "--label", LABEL, "-d", "kscale", "--ipam-driver", "kscale",
                 "--subnet", "10.94.0.0/16", NET)
        # Neutron's default quota is 500 ports a project.
        neutron.req("PUT", f"/v2.0/quotas/{PROJECT}", {"quota": {"port": -1}})
        others_net = neutron.req("POST", "/v2.0/networks", {"network": {"name": OTHERS_NET, "tenant_id": PROJECT}})["network"]["id"]
        have_others = 0
        levels = [int(x) for x in a.containers.split(",")]
        cap = None
        for others in [int(x) for x in a.others.split(",")]:
            log(f"{others} ports of other hosts")
            have_others = others_up_to(neutron, others_net, have_others, others)
            running = 0
            for c in levels:
                running = containers_up_to(running, c)
                rows.append(measure(a, k, a.neutron_log, others, running))
            if cap is None:
                cap = capacity(a, k, a.neutron_log)
                log(f"  capacity: {cap[0]:.1f} requests, {cap[1] * 1000:.0f} ms of Neutron time a lifecycle")
            for i in range(levels[-1]):
                B.docker("rm", "-f", f"ks-c{i}", check=False)
            # What is measured so far stays written if a later level fails.
            write(rows, cap, a.out, a)
    finally:
        for c in B.docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split():
            B.docker("rm", "-f", c, check=False)
        B.docker("network", "rm", NET, check=False)
        k.stop()
        if others_net:
            try:
                # Neutron has no bulk delete: four at a time.
                ids = [p["id"] for p in neutron.req("GET", f"/v2.0/ports?network_id={others_net}&fields=id")["ports"]]
                log(f"deleting {len(ids)} ports of other hosts")
                with cf.ThreadPoolExecutor(4) as ex:
                    list(ex.map(lambda i: neutron.req("DELETE", f"/v2.0/ports/{i}"), ids))
                neutron.req("DELETE", f"/v2.0/networks/{others_net}")
                neutron.req("DELETE", f"/v2.0/quotas/{PROJECT}")
            except OSError as e:
                log(f"cleanup of {OTHERS_NET}: {e}")
    log(f"wrote {a.out}")


if __name__ == "__main__":
    main()
