#!/usr/bin/python3
"""kuryr benchmark: Docker's bridge driver (the floor), the Python reference
kuryr-libnetwork 18.0.0 and kuryr, measured in one run on the same Neutron and dockerd.

Run through bench/run, which prepares the environment. Writes docs/benchmarks.md and
docs/benchmarks.png.
"""

import argparse
import concurrent.futures as cf
import datetime
import json
import os
import platform
import queue
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
IMAGE = "busybox:latest"
LABEL = "kuryr-bench"
# kuryr with the pool and `vif_plugging_is_fatal`: a start in force from its first packet.
SECURE = "kuryr+pool+fatal"
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def docker(*args, check=True):
    r = subprocess.run([DOCKER, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {r.stderr.strip()}")
    return r


def timed(*args):
    t = time.perf_counter()
    r = docker(*args, check=False)
    return time.perf_counter() - t, r.returncode == 0, r


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, round(p / 100 * (len(xs) - 1))))
    return xs[k]


def median(xs):
    return statistics.median(xs) if xs else float("nan")


class Plugin:
    """A plugin process whose memory and CPU we read from /proc."""

    def __init__(self, name, argv, ready, logfile, env=None):
        self.name = name
        self.log = open(logfile, "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        deadline = time.time() + 90
        while not ready():
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{name} did not start; see {logfile}")
            time.sleep(0.1)

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20

    def cpu_s(self):
        return sum(cpu_ticks(self.proc.pid)[:2]) / TICK

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def can_connect_tcp(port):
    def f():
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False
    return f


def neutron_api_lines(path):
    """Neutron API requests logged so far (one wsgi line per request)."""
    try:
        with open(path, errors="replace") as f:
            return sum(1 for line in f if "neutron.wsgi" in line and '/v2.0/' in line and "status:" in line)
    except FileNotFoundError:
        return 0


class Sampler(threading.Thread):
    """Samples a plugin's RSS while a phase runs; keeps the peak."""

    def __init__(self, plugin):
        super().__init__(daemon=True)
        self.plugin, self.peak, self.stop_flag = plugin, 0.0, threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            if self.plugin:
                try:
                    self.peak = max(self.peak, self.plugin.rss_mb())
                except OSError:
                    pass
            time.sleep(0.05)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *a):
        self.stop_flag.set()
        self.join()


def net_create_remove(d, reps):
    """Network create/remove times of one driver."""
    name, drv, subnet, gw = d["name"], d["driver"], d["subnet"], d["gateway"]
    res = d["res"]
    log(f"{name}: network create/remove x{reps}")
    creates, removes = [], []
    for i in range(reps):
        net = f"kb-{d['slug']}-{i}"
        t, ok, r = timed("network", "create", "--label", LABEL, "-d", drv, *d["ipam"],
                         "--subnet", subnet, "--gateway", gw, net)
        if not ok:
            res["failures"] += 1
            log(f"  create failed: {r.stderr.strip()}")
            continue
        creates.append(t)
        t, ok, r = timed("network", "rm", net)
        (removes if ok else []).append(t)
        res["failures"] += 0 if ok else 1
    res["net_create"], res["net_remove"] = creates, removes


def setup(d):
    """The driver's network for the container measurements, and one warm-up container."""
    net = f"kb-{d['slug']}"
    d["net"] = net
    docker("network", "create", "--label", LABEL, "-d", d["driver"], *d["ipam"],
           "--subnet", d["subnet"], "--gateway", d["gateway"], net)
    # One warm-up container: the first start pays caches and the image.
    docker("run", "-d", "--label", LABEL, "--name", f"kb-{d['slug']}-warm", "--network", net, IMAGE, "sleep", "3600")
    docker("rm", "-f", f"kb-{d['slug']}-warm")
    res = d["res"]
    res["run"], res["rm"], res["neutron_requests"] = [], [], []
    if d["plugin"]:
        res["rss_start_mb"] = d["plugin"].rss_mb()
        d["cpu0"] = d["plugin"].cpu_s()


def cpu_busy():
    """(busy, total) jiffies of the whole machine so far; steal time left out, so that
    another guest on the same host does not count as this machine's work."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy, busy + v[3] + v[4]


def cpu_seconds_since(start):
    """The whole machine's CPU-seconds since `start` (a `cpu_busy()` reading)."""
    return (cpu_busy()[0] - start[0]) / os.sysconf("SC_CLK_TCK")


# A lifecycle starts once the machine has been this idle (share of all cores) for two
# windows in a row, or after QUIET_MAX: what the previous driver's lifecycle left to the
# background (an agent processing a deleted tap, a pool port plugged again, Neutron's
# RPCs) then lands on no driver's start.
QUIET_BUSY, QUIET_WINDOW, QUIET_MAX = 0.10, 0.25, 8.0
# A burst's background (50 taps gone, each an agent's firewall update; a pool given its
# ports back) takes longer than 8 s to die down here, and more than 60 s on
# ML2/linuxbridge once the host holds the other drivers' pools (about 90 taps).
QUIET_BURST_MAX = 240.0
QUIET = {"waited": [], "timeouts": 0}


def proc_label(pid):
    """A process's group in the per-process CPU table: its title where it set one (Neutron's
    workers: "neutron-server: api worker"), else the script a Python runs, else its program."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None
    if not argv:
        return None
    if ": " in argv[0]:
        return argv[0].split(" (")[0].strip()
    prog = os.path.basename(argv[0].split()[0])
    if prog.startswith("python") and len(argv) > 1 and argv[1] != "-c":
        script = next((a for a in argv[1:] if not a.startswith("-")), argv[1])
        prog = os.path.basename(script)
    if prog == "privsep-helper":
        # One per agent: which agent's root work (iptables, dnsmasq, ip) it runs.
        inis = [os.path.basename(b) for a, b in zip(argv, argv[1:]) if a == "--config-file"]
        agent = next((i.rsplit(".", 1)[0] for i in reversed(inis) if i.endswith(".ini")), None)
        return f"{prog} ({agent})" if agent else prog
    return prog


def cpu_ticks(pid):
    """A process's CPU ticks from /proc: (user, system, its reaped children's user, system)."""
    with open(f"/proc/{pid}/stat") as f:
        return [int(x) for x in f.read().rsplit(")", 1)[1].split()[11:15]]


def proc_cpu():
    """{pid: (group, CPU ticks of the process and of the children it has reaped)}."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            ticks = sum(cpu_ticks(pid))
        except OSError:
            continue
        label = proc_label(pid)
        if label:
            out[pid] = (label, ticks)
    return out


