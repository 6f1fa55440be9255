"""The cluster benchmark behind scripts/bench-cluster (prints figures; not a test).

Parts (default: all, in this order): idle, failover, wan, fanout, throughput.
  idle        3 nodes, LAN profile, no SDKs: CPU % and peer bytes per second of each node over 30 s (bytes counted by
              the link proxies every peer link goes through; /proc/PID/io write bytes alongside)
  failover    3 nodes, LAN profile: kill -9 of the leader, 10 runs: kill -> a new leader reported by a quorum, and
              kill -> the simulator sees the new leader's relay-proxy connection (p50/max)
  wan         the same with the default (WAN) profile, 3 runs
  fanout      3 nodes x 1,000 raw WebSocket server SDKs: a flag change at the simulator -> the last SDK on every node,
              p50/p99 over 50 changes (one asyncio SDK client process per node, on the same 2 cores)
  throughput  a burst of flag changes at the simulator: changes per second applied on every follower
Environment: FEATBIT_AGENT_BIN / FEATBIT_SIM_BIN (set by scripts/bench-cluster), BENCH_FANOUT_N (1000),
BENCH_FANOUT_CHANGES (50), BENCH_FAILOVER_RUNS (10), BENCH_WAN_RUNS (3), BENCH_BURST (300), BENCH_IDLE_S (30), BENCH_DIR (where the
dbs and logs go; default: the system temp dir).
"""
import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))
sys.path.insert(0, str(ROOT / "scripts" / "lib"))

SECRET = "E0ZC__zC8EeQoxEDF-iR9g-JtrIvNK-k-bARYicOTNQA"


def pct(values, p):
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def out(line):
    print(line, flush=True)


