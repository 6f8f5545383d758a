#!/usr/bin/env python3
"""The soak's driver (netns-lab/soak.sh runs it against a lab it brought up).

  soak.py SECONDS OUT_DIR

The lab (WEFT_LAB_PREFIX / WEFT_LAB_STATE) is up with N nodes and two
anchor pods per node. For SECONDS this runs, all at once:
- checked traffic between anchor pods (soak_traffic.py): a ring of paced TCP
  streams (alternately IPv4 and IPv6) whose every byte is verified, and a
  ring of UDP flows with sequence numbers;
- pod churn: pods added and deleted through the CNI plugin, a few per second,
  over every node; each new pod must reach a pod on another node;
- faults, one per minute in turn: weftd killed with SIGKILL and restarted on
  nodes 3..N (nodes 1 and 2 keep one weftd for the whole run, so their
  memory shows a trend, not a sawtooth), a node partitioned from the others
  for 10 s and healed, a quiet minute;
- at the end of each minute, a checkpoint: churn paused, the cluster
  converged, and the state compared with the pods that exist (IPAM
  allocations, host veths, routes, the endpoints every node's gossip knows,
  nftables rules, namespaces);
- every 10 s, a sample per node: RSS, open descriptors, gossip records and
  endpoints, routes, nftables rules, IPAM allocations, pods.

It writes OUT_DIR/samples.csv, events.log, summary.md and exits non-zero if
any check failed: a byte lost, duplicated or corrupted, a state mismatch at a
checkpoint, a new pod that did not reach its peer, or growth that does not
level off (the last quarter of the run against the second).
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "netns-lab", "lab.sh")
TRAFFIC = os.path.join(ROOT, "netns-lab", "soak_traffic.py")
P = os.environ.get("WEFT_LAB_PREFIX", "wl")
STATE = os.environ.get("WEFT_LAB_STATE", "/run/weft-lab")
BIN = os.path.abspath(os.environ.get("WEFT_LAB_BIN", os.path.join(ROOT, "target", "release")))
CYCLE = 60.0
SAMPLE_EVERY = 10.0
TCP_RATE = 1_000_000  # bytes/s per stream
UDP_PPS = 100
CHURN_MAX = 6  # churn pods per node at most
LONG_LIVED = (1, 2)  # nodes whose weftd is never killed

T0 = time.monotonic()
log = print  # replaced by a Log once the output directory exists
failures = []
events_lock = threading.Lock()
faults = []  # (start, end, nodes) of every fault, run-relative seconds


def now():
    return time.monotonic() - T0


class Log:
    def __init__(self, path):
        self.f = open(path, "w", buffering=1)
        self.lock = threading.Lock()

    def __call__(self, msg):
        line = f"{now():8.1f}  {msg}"
        with self.lock:
            self.f.write(line + "\n")
        print(line, flush=True)


def fail(msg):
    failures.append(f"{now():.0f} s: {msg}")
    log(f"FAIL {msg}")


def run(*cmd, check=True, timeout=120, input=None, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r


def lab(*args, check=True, timeout=120):
    return run(LAB, *args, check=check, timeout=timeout)


def node_ns(k):
    return f"{P}-n{k}"


def weftd_pid(k):
    try:
        return int(open(f"{STATE}/weftd-n{k}.pid").read())
    except (OSError, ValueError):
        return None


def status(k):
    r = run("ip", "netns", "exec", node_ns(k), f"{BIN}/weftctl", "--socket", f"{STATE}/admin-n{k}.sock",
            "--json", "status", check=False, timeout=10)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


# ---------------------------------------------------------------- pods

class Pods:
    """Every pod that exists, by node: anchors (from lab.sh) and churn pods."""

    def __init__(self, nodes):
        self.lock = threading.Lock()
        self.by_node = {k: {} for k in range(1, nodes + 1)}  # node -> {netns: [ips]}
        for line in lab("pods").stdout.splitlines():
            ns, ips, node = line.split()
            self.by_node[int(node[1:])][ns] = ips.split(",")
        self.serial = 0

    def anchors(self, k):
        return sorted(ns for ns in self.by_node[k] if re.search(r"-p\d+$", ns))

    def churn(self, k):
        return sorted(ns for ns in self.by_node[k] if re.search(r"-c\d+$", ns))

    def ips(self, ns):
        for pods in self.by_node.values():
            if ns in pods:
                return pods[ns]
        raise KeyError(ns)

    def all_ips(self):
        return {ip for pods in self.by_node.values() for ips in pods.values() for ip in ips}


def cni(k, command, pod):
    conf = json.dumps({"cniVersion": "1.1.0", "name": "weft", "type": "weft", "attach": "tun",
                       "blocksFile": f"{STATE}/blocks-n{k}.json", "stateDir": f"{STATE}/cni-n{k}",
                       "weftdSocket": f"{STATE}/cni-n{k}.sock"})
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=pod, CNI_IFNAME="eth0",
               CNI_NETNS=f"/var/run/netns/{pod}", CNI_PATH=BIN)
    r = run("ip", "netns", "exec", node_ns(k), f"{BIN}/weft", input=conf, env=env, check=False, timeout=60)
    out = json.loads(r.stdout) if r.stdout.strip() else {}
    if r.returncode != 0 or "code" in out:
        raise RuntimeError(f"CNI {command} {pod}: {out.get('msg', r.stderr.strip())} {out.get('details', '')}")
    return out


def fault_overlaps(start, end, nodes):
    with events_lock:
        return any(s <= end and (e is None or e >= start) and (n & nodes) for s, e, n in faults)


class Churn(threading.Thread):
    """Adds and deletes pods on random nodes, a few per second, until stopped;
    pauses (and says so) while a checkpoint compares state."""

    def __init__(self, pods, nodes):
        super().__init__(daemon=True)
        self.pods, self.nodes = pods, nodes
        self.stop = threading.Event()
        self.pause = threading.Event()
        self.paused = threading.Event()
        self.added = self.deleted = self.reach_checked = self.reach_excused = 0
        self.first_reply = []  # seconds from CNI ADD to the new pod's first answered ping

    def run(self):
        while not self.stop.is_set():
            if self.pause.is_set():
                self.paused.set()
                time.sleep(0.05)
                continue
            self.paused.clear()
            k = random.randint(1, self.nodes)
            have = self.pods.churn(k)
            try:
                if len(have) < 2 or (len(have) < CHURN_MAX and random.random() < 0.5):
                    self.add(k)
                else:
                    self.delete(k, random.choice(have))
            except Exception as e:  # a failed step is a failure of the run, not of the driver
                fail(str(e))
            time.sleep(random.uniform(0.1, 0.4))
        self.paused.set()

    def add(self, k):
        self.pods.serial += 1
        pod = f"{P}-n{k}-c{self.pods.serial}"
        run("ip", "netns", "add", pod)
        run("ip", "-n", pod, "link", "set", "lo", "up")
        t_add = now()
        try:
            out = cni(k, "ADD", pod)
        except Exception:
            run("ip", "netns", "del", pod, check=False)
            raise
        ips = [i["address"].split("/")[0] for i in out["ips"]]
        with self.pods.lock:
            self.pods.by_node[k][pod] = ips
        self.added += 1
        self.reach(k, pod, ips, t_add)

    def reach(self, k, pod, ips, t_add):
        """The new pod reaches an anchor pod on another node within 10 s."""
        other = random.choice([o for o in range(1, self.nodes + 1) if o != k])
        target = self.pods.ips(self.pods.anchors(other)[0])[0]
        self.reach_checked += 1
        while now() - t_add < 10:
            r = run("ip", "netns", "exec", pod, "ping", "-c", "1", "-W", "1", target, check=False, timeout=5)
            if r.returncode == 0:
                self.first_reply.append(now() - t_add)
                return
        if fault_overlaps(t_add - 20, now(), {k, other}):
            self.reach_excused += 1  # the pod's node or its peer's was killed or cut off
        else:
            fail(f"new pod {pod} ({ips[0]}) on n{k} did not reach {target} on n{other} in 10 s")

    def delete(self, k, pod):
        cni(k, "DEL", pod)
        with self.pods.lock:
            del self.pods.by_node[k][pod]
        run("ip", "netns", "del", pod)
        self.deleted += 1


# ------------------------------------------------------------- traffic

class Traffic:
    """Checked TCP and UDP rings between the anchor pods."""

    def __init__(self, pods, nodes, out):
        self.dir = os.path.join(out, "traffic")
        os.makedirs(self.dir, exist_ok=True)
        self.servers, self.clients, self.flows = [], [], []
        for k in range(1, nodes + 1):
            dst_tcp = k % nodes + 1
            dst_udp = (k + 1) % nodes + 1
            fam = 0 if k % 2 else 1  # odd nodes send over IPv4, even over IPv6
            tcp_src, tcp_dst = pods.anchors(k)[0], pods.anchors(dst_tcp)[0]
            udp_src, udp_dst = pods.anchors(k)[1], pods.anchors(dst_udp)[1]
            self.flows.append(("tcp", k, tcp_src, tcp_dst, pods.ips(tcp_dst)[fam], 5400 + k))
            self.flows.append(("udp", k, udp_src, udp_dst, pods.ips(udp_dst)[1 - fam], 5500 + k))
        for kind, k, src, dst, addr, port in self.flows:
            self.servers.append(self.spawn(dst, f"{kind}-server", str(port), self.report(kind, k, "server")))
        time.sleep(1)
        for kind, k, src, dst, addr, port in self.flows:
            rate = str(TCP_RATE if kind == "tcp" else UDP_PPS)
            self.clients.append(self.spawn(src, f"{kind}-client", addr, str(port), rate, self.report(kind, k, "client")))

    def report(self, kind, k, side):
        return os.path.join(self.dir, f"{kind}{k}-{side}.json")

    @staticmethod
    def spawn(ns, *args):
        return subprocess.Popen(["ip", "netns", "exec", ns, "python3", TRAFFIC, *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def read(self, kind, k, side):
        try:
            return json.load(open(self.report(kind, k, side)))
        except (OSError, ValueError):
            return {}

    def totals(self):
        tcp = sum(self.read("tcp", k, "server").get("bytes", 0) for f, k, *_ in self.flows if f == "tcp")
        sent = sum(self.read("udp", k, "client").get("sent", 0) for f, k, *_ in self.flows if f == "udp")
        got = sum(self.read("udp", k, "server").get("received", 0) for f, k, *_ in self.flows if f == "udp")
        return tcp, sent, got

    def check_running(self):
        for kind, k, *_ in self.flows:
            for side in ("server", "client"):
                r = self.read(kind, k, side)
                if r.get("errors"):
                    fail(f"{kind} flow {k} {side}: {r['errors'][:3]}")
                    r["errors"] = []
        for p in self.servers + self.clients:
            if p.poll() is not None and p.returncode != 0:
                fail(f"a traffic process ended early: {p.args[3:]} {p.stderr.read()[-500:]}")
                p.returncode = 0

    def finish(self):
        """Stops the clients, lets the TCP servers read to the end, compares totals."""
        for p in self.clients:
            p.send_signal(signal.SIGTERM)
        for p in self.clients:
            try:
                p.wait(timeout=150)
            except subprocess.TimeoutExpired:
                p.kill()
                fail(f"a client did not finish: {p.args[3:]}")
        time.sleep(2)
        for p, (kind, *_rest) in zip(self.servers, self.flows):
            if kind == "udp":
                p.send_signal(signal.SIGTERM)
        for p in self.servers:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                fail(f"a server did not finish: {p.args[3:]}")
        lines = []
        for kind, k, src, dst, addr, port in self.flows:
            c, s = self.read(kind, k, "client"), self.read(kind, k, "server")
            if kind == "tcp":
                ok = c.get("bytes") == s.get("bytes") and not c.get("errors") and not s.get("errors") and s.get("done")
                if not ok:
                    fail(f"TCP {src} -> {dst}: sent {c.get('bytes')}, verified {s.get('bytes')}, errors {c.get('errors')} {s.get('errors')}")
                lines.append(f"| TCP {src[len(P) + 1:]} → {dst[len(P) + 1:]} ({addr}) | {c.get('bytes', 0):,} bytes sent | "
                             f"{s.get('bytes', 0):,} verified in order | {'none' if ok else 'MISMATCH'} |")
            else:
                lost = c.get("sent", 0) - s.get("received", 0)
                bad = s.get("duplicates", 0) + s.get("corrupt", 0)
                if bad:
                    fail(f"UDP {src} -> {dst}: {s.get('duplicates')} duplicated, {s.get('corrupt')} corrupt")
                lines.append(f"| UDP {src[len(P) + 1:]} → {dst[len(P) + 1:]} ({addr}) | {c.get('sent', 0):,} datagrams sent "
                             f"({c.get('send_errors', 0)} refused by the sender's kernel) | {s.get('received', 0):,} received, "
                             f"{lost:,} lost ({100 * lost / max(1, c.get('sent', 1)):.2f} %) | "
                             f"{s.get('duplicates', 0)} duplicated, {s.get('corrupt', 0)} corrupt |")
        return lines


# ------------------------------------------------------------- samples

def count_rules(k):
    r = run("ip", "netns", "exec", node_ns(k), "nft", "-j", "list", "ruleset", check=False, timeout=10)
    try:
        return sum(1 for x in json.loads(r.stdout)["nftables"] if "rule" in x)
    except (ValueError, KeyError):
        return -1


def count_routes(k, table="main"):
    """weftd's kernel routes (proto 87) in TABLE ("all": its host-path table too)."""
    return sum(len(run("ip", "-n", node_ns(k), *fam, "route", "show", "proto", "87", "table", table,
                       check=False).stdout.splitlines()) for fam in ([], ["-6"]))