def proc_cpu_since(before, top=8):
    """CPU-seconds per process group since `before` (a `proc_cpu()`), the `top` largest.
    A short-lived process (iptables-restore, ip) counts in the parent that reaped it."""
    by = {}
    for pid, (label, ticks) in proc_cpu().items():
        was = before.get(pid)
        d = ticks - was[1] if was and was[0] == label else ticks
        if d > 0:
            by[label] = by.get(label, 0) + d / TICK
    return dict(sorted(by.items(), key=lambda kv: -kv[1])[:top])


def host_taps():
    """(taps on the host, of them without an alias): kuryr names every veth it plugs
    with an alias, so a tap without one is someone else's (the reference's, a leak)."""
    r = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    taps = [line for line in r.stdout.splitlines() if re.match(r"\d+: tap", line)]
    return len(taps), sum(1 for line in taps if " alias " not in line)


def quiet(most=QUIET_MAX):
    """Waits for a quiet machine, at most `most` seconds: (seconds waited, whether it gave up)."""
    deadline, calm, gave_up = time.perf_counter() + most, 0, False
    t0 = time.perf_counter()
    while calm < 2:
        if time.perf_counter() >= deadline:
            QUIET["timeouts"] += 1
            gave_up = True
            break
        a = cpu_busy()
        time.sleep(QUIET_WINDOW)
        b = cpu_busy()
        calm = calm + 1 if (b[0] - a[0]) <= QUIET_BUSY * max(1, b[1] - a[1]) else 0
    waited = time.perf_counter() - t0
    QUIET["waited"].append(waited)
    return waited, gave_up


def lifecycle(d, i, neutron_log):
    """One `docker run -d` + `docker rm -f` of the driver, from a quiet machine."""
    res, c = d["res"], f"kb-{d['slug']}-c{i}"
    quiet()
    before = neutron_api_lines(neutron_log)
    t, ok, r = timed("run", "-d", "--label", LABEL, "--name", c, "--network", d["net"], IMAGE, "sleep", "3600")
    if not ok:
        res["failures"] += 1
        log(f"  run failed: {r.stderr.strip()}")
        docker("rm", "-f", c, check=False)
        return
    res["run"].append(t)
    t, ok, _ = timed("rm", "-f", c)
    (res["rm"] if ok else []).append(t)
    res["failures"] += 0 if ok else 1
    # What the lifecycle left to the background (agents, a pool refill) lands here.
    time.sleep(0.7)
    res["neutron_requests"].append(neutron_api_lines(neutron_log) - before)


def neutron_requests_of(sock):
    """kuryr's own count of the Neutron requests it made (its /metrics on its socket)."""
    try:
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(2)
        c.connect(sock)
        c.sendall(b"GET /metrics HTTP/1.0\r\nHost: kuryr\r\n\r\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
        c.close()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in data.decode(errors="replace").splitlines()
               if line.startswith("kuryr_neutron_requests_total{"))


def settle(d):
    """Waits until the plugin's background work (refills, ports given back) is done, so
    the next measurement does not pay for this one: no Neutron request for 2 s."""
    sock = d.get("sock")
    if not sock:
        time.sleep(3)
        return
    last, still, deadline = None, 0, time.time() + 90
    while time.time() < deadline and still < 4:
        n = neutron_requests_of(sock)
        still = still + 1 if n is not None and n == last else 0
        last = n
        time.sleep(0.5)