class Work:
    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="bench-cluster-", dir=os.environ.get("BENCH_DIR")))
        self.meshes = []
        self.count = 0

    def mesh(self, n=3, **kw):
        from mesh import Mesh
        self.count += 1
        m = Mesh(self.dir / f"mesh{self.count}", n, **kw)
        self.meshes.append(m)
        m.start()
        return m

    def close_mesh(self, m):
        m.close()
        self.meshes.remove(m)

    def close(self):
        for m in list(self.meshes):
            try:
                m.close()
            except Exception as e:
                out(f"cleanup: {e}")
        shutil.rmtree(self.dir, ignore_errors=True)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def io_write_bytes(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peer_bytes_sent(m, node):
    """Bytes `node` sent to its peers: on its own outbound connections (A->B proxies, dialer to target) and on the
    connections peers dialled to it (B->A proxies, target back to dialer: handshakes only)."""
    total = 0
    for (a, b), link in m.links.items():
        if a == node.id:
            total += link.bytes_forwarded
        elif b == node.id:
            total += link.bytes_returned
    return total


# -- parts ----------------------------------------------------------------------------------------------------------

def part_idle(work):
    seconds = float(os.environ.get("BENCH_IDLE_S", "30"))
    m = work.mesh(3, profile="lan", sample_relay=False)
    m.wait_for_single_leader(20)
    m.wait_converged(15)
    leader = m.single_leader()
    time.sleep(3)
    before = {n.id: (cpu_seconds(n.proc.pid), peer_bytes_sent(m, n), io_write_bytes(n.proc.pid)) for n in m.nodes}
    t0 = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    out(f"idle mesh, 3 nodes, LAN profile (heartbeat {m.heartbeat_ms} ms), {seconds:.0f} s, no SDKs:")
    for n in m.nodes:
        cpu0, peer0, io0 = before[n.id]
        cpu = (cpu_seconds(n.proc.pid) - cpu0) / elapsed * 100
        peer = (peer_bytes_sent(m, n) - peer0) / elapsed
        io1 = io_write_bytes(n.proc.pid)
        io = (io1 - io0) / elapsed if io0 is not None and io1 is not None else None
        role = "leader" if n is leader else "follower"
        out(f"  {n.id} ({role:<8}): CPU {cpu:5.2f} %   peer bytes sent {peer:8.0f} B/s   "
            f"all writes (/proc io wchar: sockets+db+logs) {io if io is None else round(io)} B/s")
    work.close_mesh(m)


def failover_runs(work, profile, runs):
    m = work.mesh(3, profile=profile, proxies=False)
    quorum_ms, upstream_ms, log_ms = [], [], []
    try:
        m.wait_for_single_leader(40)
        for run in range(runs):
            lead = m.wait_for_single_leader(40)
            m.wait_relay(1, timeout=30, hold=0.5)
            for n in m.nodes:
                m.wait_caught_up(n, 30)
            opened = m.sim.control("GET", "state").get("connectionsOpened", {}).get("relay-proxy", 0)
            t_kill = lead.kill9()
            new_lead, t_q = m.wait_quorum_leader(timeout=60, exclude=[lead])
            deadline = time.monotonic() + 60
            t_up = None
            while time.monotonic() < deadline:
                if m.sim.control("GET", "state").get("connectionsOpened", {}).get("relay-proxy", 0) > opened:
                    t_up = time.monotonic()
                    break
                time.sleep(0.01)
            e = m.first_leader_event_after(t_kill, exclude=[lead])
            quorum_ms.append((t_q - t_kill) * 1000)
            if t_up:
                upstream_ms.append((t_up - t_kill) * 1000)
            if e:
                log_ms.append(e["mono"] - t_kill * 1000)
            out(f"  run {run + 1}: {lead.id} killed -> {new_lead.id} leader by quorum {quorum_ms[-1]:.0f} ms, "
                f"leader log line {log_ms[-1] if e else float('nan'):.0f} ms, "
                f"new relay-proxy connection {upstream_ms[-1] if t_up else float('nan'):.0f} ms")
            lead.restart()
            m.wait_for_single_leader(40)
            m.wait_caught_up(lead, 40)
        m.assert_one_leader_per_term()
    finally:
        work.close_mesh(m)
    return quorum_ms, upstream_ms, log_ms


def report_failover(name, runs, quorum_ms, upstream_ms, log_ms):
    def fmt(values):
        return f"p50 {pct(values, 50):.0f} ms, max {max(values):.0f} ms" if values else "n/a"
    out(f"{name}: kill -9 of the leader, {runs} runs")
    out(f"  kill -> new leader reported by a quorum:       {fmt(quorum_ms)}")
    out(f"  kill -> new leader's own mesh-role log line:   {fmt(log_ms)}")
    out(f"  kill -> simulator sees the new relay-proxy:    {fmt(upstream_ms)}")


def part_failover(work):
    runs = int(os.environ.get("BENCH_FAILOVER_RUNS", "10"))
    out(f"failover, LAN profile (heartbeat 200 ms, election timeout 1500 ms):")
    report_failover("failover (LAN)", runs, *failover_runs(work, "lan", runs))


def part_wan(work):
    runs = int(os.environ.get("BENCH_WAN_RUNS", "3"))
    out(f"failover, default WAN profile (heartbeat 500 ms, election timeout 5000 ms):")
    report_failover("failover (WAN)", runs, *failover_runs(work, "wan", runs))


def bench_client_bin():
    """The Swift epoll SDK client (bench-client) next to the agent, if built: it reads 1,000s of sockets with far less
    CPU than Python, so the figure is the mesh's, not the client's."""
    if os.environ.get("BENCH_FANOUT_CLIENT") == "python":
        return None
    path = os.path.join(os.path.dirname(os.environ.get("FEATBIT_AGENT_BIN", "")), "bench-client")
    return path if os.access(path, os.X_OK) else None


def part_fanout(work):
    n = int(os.environ.get("BENCH_FANOUT_N", "1000"))
    changes = int(os.environ.get("BENCH_FANOUT_CHANGES", "50"))
    m = work.mesh(3, profile="lan", proxies=False, sample_relay=False)
    m.wait_for_single_leader(20)
    m.wait_converged(15)
    leader = m.single_leader()
    client = bench_client_bin()
    if client:
        data = m.sim.control("GET", "data")
        flag = next(f for item in data["items"] for f in item["featureFlags"] if f["key"] == "returns-true")
        body = os.path.join(str(m.workdir), "change.json")
        with open(body, "w") as f:
            json.dump(flag, f)
        ports = [str(node.port) for node in m.nodes]
        started = time.monotonic()
        result = subprocess.run([client, "mesh-fanout", "127.0.0.1", SECRET, str(n), str(changes), "PUT",
                                 f"http://127.0.0.1:{m.sim.port}/control/flags?touch=true", "none", body] + ports,
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"bench-client mesh-fanout: {result.stderr.strip()}")
        r = json.loads(result.stdout.strip().splitlines()[-1])
        out(f"change at the simulator -> SDKs, 3 nodes x {n} raw WebSocket server SDKs, {changes} changes "
            f"(leader {leader.id}; bench-client, one epoll thread per node, on the same 2 cores):")
        last = r["last_ms"]
        out(f"  last SDK on every node (max over {3 * n}):  p50 {last['p50']:.1f} ms, p99 {last['p99']:.1f} ms,"
            f" max {last['max']:.1f} ms")
        for node, stats in zip(m.nodes, r["nodes"]):
            role = "leader" if node is leader else "follower"
            out(f"  {node.id} ({role:<8}) last SDK: p50 {stats['last']['p50']:.1f} ms, p99 {stats['last']['p99']:.1f} ms; "
                f"first SDK p50 {stats['first']['p50']:.1f} ms")
        out(f"  ({time.monotonic() - started:.0f} s with connecting; agent RSS: " + ", ".join(
            f"{nd.id} {rss_mib(nd.proc.pid):.0f} MiB" for nd in m.nodes) + ")")
        work.close_mesh(m)
        return
    # One SDK client process per node (asyncio, raw sockets), so that one node's pushes do not queue behind another
    # node's in the client. Arrival times are CLOCK_MONOTONIC, comparable across processes.
    clients = {}
    try:
        t = time.monotonic()
        for node in m.nodes:
            clients[node.id] = subprocess.Popen([sys.executable, __file__, "fanout-node", str(node.port), str(n)],
                                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        for node_id, c in clients.items():
            line = c.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"fanout client on {node_id}: {line or 'exited'}")
        connect_s = time.monotonic() - t
        time.sleep(2)
        last_all, per_node_last, per_node_first, medians = [], {k: [] for k in clients}, {k: [] for k in clients}, []
        for i in range(changes):
            for c in clients.values():
                c.stdin.write("arm\n")
            for c in clients.values():
                assert c.stdout.readline().strip() == "armed"
            change = m.change_flag()
            worst = 0.0
            for node_id, c in clients.items():
                r = json.loads(c.stdout.readline())
                per_node_last[node_id].append((r["last"] - change.t0) * 1000)
                per_node_first[node_id].append((r["first"] - change.t0) * 1000)
                medians.append((r["p50"] - change.t0) * 1000)
                worst = max(worst, per_node_last[node_id][-1])
            last_all.append(worst)
            time.sleep(0.15)
    finally:
        for c in clients.values():
            try:
                c.stdin.write("quit\n")
                c.stdin.flush()
                c.wait(10)
            except Exception:
                c.kill()
    out(f"change at the simulator -> SDKs, 3 nodes x {n} raw WebSocket server SDKs, {changes} changes "
        f"(leader {leader.id}; one asyncio SDK client process per node, on the same 2 cores):")
    out(f"  last SDK on every node (max over {3 * n}):  p50 {pct(last_all, 50):.1f} ms, p99 {pct(last_all, 99):.1f} ms,"
        f" max {max(last_all):.1f} ms")
    for node in m.nodes:
        role = "leader" if node is leader else "follower"
        out(f"  {node.id} ({role:<8}) last SDK: p50 {pct(per_node_last[node.id], 50):.1f} ms, "
            f"p99 {pct(per_node_last[node.id], 99):.1f} ms; first SDK p50 {pct(per_node_first[node.id], 50):.1f} ms")
    out(f"  median SDK of a node: p50 {pct(medians, 50):.1f} ms")
    out(f"  connect {3 * n} SDKs: {connect_s:.1f} s; agent RSS: " + ", ".join(
        f"{nd.id} {rss_mib(nd.proc.pid):.0f} MiB" for nd in m.nodes))
    work.close_mesh(m)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def part_throughput(work):
    burst = int(os.environ.get("BENCH_BURST", "300"))
    m = work.mesh(3, profile="lan", proxies=False, sample_relay=False)
    m.wait_for_single_leader(20)
    m.wait_converged(15)
    leader = m.single_leader()
    followers = [n for n in m.nodes if n is not leader]
    data = m.sim.control("GET", "data")
    flags = [f for item in data["items"] for f in item["featureFlags"]]
    threads_n = 4
    done_puts = []
    marks = {n.id: len(n.log_events("mesh-apply")) for n in m.nodes}

    def putter(k):
        for i in range(k, burst, threads_n):
            f = dict(flags[i % len(flags)])
            f["isEnabled"] = bool(i % 2)
            req = urllib.request.Request(m.sim.url + "/control/flags?touch=true", data=json.dumps(f).encode(),
                                         method="PUT", headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
        done_puts.append(time.monotonic())
    t0 = time.monotonic()
    threads = [threading.Thread(target=putter, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    t_puts = max(done_puts)
    target = m.sim_data_version()
    done = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(done) < len(m.nodes):
        for n in m.nodes:
            if n.id not in done and (n.status() or {}).get("dataVersion") == target:
                done[n.id] = time.monotonic()
        time.sleep(0.01)
    out(f"replication throughput: {burst} flag changes PUT at the simulator by {threads_n} threads "
        f"(the simulator took them at {burst / (t_puts - t0):.0f}/s):")
    for n in m.nodes:
        role = "leader" if n is leader else "follower"
        applies = n.log_events("mesh-apply")[marks[n.id]:]
        monos = [float(e.get("mono", 0)) for e in applies]
        span = (max(monos) - min(monos)) / 1000 if len(monos) > 1 else 0
        rate = f"{(len(monos) - 1) / span:.0f} applied/s between its first and last mesh-apply line" if span else ""
        if n.id in done:
            out(f"  {n.id} ({role:<8}): all {burst} applied {(done[n.id] - t0):.2f} s after the first PUT = "
                f"{burst / (done[n.id] - t0):.0f} changes/s; {len(applies)} mesh-apply lines; {rate}")
        else:
            out(f"  {n.id} ({role:<8}): did not reach the simulator's dataVersion within 120 s")
    if all(f.id in done for f in followers):
        last = max(done[f.id] for f in followers)
        out(f"  every follower: {burst / (last - t0):.0f} changes/s end to end; "
            f"last follower done {(last - t_puts) * 1000:.0f} ms after the last PUT returned")
    work.close_mesh(m)


# -- the fanout client (one process per node) ------------------------------------------------------------------------

def fanout_node(port, n):
    """N raw server SDKs on one node. stdin "arm": wait for the next push on every connection, print "armed", then one
    JSON line {first, last, p50} of CLOCK_MONOTONIC arrival times; "quit": exit."""
    from fanout_client import Connection, connect, read_frame

    async def run():
        conns = [Connection() for _ in range(n)]
        sem = asyncio.Semaphore(200)
        await asyncio.gather(*(connect("127.0.0.1", port, SECRET, c, sem) for c in conns))
        print("ready", flush=True)
        loop = asyncio.get_running_loop()

        async def await_push(c):
            while True:
                opcode, payload = await read_frame(c.reader)
                if opcode == 1 and b'"patch"' in payload:
                    c.push_at = time.monotonic()
                    return
                if opcode == 8:
                    raise RuntimeError("closed by the agent")

        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line != "arm":
                break
            waiters = [asyncio.ensure_future(await_push(c)) for c in conns]
            await asyncio.sleep(0)
            print("armed", flush=True)
            await asyncio.wait_for(asyncio.gather(*waiters), timeout=60)
            times = sorted(c.push_at for c in conns)
            print(json.dumps({"first": times[0], "last": times[-1], "p50": times[len(times) // 2]}), flush=True)
        for c in conns:
            c.writer.close()

    asyncio.run(run())


PARTS = {"idle": part_idle, "failover": part_failover, "wan": part_wan, "fanout": part_fanout,
         "throughput": part_throughput}


def main(argv):
    if argv and argv[0] == "fanout-node":
        fanout_node(int(argv[1]), int(argv[2]))
        return 0
    from conftest import AGENT_BIN
    parts = argv or list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        out(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
        return 2
    out(f"agent: {AGENT_BIN}")
    out(f"load average: {open('/proc/loadavg').read().split()[:3]}")
    work = Work()
    try:
        for p in parts:
            started = time.monotonic()
            try:
                PARTS[p](work)
            except Exception as e:  # one part failing must not hide the others' figures
                out(f"{p}: FAILED: {type(e).__name__}: {e}")
                for m in list(work.meshes):
                    m.dump(15)
                    work.close_mesh(m)
            out(f"  ({p}: {time.monotonic() - started:.0f} s)")
    finally:
        work.close()
    out(f"load average: {open('/proc/loadavg').read().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