def ipam_ips(k):
    try:
        return {a["ip"] for a in json.load(open(f"{STATE}/cni-n{k}/ipam/allocations.json"))["allocations"]}
    except (OSError, ValueError, KeyError):
        return set()


def host_veths(k):
    return len([line for line in run("ip", "-n", node_ns(k), "-o", "link", "show", "type", "veth").stdout.splitlines()
                if " weft" in line])


def proc_sample(pid):
    try:
        rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, TypeError):
        return None, None


SAMPLE_FIELDS = ["t_s", "node", "pid", "rss_kib", "fds", "gossip_records", "gossip_endpoints", "routes",
                 "nft_rules", "routes_all_tables", "ipam_allocations", "pods", "tcp_verified_bytes", "udp_sent", "udp_received"]


def sample(k, pods, traffic):
    pid = weftd_pid(k)
    rss, fds = proc_sample(pid) if pid else (None, None)
    st = status(k) if pid else None
    g = (st or {}).get("gossip") or {}
    tcp, sent, got = traffic.totals()
    return {"t_s": f"{now():.1f}", "node": k, "pid": pid or "", "rss_kib": rss or "", "fds": fds or "",
            "gossip_records": g.get("records", ""), "gossip_endpoints": g.get("endpoints", ""),
            "routes": count_routes(k), "nft_rules": count_rules(k), "routes_all_tables": count_routes(k, "all"), "ipam_allocations": len(ipam_ips(k)),
            "pods": len(pods.by_node[k]), "tcp_verified_bytes": tcp, "udp_sent": sent, "udp_received": got}