class Neutron:
    """Neutron's API without a token (the devenv's, `auth_type = none`), as the plugins
    under test reach it; `headers` adds to each request (a project, a role)."""

    def __init__(self, url, headers=None):
        self.url, self.headers = url.rstrip("/"), headers or {}

    def req(self, method, path, body=None):
        r = urllib.request.Request(
            self.url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", **self.headers})
        with urllib.request.urlopen(r, timeout=300) as f:
            data = f.read()
        return json.loads(data) if data else None


class NeutronFloor:
    """What Neutron alone costs a start without the pool, measured raw once per
    repetition beside the lifecycles: a port created bound to this host on kuryr's
    network, then its name and device_id written (the two requests kuryr waits for on
    that path: RequestAddress's create, Join's bookkeeping), then deleted (not counted).
    bridge's start plus these two is the least a start without the pool can take here.
    The port's tags follow its update, as kuryr writes them; the machine's CPU for each
    of the two writes is kept too."""

    # The endpoint tags a start writes (the reference's: its kind, the endpoint id's halves).
    TAGS = {"tags": ["kuryr.port", "kuryr.endpoint.lh:0123456789abcdef0123456789abcdef",
                     "kuryr.endpoint.uh:0123456789abcdef0123456789abcdef"]}

    def __init__(self, url, host):
        self.neutron, self.host = Neutron(url), host
        self.net, self.post, self.put = None, [], []
        self.tags, self.put_cpu, self.tags_cpu = [], [], []

    def req(self, method, path, body=None):
        """(seconds it took, answer)."""
        t = time.perf_counter()
        r = self.neutron.req(method, path, body)
        return time.perf_counter() - t, r

    def network_of(self, docker_net):
        """The Neutron network kuryr made for `docker_net` (by the reference's tags)."""
        nid = docker("network", "inspect", "-f", "{{.Id}}", docker_net).stdout.strip()
        _, r = self.req("GET", f"/v2.0/networks?tags=kuryr.net.uuid.lh:{nid[:32]},kuryr.net.uuid.uh:{nid[32:]}")
        return r["networks"][0]["id"] if r["networks"] else None

    def find(self, docker_net):
        self.net = self.network_of(docker_net)

    def pool_ready(self, net):
        """The free pool ports kuryr keeps on Neutron network `net` now."""
        _, r = self.req("GET", f"/v2.0/ports?network_id={net}&name=kuryr-pool-port&fields=id&fields=device_id")
        return sum(1 for p in r["ports"] if not p["device_id"])

    def pool_settled(self, net, still=3.0, most=60.0):
        """Waits until the free pool ports on Neutron network `net` have not changed for
        `still` seconds. After a burst kuryr deletes what the pool will not keep in the
        background, each DELETE taking seconds here: its request counter (what `settle`
        watches) stands still while some are in flight."""
        last, since, deadline = None, time.perf_counter(), time.perf_counter() + most
        while time.perf_counter() < deadline:
            n = self.pool_ready(net)
            if n != last:
                last, since = n, time.perf_counter()
            elif time.perf_counter() - since >= still:
                return
            time.sleep(0.5)

    def bound_body(self, **more):
        """A port on kuryr's network bound to this host, as kuryr makes them."""
        return {"network_id": self.net, "binding:host_id": self.host,
                "device_owner": "compute:kuryr", "admin_state_up": True, **more}

    def bound_ports(self, count):
        """`count` ports bound to this host, in bulk requests of 10 (as kuryr's refill)."""
        body = self.bound_body(name="kuryr-bench-floor-pool")
        made = []
        while len(made) < count:
            _, r = self.req("POST", "/v2.0/ports", {"ports": [body] * min(10, count - len(made))})
            made += [p["id"] for p in r["ports"]]
        return made

    def burst(self, n, conc, ready):
        """Neutron's own part of a pooled burst of `n` starts at concurrency `conc` from a
        pool of `ready` ports, raw, with no Docker and no kuryr: the bound ports the pool
        lacks (`n - ready`, made in bulk requests of 10 one after another, from the first
        moment, where kuryr waits for the pool to be half empty) and every start's
        bookkeeping (the port's name and device_id, then its tags), `conc` at
        a time, each as soon as its port exists. Seconds from the first request to the
        last answer (None if a request failed); the ports are then deleted, not counted."""
        if not self.net:
            return None
        ids, made, lock = queue.Queue(), [], threading.Lock()
        try:
            for pid in self.bound_ports(min(ready, n)):
                made.append(pid)
                ids.put(pid)
        except OSError as e:
            log(f"  Neutron burst floor probe failed: {e}")
            return None
        failed = []

        def create():
            try:
                for pid in self.bound_ports(n - min(ready, n)):
                    with lock:
                        made.append(pid)
                    ids.put(pid)
            except OSError as e:
                failed.append(e)
                for _ in range(n):
                    ids.put(None)

        def bookkeeping(i):
            pid = ids.get()
            if pid is None:
                return
            # As kuryr writes them: the port, then its tags (side by side, Neutron retries
            # the update after about 0.5 s when the tags' write overtakes it).
            try:
                self.neutron.req("PUT", f"/v2.0/ports/{pid}", {"port": {
                    "name": f"kuryr-bench-floor-{i}", "device_id": f"kuryr-bench-floor-{i}"}})
                self.neutron.req("PUT", f"/v2.0/ports/{pid}/tags", self.TAGS)
            except OSError as e:
                failed.append(e)

        t0, c0 = time.perf_counter(), cpu_busy()
        maker = threading.Thread(target=create)
        maker.start()
        with cf.ThreadPoolExecutor(conc) as ex:
            list(ex.map(bookkeeping, range(n)))
        maker.join()
        wall = time.perf_counter() - t0
        # The whole machine's CPU time over it (Neutron's, its agents', the database's).
        self.burst_cpu_s = cpu_seconds_since(c0)
        def delete(pid):
            try:
                self.neutron.req("DELETE", f"/v2.0/ports/{pid}")
            except OSError as e:
                log(f"  cannot delete the probe's port {pid}: {e}")
        with cf.ThreadPoolExecutor(8) as ex:
            list(ex.map(delete, made))
        if failed:
            log(f"  Neutron burst floor probe failed: {failed[0]}")
            return None
        return wall

    def probe(self):
        if not self.net:
            return
        try:
            t_post, r = self.req("POST", "/v2.0/ports", {"port": self.bound_body()})
            pid = r["port"]["id"]
            # The machine's CPU for each bookkeeping write, from a quiet machine: what a
            # start's bookkeeping costs a burst on the same cores.
            quiet()
            c0 = cpu_busy()
            t_put, _ = self.req("PUT", f"/v2.0/ports/{pid}", {"port": {
                "name": "kuryr-bench-floor-port", "device_id": "kuryr-bench-floor"}})
            put_cpu, c0 = cpu_seconds_since(c0), cpu_busy()
            t_tags, _ = self.req("PUT", f"/v2.0/ports/{pid}/tags", self.TAGS)
            tags_cpu = cpu_seconds_since(c0)
            self.req("DELETE", f"/v2.0/ports/{pid}")
        except OSError as e:
            log(f"  Neutron floor probe failed: {e}")
            return
        self.post.append(t_post)
        self.put.append(t_put)
        self.tags.append(t_tags)
        self.put_cpu.append(put_cpu)
        self.tags_cpu.append(tags_cpu)


# Bursts: (containers, concurrency); the 50-container burst is 5x the pool.
BURSTS = [(20, 5), (20, 10), (50, 10)]


def burst(d, n, conc, rnd):
    """`n` containers started, then removed, `conc` at a time."""
    res, slug, plugin = d["res"], d["slug"], d["plugin"]
    log(f"{d['name']}: {n} containers, concurrency {conc} (round {rnd + 1})")
    names = [f"kb-{slug}-b{n}x{conc}-{rnd}-{i}" for i in range(n)]
    # As a lifecycle: what the previous driver's burst left to the background (its ports'
    # deletes reaching the agents, Neutron's RPCs) lands on no driver's burst.
    waited, noisy = quiet(QUIET_BURST_MAX)
    taps = host_taps()
    with Sampler(plugin) as s:
        t0, c0, p0 = time.perf_counter(), cpu_busy(), proc_cpu()
        with cf.ThreadPoolExecutor(conc) as ex:
            oks = list(ex.map(lambda c: timed("run", "-d", "--label", LABEL, "--name", c,
                                              "--network", d["net"], IMAGE, "sleep", "3600")[1], names))
        wall = time.perf_counter() - t0
        cpu = cpu_seconds_since(c0)
        procs = proc_cpu_since(p0)
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(conc) as ex:
            list(ex.map(lambda c: docker("rm", "-f", c, check=False), names))
        rm_wall = time.perf_counter() - t0
    r = res.setdefault(f"b{n}x{conc}", {"wall": [], "rm_wall": [], "failures": 0, "per_s": [], "peak_rss_mb": 0.0})
    r["wall"].append(wall)
    r.setdefault("cpu_s", []).append(cpu)
    # Where that CPU went, and what the host held when the burst began: a burst that
    # slows down from one round to the next says why here.
    r.setdefault("proc_cpu_s", []).append({k: round(v, 1) for k, v in procs.items()})
    r.setdefault("taps_before", []).append(taps[0])
    r.setdefault("taps_without_alias_before", []).append(taps[1])
    r.setdefault("quiet_timed_out", []).append(noisy)
    r.setdefault("quiet_waited_s", []).append(round(waited, 1))
    r["rm_wall"].append(rm_wall)
    r["failures"] += oks.count(False)
    r["per_s"].append(oks.count(True) / wall)
    r["peak_rss_mb"] = max(r["peak_rss_mb"], s.peak)
    settle(d)


def bench_all(drivers, reps, neutron_log, rounds, floor):
    """Every measurement, the drivers interleaved so that each ratio compares figures
    taken under the same conditions: one round of lifecycles per repetition, each
    concurrency level for all drivers one after another."""
    for d in drivers:
        d["slug"] = d["name"].replace("+", "-")  # Docker names allow [a-zA-Z0-9_.-]
        d["ipam"] = [] if d["driver"] == "bridge" else ["--ipam-driver", d["driver"]]
        d["res"] = {"name": d["name"], "failures": 0}
    for d in drivers:
        net_create_remove(d, reps)
    for d in drivers:
        setup(d)
    floor.find(next(d["net"] for d in drivers if d["name"] == "kuryr"))
    mark_logs(drivers, "log_bytes_before_lifecycles")
    # The pooled driver's Neutron network: its pool is read before and after each burst.
    pool_net = floor.network_of(next(d["net"] for d in drivers if d["name"] == "kuryr+pool"))
    # Let the port pool fill before measuring (it fills in the background).
    time.sleep(3)
    log(f"docker run -d / rm -f x{reps}, the drivers interleaved")
    for i in range(reps):
        # The order turns each repetition, so no driver always follows the same one.
        k = i % len(drivers)
        for d in drivers[k:] + drivers[:k]:
            lifecycle(d, i, neutron_log)
        floor.probe()
        time.sleep(0.3)
    for d in drivers:
        if d["plugin"]:
            runs = max(1, len(d["res"]["run"]))
            d["res"]["cpu_per_lifecycle_s"] = (d["plugin"].cpu_s() - d["cpu0"]) / runs
            d["res"]["rss_idle_mb"] = d["plugin"].rss_mb()
    # Where each plugin's log stands once the sequential lifecycles are done: the profile
    # of a start reads from their start to here, not the network creates' gateway
    # addresses nor the bursts' calls (which queue on Neutron).
    mark_logs(drivers, "log_bytes_after_lifecycles")
    # Each round runs every burst for every driver in turn; the Python reference skips the
    # 50-container burst (it takes minutes there and is not what the targets compare).
    # Odd rounds run the drivers in reverse order, so no driver's burst always follows the
    # same one's.
    for rnd in range(rounds):
        for n, conc in BURSTS:
            for d in (drivers if rnd % 2 == 0 else drivers[::-1]):
                if n > 20 and d["name"] == "reference" or d.get("lifecycles_only"):
                    continue
                pooled = d["name"] == "kuryr+pool"
                ready = floor.pool_ready(pool_net) if pooled else 0
                burst(d, n, conc, rnd)
                if pooled:
                    floor.pool_settled(pool_net)
                    # Neutron's part of the same burst, raw, from as many ready ports.
                    r = d["res"][f"b{n}x{conc}"]
                    r.setdefault("pool_ready", []).append(ready)
                    wall = floor.burst(n, conc, ready)
                    if wall:
                        r.setdefault("neutron_floor_s", []).append(wall)
                        r.setdefault("neutron_floor_cpu_s", []).append(floor.burst_cpu_s)
                    quiet()
    for d in drivers:
        # A network Docker will not remove (an endpoint it still counts) is a failure the
        # report names: the containers above were all removed.
        r = docker("network", "rm", d["net"], check=False)
        if r.returncode != 0:
            d["res"]["net_rm_error"] = r.stderr.strip()
            log(f"  {d['name']}: network rm failed: {r.stderr.strip()}")
        if d["plugin"]:
            d["res"]["cpu_total_s"] = d["plugin"].cpu_s()
    return [d["res"] for d in drivers]


def mark_logs(drivers, key):
    """Keeps under `key` where each plugin's log stands now."""
    for d in drivers:
        if d["plugin"]:
            d["plugin"].log.flush()
            d["res"][key] = os.path.getsize(d["plugin"].log.name)


def profile(logfile, start=0, end=None):
    """Median time per libnetwork call and per Neutron request kind, from kuryr's JSON log
    (the bytes from `start` to `end`, when given)."""
    calls, reqs = {}, {}
    with open(logfile, "rb") as f:
        f.seek(start)
        raw = f.read() if end is None else f.read(max(0, end - start))
        for line in raw.decode(errors="replace").splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            fl = e.get("fields", {})
            if fl.get("message") == "libnetwork call" and "ms" in fl:
                calls.setdefault(fl["method"], []).append(float(fl["ms"]))
            elif fl.get("message") == "neutron request" and "elapsed_ms" in fl:
                path = re.sub(r"/[0-9a-f-]{36}", "/<id>", fl.get("path", ""))
                reqs.setdefault(f'{fl.get("method")} {path}', []).append(float(fl["elapsed_ms"]))
    return calls, reqs


BACKEND = "ML2/linuxbridge"


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 2**20
    dv = docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    nv = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3-neutron"],
                        capture_output=True, text=True).stdout.strip()
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"Docker {dv}, Neutron {nv} ({BACKEND}, all-in-one on loopback; {firewall()})")


def firewall():
    """Who enforces security groups in this run: what a secure start waits for."""
    if BACKEND != "ML2/linuxbridge":
        return "groups enforced by OVN's ACLs"
    hooked = subprocess.run(["iptables", "-C", "FORWARD", "-j", "neutron-linuxbri-FORWARD"],
                            capture_output=True).returncode == 0
    return ("groups enforced by the agent's iptables firewall" if hooked
            else "the agent's firewall is noop: groups not enforced")


def peak10(r):
    """A plugin's peak RSS over its bursts at concurrency 10."""
    return max((v["peak_rss_mb"] for k, v in r.items() if k.startswith("b") and k.endswith("x10")), default=0.0)


def see_also(out_md):
    """Links to the reports of the other backend and of the CNI plugin, where they exist."""
    d = os.path.dirname(out_md)
    other = ("benchmarks-ovn.md", "ML2/OVN") if BACKEND == "ML2/linuxbridge" else ("benchmarks.md", "ML2/linuxbridge")
    links = [f"[{f}]({f}) ({what})" for f, what in (other, ("benchmarks-cni.md", "the CNI plugin, `bench/cni`"))
             if os.path.exists(os.path.join(d, f))]
    return f" See also {', '.join(links)}." if links else ""


def write_report(results, calls, reqs, reps, floor, out_md, out_png):
    by = {r["name"]: r for r in results}
    bridge, ref, ours, pooled = by["bridge"], by["reference"], by["kuryr"], by["kuryr+pool"]
    secure = by[SECURE]

    def ms(x):
        return f"{x * 1000:.0f} ms"

    def ratio(a, b):
        return f"{median(a) / median(b):.2f}x" if a and b else "n/a"

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = "Benchmarks" if BACKEND == "ML2/linuxbridge" else f"Benchmarks on {BACKEND}"
    L = [f"# {title}", "",
         f"Measured {now} on {machine()}. {reps} repetitions per figure, one run, "
         "the same Neutron and dockerd for all of them, the drivers interleaved (one round of "
         "lifecycles per repetition, in an order that turns each repetition; each concurrency "
         "level for every driver in turn, in reverse order in odd rounds), so each ratio compares figures taken under the same "
         "conditions. Each lifecycle and each burst starts once the machine is quiet (under "
         f"{QUIET_BUSY:.0%} of its CPU busy for {2 * QUIET_WINDOW:.1f} s: median wait "
         f"{median(QUIET['waited']):.1f} s, {QUIET['timeouts']} of {len(QUIET['waited'])} "
         f"gave up after {QUIET_MAX:.0f} s, or {QUIET_BURST_MAX:.0f} s before a burst), so no start pays for the background work of "
         "the one before it. Regenerate with `bench/run`"
         f"{'' if BACKEND == 'ML2/linuxbridge' else ' --ovn'}.{see_also(out_md)}", "",
         f"![docker run / rm times, Neutron requests and memory]({os.path.basename(out_png)})", "",
         "## Container lifecycle (`docker run -d`, `docker rm -f`, sequential)", "",
         "| driver | run median | run p95 | rm median | rm p95 | run vs bridge | run vs reference | failures |",
         "|---|---|---|---|---|---|---|---|"]
    for r in results:
        L.append(f"| {r['name']} | {ms(median(r['run']))} | {ms(pct(r['run'], 95))} | {ms(median(r['rm']))} | "
                 f"{ms(pct(r['rm'], 95))} | {ratio(r['run'], bridge['run'])} | {ratio(r['run'], ref['run'])} | {r['failures']} |")
    L += ["", "## Network create / remove", "",
          "| driver | create median | create p95 | remove median | remove p95 |", "|---|---|---|---|---|"]
    for r in results:
        L.append(f"| {r['name']} | {ms(median(r['net_create']))} | {ms(pct(r['net_create'], 95))} | "
                 f"{ms(median(r['net_remove']))} | {ms(pct(r['net_remove'], 95))} |")
    stuck = [r for r in results if r.get("net_rm_error")]
    L += [""] + ([f"- {r['name']}: its measurement network was not removed at the end: "
                  f"`{r['net_rm_error']}`" for r in stuck] if stuck else
                 ["Every driver's measurement network was removed at the end, after all its containers."])

    def spread(xs, f):
        return f"{f(median(xs))} ({f(min(xs))}-{f(max(xs))})" if xs else "-"

    def vs_bridge(r, key):
        """Per-round ratios to bridge's same round: median (min-max)."""
        ours_, base = r.get(key, {}).get("per_s", []), bridge.get(key, {}).get("per_s", [])
        xs = [a / b for a, b in zip(ours_, base) if b]
        return xs, spread(xs, lambda x: f"{x:.2f}x")

    def cpu_of(r, key, field):
        xs = r.get(key, {}).get(field, [])
        return f"{median(xs):.1f}" if xs else "-"

    def burst_floor(key):
        """Neutron's raw part of kuryr+pool's burst, per round: (seconds, the rate it
        allows against bridge's of the same round)."""
        x, n = pooled.get(key, {}), int(key[1:].split("x")[0])
        walls, base = x.get("neutron_floor_s", []), bridge.get(key, {}).get("per_s", [])
        return walls, [n / w / b for w, b in zip(walls, base) if w and b]

    rounds = len(bridge[f"b{BURSTS[0][0]}x{BURSTS[0][1]}"]["per_s"])
    ready = sorted({p for n, c in BURSTS for p in pooled.get(f"b{n}x{c}", {}).get("pool_ready", [])})
    L += ["", "## Bursts: containers started in parallel", "",
          f"{rounds} rounds; in each, every burst for every driver in turn, so each ratio "
          "compares a driver with bridge's run of the same round. Median over the rounds, "
          "(min-max) the spread. kuryr+pool has `port_pool_size = 10`; its pool grows in a "
          "burst that outruns it and stays grown for 10 minutes, so a burst found "
          f"{', '.join(map(str, ready)) or 'an unknown number of'} ports ready (read from Neutron "
          "before each burst). The Python reference skips the 50-container burst.", "",
          "| driver | containers x concurrency | containers/s | vs bridge | start wall time | rm wall time | failures | plugin peak RSS |",
          "|---|---|---|---|---|---|---|---|"]
    for n, c in BURSTS:
        key = f"b{n}x{c}"
        for r in results:
            x = r.get(key)
            if not x:
                continue
            rss = f"{x['peak_rss_mb']:.1f} MB" if r["name"] != "bridge" else "-"
            L.append(f"| {r['name']} | {n} x {c} | {spread(x['per_s'], lambda v: f'{v:.1f}')} | "
                     f"{vs_bridge(r, key)[1]} | {spread(x['wall'], lambda v: f'{v:.1f} s')} | "
                     f"{spread(x['rm_wall'], lambda v: f'{v:.1f} s')} | {x['failures']} | {rss} |")
    floors = [(n, c, *burst_floor(f"b{n}x{c}")) for n, c in BURSTS]
    if any(w for _, _, w, _ in floors):
        L += ["", "Neutron's own part of each kuryr+pool burst, measured raw right after it from "
              "as many ready ports, with no Docker and no kuryr: the bound ports the pool lacked "
              "(bulk requests of 10, one after another), and every start's bookkeeping (the "
              "port's update and its tags), as many at a time as the burst's concurrency, each as "
              "soon as its port exists. Its time bounds the rate any plugin that keeps the "
              "reference's bookkeeping contract can reach here, before Docker's own work on the "
              "same 2 cores.", "",
              "| burst | pool ports ready | Neutron alone | the rate it allows vs bridge | kuryr+pool vs bridge "
              "| machine CPU-seconds: bridge's burst / Neutron alone / kuryr+pool's burst |",
              "|---|---|---|---|---|---|"]
        for n, c, walls, xs in floors:
            if walls:
                got = pooled[f"b{n}x{c}"].get("pool_ready", [])
                L.append(f"| {n} x {c} | {spread(got, str)} | {spread(walls, lambda v: f'{v:.1f} s')} | "
                         f"{spread(xs, lambda v: f'{v:.2f}x')} | {vs_bridge(pooled, f'b{n}x{c}')[1]} | "
                         f"{cpu_of(bridge, f'b{n}x{c}', 'cpu_s')} / {cpu_of(pooled, f'b{n}x{c}', 'neutron_floor_cpu_s')} / "
                         f"{cpu_of(pooled, f'b{n}x{c}', 'cpu_s')} |")
        L += ["", f"CPU-seconds are the whole machine's ({os.cpu_count()} cores, steal time left out) "
              "over each burst's starts: when a burst keeps every core busy, the machine's CPU, "
              "not one program's waits, sets its rate."]
    L += ["", "### Where each burst's CPU went, round by round", "",
          "The machine's CPU-seconds over each burst's starts, split by process (a short-lived "
          "one, such as `iptables-restore`, counts in the process that ran it), with the taps "
          "on the host when the burst began (of them without kuryr's alias: another plugin's, "
          "or leaked) and how long it waited for a quiet machine (\"gave up\": it began after "
          f"{QUIET_BURST_MAX:.0f} s on a busy one).", "",
          "| burst | driver | round | waited | start wall time | CPU-s | taps (no alias) | largest shares, CPU-s |",
          "|---|---|---|---|---|---|---|---|"]
    for n, c in BURSTS:
        if c != 10:
            continue
        key = f"b{n}x{c}"
        for r in results:
            x = r.get(key, {})
            for i, procs in enumerate(x.get("proc_cpu_s", [])):
                top = ", ".join(f"{k} {v:.1f}" for k, v in list(procs.items())[:5])
                wait = f"{x['quiet_waited_s'][i]:.0f} s" + (", gave up" if x["quiet_timed_out"][i] else "")
                L.append(f"| {n} x {c} | {r['name']} | {i + 1} | {wait} | {x['wall'][i]:.1f} s | {x['cpu_s'][i]:.0f} | "
                         f"{x['taps_before'][i]} ({x['taps_without_alias_before'][i]}) | {top} |")
    L += ["", "## Neutron requests, memory, CPU", "",
          "| plugin | Neutron requests per lifecycle (median) | RSS at start | RSS idle after load | peak RSS at concurrency 10 | CPU per lifecycle | CPU total |",
          "|---|---|---|---|---|---|---|"]
    for r in (ref, ours, pooled, secure):
        peak = f"{peak10(r):.1f} MB" if r.get("b20x10") else "-"
        L.append(f"| {r['name']} | {median(r['neutron_requests']):.0f} | {r['rss_start_mb']:.1f} MB | {r['rss_idle_mb']:.1f} MB | "
                 f"{peak} | {r['cpu_per_lifecycle_s'] * 1000:.0f} ms | {r['cpu_total_s']:.1f} s |")
    L += ["", "Neutron requests are counted from neutron-server's API log (the same way for all). "
          "With the pool, the bulk refills (one request per half pool) land between lifecycles "
          "and are counted where they fall.", ""]

    run_ratio = median(ours["run"]) / median(bridge["run"])
    pool_ratio = median(pooled["run"]) / median(bridge["run"])
    rm_ratio = median(pooled["rm"]) / median(bridge["rm"])
    secure_ratio = median(secure["run"]) / median(bridge["run"])
    # The least a start without the pool can take here: bridge's start plus Neutron's own
    # time for the two requests on that path, measured raw in the same repetitions.
    if floor.post and floor.put:
        floor_s = median(bridge["run"]) + median(floor.post) + median(floor.put)
        floor_ratio = floor_s / median(bridge["run"])
        floor_text = (f"; Neutron's floor for that path in this run: {floor_ratio:.2f}x (bridge's "
                      f"{ms(median(bridge['run']))} + a bound port create {ms(median(floor.post))} + "
                      f"a port update {ms(median(floor.put))}, measured raw)")
    else:
        floor_ratio, floor_text = float("nan"), ""
    def with_floor(key):
        """kuryr+pool's burst ratio, and what Neutron alone allows for it where measured."""
        xs, text = vs_bridge(pooled, key)
        allowed = burst_floor(key)[1]
        return xs, text + (f"; Neutron alone allows {median(allowed):.2f}x here (raw, below)" if allowed else "")

    b20, b20_text = with_floor("b20x10")
    b50, b50_text = with_floor("b50x10")
    targets = [
        ("`docker run` kuryr/bridge <= 1.25 with the pool", pool_ratio <= 1.25, f"{pool_ratio:.2f}x (port_pool_size = 10)"),
        ("`docker rm` kuryr/bridge <= 1.25 with the pool", rm_ratio <= 1.25, f"{rm_ratio:.2f}x"),
        ("20 containers at concurrency 10 with the pool: >= 0.6x bridge's containers/s, 0 failures",
         median(b20) >= 0.6 and pooled["b20x10"]["failures"] == 0,
         f"{b20_text}, {pooled['b20x10']['failures']} failures"),
        ("50 containers at concurrency 10 with the pool (5x the pool): >= 0.5x bridge's containers/s, 0 failures",
         median(b50) >= 0.5 and pooled["b50x10"]["failures"] == 0,
         f"{b50_text}, {pooled['b50x10']['failures']} failures"),
        ("`docker run` kuryr/bridge <= 2.3 without the pool", run_ratio <= 2.3, f"{run_ratio:.2f}x{floor_text}"),
        (f"`docker run` kuryr/bridge <= 1.5 with the pool and `vif_plugging_is_fatal` ({firewall()})",
         secure_ratio <= 1.5 and secure["failures"] == 0,
         f"{secure_ratio:.2f}x, {secure['failures']} failures"),
        ("Neutron requests per container lifecycle <= 5", median(ours["neutron_requests"]) <= 5,
         f"{median(ours['neutron_requests']):.0f} (reference {median(ref['neutron_requests']):.0f})"),
        ("RSS < 15 MB idle", ours["rss_idle_mb"] < 15, f"{ours['rss_idle_mb']:.1f} MB (reference {ref['rss_idle_mb']:.1f} MB)"),
        ("RSS < 30 MB at concurrency 10", peak10(ours) < 30, f"{peak10(ours):.1f} MB"),
        ("zero failures at concurrency 10", ours["b50x10"]["failures"] + ours["b20x10"]["failures"] == 0,
         f"{ours['b50x10']['failures'] + ours['b20x10']['failures']} failures"),
    ]
    L += ["## Targets", "", "| target | met | measured |", "|---|---|---|"]
    for t, ok, v in targets:
        L.append(f"| {t} | {'yes' if ok else 'no'} | {v} |")

    L += ["", "## Where a kuryr container start goes", "",
          "Median time kuryr (without the pool) spends in each libnetwork call (its own log), and in "
          "each kind of Neutron request it makes, over the sequential lifecycles above (not the "
          "network creates, nor the bursts, whose calls queue on Neutron). The rest of `docker run` is Docker itself (image, "
          "container, namespace) and the bridge-driver floor above shows its size.", "",
          "| libnetwork call | calls | median |", "|---|---|---|"]
    for m, xs in sorted(calls.items(), key=lambda kv: -median(kv[1])):
        L.append(f"| {m} | {len(xs)} | {median(xs):.1f} ms |")
    L += ["", "| Neutron request | count | median |", "|---|---|---|"]
    for m, xs in sorted(reqs.items(), key=lambda kv: -len(kv[1]))[:15]:
        L.append(f"| `{m}` | {len(xs)} | {median(xs):.1f} ms |")
    start_calls = ["IpamDriver.RequestAddress", "NetworkDriver.CreateEndpoint", "NetworkDriver.Join",
                   "NetworkDriver.ProgramExternalConnectivity", "NetworkDriver.EndpointOperInfo"]
    in_kuryr = sum(median(calls[c]) for c in start_calls if c in calls) / 1000
    L += ["", f"Of a median `docker run` of {ms(median(ours['run']))}, about {ms(in_kuryr)} is spent inside "
          f"kuryr's calls (mostly waiting for Neutron's port create and update); the bridge driver's "
          f"{ms(median(bridge['run']))} is Docker's own share.", ""]
    post = median(reqs.get("POST /v2.0/ports", [float("nan")]))
    bridge_cpu = bridge.get("b20x10", {}).get("cpu_s")
    bridge_cpu_per_start = median(bridge_cpu) / 20 if bridge_cpu else None  # 20 containers
    L += ["## What bounds what remains", "",
          f"- Without the pool, one Neutron request stays on the start path: RequestAddress "
          f"creates the container's port already bound to this host (median {post:.0f} ms here, "
          "ML2 running its mechanism drivers inside the create). CreateEndpoint answers without "
          "Neutron: the port is bound, Docker takes the port's MAC (kuryr's IPAM asks Docker for "
          "none), the veth is plugged with the vif_type Neutron already gave; Join waits for the "
          "endpoint's device_id, name and tags (as with the pool, below). neutron-server here has one API worker on "
          "2 cores, which caps parallel starts without the pool at about one port create at a time."
          + (f" Measured raw against Neutron in each repetition, beside the lifecycles, a port "
             f"created bound to this host took {ms(median(floor.post))} and the update of its name and "
             f"device_id {ms(median(floor.put))}: with bridge's {ms(median(bridge['run']))}, no start "
             f"that makes its port and writes its bookkeeping before `docker run` returns can be under "
             f"{floor_ratio:.2f}x bridge here; kuryr's is {run_ratio:.2f}x." if floor.post else ""),
          f"- With the pool ({pool_ratio:.2f}x) RequestAddress and CreateEndpoint, the calls Docker "
          "serialises per network, ask Neutron nothing; Join waits for the endpoint's bookkeeping "
          f"(`PUT ports/<id>` median {median(reqs.get('PUT /v2.0/ports/<id>', [float('nan')])):.0f} ms, "
          f"then `PUT ports/<id>/tags` median {median(reqs.get('PUT /v2.0/ports/<id>/tags', [float('nan')])):.0f} ms), so that once `docker run` returns the port is the container's, as the "
          "reference's is. That wait is what separates a pooled start from bridge's."
          + (f" With the raw port update above and its tags after it ({ms(median(floor.tags))} raw), "
             f"no start that writes its bookkeeping before `docker run` returns can be under "
             f"{(median(bridge['run']) + median(floor.put) + median(floor.tags)) / median(bridge['run']):.2f}x "
             "bridge here." if floor.put and floor.tags else ""),
          "- In a burst every start's bookkeeping (2 requests) and the pool's bulk refills share "
          "neutron-server's one API worker on the same 2 cores as dockerd. A start that finds "
          "the pool empty waits for the refill under way instead of making its own port under "
          "Docker's lock, and the pool doubles for the next burst (up to `port_pool_max`)."
          + "".join(f" {n} at {c}: Neutron alone, raw, needed {median(w):.1f} s for that burst's "
                    f"requests, {median(xs):.2f}x bridge's rate at most; kuryr+pool reached "
                    f"{median(vs_bridge(pooled, f'b{n}x{c}')[0]):.2f}x." for n, c, w, xs in floors
                    if c == 10 and w and xs)
          + (f" Measured raw in each repetition from a quiet machine, the port update took "
             f"{ms(median(floor.put_cpu))} of the machine's CPU (neutron-server's API worker, its "
             f"database) and the tags' write {ms(median(floor.tags_cpu))}, against "
             f"{ms(bridge_cpu_per_start)} per container for bridge's whole start (its 20 at 10): "
             "on 2 cores the bookkeeping alone takes a pooled burst's rate to at most "
             f"{bridge_cpu_per_start / (bridge_cpu_per_start + median(floor.put_cpu) + median(floor.tags_cpu)):.2f}x "
             "bridge's, before the rest of kuryr's and the host's work."
             if floor.put_cpu and floor.tags_cpu and bridge_cpu_per_start else ""),
          f"- {SECURE} ({secure_ratio:.2f}x): `vif_plugging_is_fatal` makes CreateEndpoint wait "
          "until Neutron reports the port ACTIVE, which the agent (or ovn-controller) does once "
          "the port's filter is in place. The pool plugs its ports ahead, so that wait happened "
          "before the start: it costs one `GET ports/<id>`. Without the pool the start waits for "
          "the agent to find the new veth and filter it.",
          "- `docker rm`: DeleteEndpoint and ReleaseAddress make no request with the pool (the "
          "port is scrubbed back into the pool, or deleted beyond its size, in the background); "
          "without it ReleaseAddress deletes the port.", ""]
    with open(out_md, "w") as f:
        f.write("\n".join(L) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [r["name"] for r in results]
    colors = ["#888888", "#d95f02", "#1b9e77", "#7570b3", "#e7298a"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    ax = axes[0]
    w = 0.38
    for i, key in enumerate(("run", "rm")):
        med = [median(r[key]) for r in results]
        p95 = [pct(r[key], 95) for r in results]
        xs = [j + (i - 0.5) * w for j in range(len(names))]
        ax.bar(xs, med, w, color=colors, alpha=1.0 if key == "run" else 0.55, label=f"docker {key}")
        ax.errorbar(xs, med, yerr=[[0] * len(med), [p - m for p, m in zip(p95, med)]], fmt="none", ecolor="black", capsize=3)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("seconds (median, bar to p95)")
    ax.set_title("docker run (solid) / rm (light)")
    ax = axes[1]
    ax.bar(["reference", "kuryr", "kuryr+pool"], [median(r["neutron_requests"]) for r in (ref, ours, pooled)], color=colors[1:])
    ax.set_title("Neutron requests per container lifecycle")
    ax = axes[2]
    x = range(3)
    plugs = (ref, ours, pooled)
    ax.bar([i - 0.2 for i in x], [r["rss_idle_mb"] for r in plugs], 0.4, color=colors[1:], label="idle")
    ax.bar([i + 0.2 for i in x], [peak10(r) for r in plugs], 0.4, color=colors[1:], alpha=0.55, label="peak, concurrency 10")
    ax.set_xticks(list(x), ["reference", "kuryr", "kuryr+pool"])
    ax.set_ylabel("MB")
    ax.set_title("plugin resident memory (solid idle, light peak)")
    fig.suptitle(f"kuryr (with and without port pool) vs Python kuryr-libnetwork vs Docker bridge - {now}, {os.cpu_count()} cores")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


def cleanup(spec):
    for c in docker("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split():
        docker("rm", "-f", c, check=False)
    for n in docker("network", "ls", "-q", "--filter", f"label={LABEL}", check=False).stdout.split():
        docker("network", "rm", n, check=False)
    if os.path.exists(spec):
        os.remove(spec)


def main():
    global BACKEND
    ap = argparse.ArgumentParser()
    ap.add_argument("--kuryr", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--neutron", required=True)
    ap.add_argument("--neutron-log", required=True)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of bursts")
    ap.add_argument("--out", default="docs")
    ap.add_argument("--name", default="benchmarks", help="file names under --out")
    ap.add_argument("--backend", default="ML2/linuxbridge", help="what the report says Neutron runs")
    ap.add_argument("--ref-hostname", help="run the reference with this host name (its "
                    "binding:host_id; it has no option for it), in a UTS namespace of its own")
    a = ap.parse_args()
    BACKEND = a.backend
    work = tempfile.mkdtemp(prefix="kuryr-bench-")
    spec = "/etc/docker/plugins/kbenchref.spec"
    cleanup(spec)
    ref_port = 23790
    os.makedirs("/etc/docker/plugins", exist_ok=True)
    with open(spec, "w") as f:
        f.write(f"http://127.0.0.1:{ref_port}\n")
    with open(f"{work}/ref.conf", "w") as f:
        f.write(f"[DEFAULT]\nbindir = {a.reference}/libexec/kuryr\nkuryr_uri = http://127.0.0.1:{ref_port}\n"
                f"[neutron]\nauth_type = none\nendpoint = {a.neutron}\n")
    sock = "/run/docker/plugins/kbench.sock"
    with open(f"{work}/ours.conf", "w") as f:
        f.write(f"[DEFAULT]\nunix_socket = {sock}\n[neutron]\nauth_type = none\nendpoint = {a.neutron}\n")
    psock = "/run/docker/plugins/kbenchpool.sock"
    with open(f"{work}/pool.conf", "w") as f:
        f.write(f"[DEFAULT]\nunix_socket = {psock}\nport_pool_size = 10\n[neutron]\nauth_type = none\nendpoint = {a.neutron}\n")
    ssock = "/run/docker/plugins/kbenchsecure.sock"
    with open(f"{work}/secure.conf", "w") as f:
        f.write(f"[DEFAULT]\nunix_socket = {ssock}\nport_pool_size = 10\n[neutron]\nauth_type = none\n"
                f"endpoint = {a.neutron}\nvif_plugging_is_fatal = true\nvif_plugging_timeout = 15\n")
    env = dict(os.environ, RUST_LOG="info,kuryr::neutron=debug")
    ref_argv = [f"{a.reference}/bin/kuryr-server", "--config-file", f"{work}/ref.conf"]
    if a.ref_hostname:
        ref_argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', a.ref_hostname, *ref_argv]
    ref = Plugin("reference", ref_argv, can_connect_tcp(ref_port), f"{work}/reference.log")
    ours = Plugin("kuryr", [a.kuryr, "--log-format", "json", "serve", "--config-file", f"{work}/ours.conf"],
                  lambda: os.path.exists(sock), f"{work}/kuryr.log", env=env)
    pool = Plugin("kuryr+pool", [a.kuryr, "serve", "--config-file", f"{work}/pool.conf"],
                  lambda: os.path.exists(psock), f"{work}/pool.log")
    secure = Plugin(SECURE, [a.kuryr, "serve", "--config-file", f"{work}/secure.conf"],
                    lambda: os.path.exists(ssock), f"{work}/secure.log")
    drivers = [
        {"name": "bridge", "driver": "bridge", "plugin": None, "subnet": "10.90.0.0/24", "gateway": "10.90.0.1"},
        {"name": "reference", "driver": "kbenchref", "plugin": ref, "subnet": "10.91.0.0/24", "gateway": "10.91.0.1"},
        {"name": "kuryr", "driver": "kbench", "plugin": ours, "sock": sock, "subnet": "10.92.0.0/24", "gateway": "10.92.0.1"},
        {"name": "kuryr+pool", "driver": "kbenchpool", "plugin": pool, "sock": psock, "subnet": "10.93.0.0/24", "gateway": "10.93.0.1"},
        # Lifecycles only: what a secure start costs is the question, not its bursts.
        {"name": SECURE, "driver": "kbenchsecure", "plugin": secure, "sock": ssock, "subnet": "10.94.0.0/24",
         "gateway": "10.94.0.1", "lifecycles_only": True},
    ]
    try:
        # kuryr binds its ports to the chassis' host name on OVN, to the kernel's else.
        floor = NeutronFloor(a.neutron, a.ref_hostname or socket.gethostname())
        results = bench_all(drivers, a.reps, a.neutron_log, a.rounds, floor)
    finally:
        cleanup(spec)
        ref.stop()
        ours.stop()
        pool.stop()
        secure.stop()
    for r in results:
        if r["name"] == "kuryr":
            r["neutron_floor"] = {"post": floor.post, "put": floor.put, "tags": floor.tags,
                                  "put_cpu_s": floor.put_cpu, "tags_cpu_s": floor.tags_cpu}
    ours_res = next(r for r in results if r["name"] == "kuryr")
    calls, reqs = profile(f"{work}/kuryr.log", ours_res.get("log_bytes_before_lifecycles", 0),
                          ours_res.get("log_bytes_after_lifecycles"))
    os.makedirs(a.out, exist_ok=True)
    write_report(results, calls, reqs, a.reps, floor, f"{a.out}/{a.name}.md", f"{a.out}/{a.name}.png")
    with open(f"{a.out}/{a.name}.json", "w") as f:
        json.dump([{k: v for k, v in r.items()} for r in results], f, indent=1)
    shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {a.out}/{a.name}.md and {a.out}/{a.name}.png")


if __name__ == "__main__":
    main()