class Sampler(threading.Thread):
    def __init__(self, nodes, pods, traffic, path):
        super().__init__(daemon=True)
        self.nodes, self.pods, self.traffic = nodes, pods, traffic
        self.rows = []
        self.f = open(path, "w", buffering=1)
        self.f.write(",".join(SAMPLE_FIELDS) + "\n")
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(SAMPLE_EVERY):
            for k in range(1, self.nodes + 1):
                try:
                    row = sample(k, self.pods, self.traffic)
                except Exception as e:
                    log(f"sample of n{k} failed: {e}")
                    continue
                self.rows.append(row)
                self.f.write(",".join(str(row[f]) for f in SAMPLE_FIELDS) + "\n")


# ---------------------------------------------------------- checkpoints

def checkpoint(nodes, pods, baseline):
    """With churn paused and every fault healed: the state matches the pods."""
    r = lab("wait", "90", check=False, timeout=120)
    if r.returncode != 0:
        fail("the cluster did not converge within 90 s after the fault healed")
        return
    want_ips = {ip for ip in pods.all_ips()}
    deadline = time.monotonic() + 20
    while True:
        seen = {k: ((status(k) or {}).get("gossip") or {}).get("endpoints") for k in range(1, nodes + 1)}
        if all(v == len(want_ips) for v in seen.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    problems = []
    for k, v in seen.items():
        if v != len(want_ips):
            problems.append(f"n{k} gossip knows {v} endpoints, {len(want_ips)} pod addresses exist")
    for k in range(1, nodes + 1):
        mine = {ip for ips in pods.by_node[k].values() for ip in ips}
        held = ipam_ips(k)
        if held != mine:
            problems.append(f"n{k} IPAM holds {len(held)} addresses, its pods have {len(mine)} "
                            f"(extra {sorted(held - mine)[:4]}, missing {sorted(mine - held)[:4]})")
        v = host_veths(k)
        if v != len(pods.by_node[k]):
            problems.append(f"n{k} has {v} host veths for {len(pods.by_node[k])} pods")
        routes = count_routes(k)
        if routes != 2 * nodes:
            problems.append(f"n{k} has {routes} weft routes in its main table, {2 * nodes} expected")
        # What does not depend on the pods must not change from one
        # checkpoint to the next: nftables rules, routes in every table.
        for what, have in (("nftables rules", count_rules(k)), ("weft routes in all tables", count_routes(k, "all"))):
            baseline.setdefault((k, what), have)
            if have != baseline[(k, what)]:
                problems.append(f"n{k} has {have} {what}, {baseline[(k, what)]} at the first checkpoint")
    namespaces = [n.split()[0] for n in run("ip", "netns", "list").stdout.splitlines() if n.startswith(f"{P}-")]
    want_ns = 2 + nodes + sum(len(p) for p in pods.by_node.values())
    if len(namespaces) != want_ns:
        problems.append(f"{len(namespaces)} lab namespaces, {want_ns} expected")
    for p in problems:
        fail(f"checkpoint: {p}")
    return not problems


# ----------------------------------------------------------------- faults

def kill_restart(k):
    with events_lock:
        faults.append([now(), None, {k}])
        entry = faults[-1]
    log(f"fault: weftd on n{k} killed (SIGKILL), restarted in 2 s")
    lab("kill", str(k))
    time.sleep(2)
    lab("start", str(k))
    time.sleep(8)  # a restarted node needs a few seconds to be routed to again
    entry[1] = now()


def partition(k, nodes):
    with events_lock:
        faults.append([now(), None, set(range(1, nodes + 1))])  # everyone loses k
        entry = faults[-1]
    others = [str(o) for o in range(1, nodes + 1) if o != k]
    log(f"fault: n{k} partitioned from {','.join(others)} for 10 s")
    lab("partition", str(k), "--", *others)
    time.sleep(10)
    lab("heal")
    time.sleep(5)
    entry[1] = now()


# -------------------------------------------------------------- analysis

def series(rows, k, field):
    return [(float(r["t_s"]), float(r[field])) for r in rows if r["node"] == k and r[field] != ""]


def levels_off(points, duration, slack_ratio, slack_abs):
    """The last quarter's maximum is within slack of the second quarter's
    (quarters of DURATION, the time the run really took)."""
    q2 = [v for t, v in points if duration * 0.25 <= t < duration * 0.5]
    q4 = [v for t, v in points if t >= duration * 0.75]
    if not q2 or not q4:
        return True, "too few samples"
    a, b = max(q2), max(q4)
    return b <= a * slack_ratio + slack_abs, f"{a:.0f} → {b:.0f}"


def write_plot_data(rows, nodes, out):
    """One whitespace-separated file per node for gnuplot (soak.sh draws it)."""
    for k in range(1, nodes + 1):
        with open(os.path.join(out, f"n{k}.dat"), "w") as f:
            f.write("# " + " ".join(SAMPLE_FIELDS) + "\n")
            for r in rows:
                if r["node"] == k:
                    f.write(" ".join(str(r[x]) if r[x] != "" else "NaN" for x in SAMPLE_FIELDS) + "\n")


def main():
    global log
    duration, out = float(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    log = Log(os.path.join(out, "events.log"))
    nodes = int(open(f"{STATE}/shape").read().split()[0])
    pods = Pods(nodes)
    log(f"soak: {nodes} nodes, {sum(len(p) for p in pods.by_node.values())} anchor pods, {duration:.0f} s")
    traffic = Traffic(pods, nodes, out)
    sampler = Sampler(nodes, pods, traffic, os.path.join(out, "samples.csv"))
    sampler.start()
    churn = Churn(pods, nodes)
    churn.start()
    pids = {k: weftd_pid(k) for k in LONG_LIVED}
    baseline = {}
    schedule = ["kill", "partition", "quiet"]
    kill_targets = list(range(3, nodes + 1))
    cycle = 0
    checkpoints = passed = 0
    while now() + CYCLE <= duration + 1:
        start = now()
        what = schedule[cycle % len(schedule)]
        if what == "kill" and kill_targets:
            kill_restart(kill_targets[(cycle // 3) % len(kill_targets)])
        elif what == "partition":
            partition((cycle // 3) % nodes + 1, nodes)
        time.sleep(max(0, start + CYCLE - 15 - now()))
        churn.pause.set()
        churn.paused.wait(60)
        traffic.check_running()
        ok = checkpoint(nodes, pods, baseline)
        checkpoints += 1
        passed += bool(ok)
        tcp, sent, got = traffic.totals()
        log(f"checkpoint {checkpoints}: {'ok' if ok else 'FAILED'}; pods {sum(len(p) for p in pods.by_node.values())}, "
            f"churn +{churn.added}/-{churn.deleted}, TCP verified {tcp / 1e6:.0f} MB, UDP {got}/{sent}")
        churn.pause.clear()
        time.sleep(max(0, start + CYCLE - now()))
        cycle += 1
    churn.stop.set()
    churn.join(120)
    flow_lines = traffic.finish()
    sampler.stop.set()
    sampler.join(60)
    for k, pid in pids.items():
        if weftd_pid(k) != pid:
            fail(f"n{k}'s weftd was meant to live the whole run but its pid changed")
    rows = sampler.rows
    write_plot_data(rows, nodes, out)
    growth = []
    ran = max((float(r["t_s"]) for r in rows), default=0.0)
    for k in range(1, nodes + 1):
        checks = [("gossip_records", 1.10, 20), ("gossip_endpoints", 1.10, 20)]
        if k in LONG_LIVED:
            checks = [("rss_kib", 1.05, 1024), ("fds", 1.0, 4)] + checks
        for field, ratio, extra in checks:
            ok, detail = levels_off(series(rows, k, field), ran, ratio, extra)
            growth.append(f"| n{k} | {field} | {detail} | {'levels off' if ok else 'GROWS'} |")
            if not ok:
                fail(f"n{k} {field} does not level off: {detail}")
    fr = sorted(churn.first_reply)
    med = fr[len(fr) // 2] if fr else float("nan")
    p99 = fr[min(len(fr) - 1, int(len(fr) * 0.99))] if fr else float("nan")
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(f"Soak of {duration / 60:.0f} min, {nodes} nodes: **{'PASS' if not failures else 'FAIL'}**\n\n")
        f.write(f"- Checkpoints: {passed} of {checkpoints} matched the pods that existed (IPAM, host veths, "
                f"routes, every node's gossip endpoints, nftables rules, namespaces).\n")
        f.write(f"- Faults: {sum(1 for _ in faults)} ({sum(1 for x in faults if len(x[2]) == 1)} weftd kills, "
                f"{sum(1 for x in faults if len(x[2]) > 1)} partitions of 10 s).\n")
        f.write(f"- Pod churn: {churn.added} pods added, {churn.deleted} deleted through the CNI plugin; "
                f"{churn.reach_checked} new pods checked to reach a pod on another node, "
                f"{churn.reach_excused} excused (a fault on either node); first reply after CNI ADD: "
                f"median {med:.2f} s, 99th percentile {p99:.2f} s.\n\n")
        f.write("| flow | sent | received | lost or wrong bytes |\n|---|---|---|---|\n")
        f.write("\n".join(flow_lines) + "\n\n")
        f.write("| node | series | max 2nd quarter → max last quarter | verdict |\n|---|---|---|---|\n")
        f.write("\n".join(growth) + "\n\n")
        if failures:
            f.write("Failures:\n\n" + "\n".join(f"- {x}" for x in failures[:50]) + "\n")
    log(f"soak done: {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
