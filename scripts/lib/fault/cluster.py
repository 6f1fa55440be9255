"""The mesh in network namespaces: featbit-sim, N featbit-agent nodes and raw WebSocket SDK probes, built on the
loopback harness of Tests/e2e/mesh.py (same Node/Mesh/Probe API, same figures), with each process in its own
namespace of a `fault.env.Run` and addressed by 10.77.0.x instead of 127.0.0.1 ports.

Also here: the change stream (a flag toggled at featbit-sim every few tens of ms, for propagation figures), the
status observer (every node's role every 100 ms) and the hard-invariant checks of §4.4 (≤ 1 leader per term, no
data lost against featbit-sim, no item regression)."""
import http.client as httpclient
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from fault.env import (AGENT_BIN, CLUSTER_PORT, FAKETIME_LIB, HTTP_PORT, ROOT, SIM_BIN, SIM_IP, SIM_PORT,
                       children, exe_of, node_ip)

sys.path.insert(0, str(ROOT / "Tests" / "e2e"))
import mesh as e2e  # noqa: E402  (Tests/e2e/mesh.py: Node, Mesh, Probe, wait_for, http, iso_ms, …)
from conftest import API_KEY, SERVER_SECRET, fake_data_set  # noqa: E402
from pki import CA  # noqa: E402

# FAULT_MESH_TLS=1 (`--mesh-tls`): every mesh link is mutual TLS (ClusterTls*, a throwaway CA per mesh), as the
# README asks for on networks the operator does not own; the scenarios and their criteria are unchanged.
MESH_TLS = os.environ.get("FAULT_MESH_TLS") == "1"

mono = e2e.mono
wait_for = e2e.wait_for
http = e2e.http
iso_ms = e2e.iso_ms
Change = e2e.Change
_clean_env = e2e._clean_env


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return round(s[lo] + (s[hi] - s[lo]) * (k - lo), 1)


def stats(values):
    return {"p50": pct(values, 50), "p99": pct(values, 99), "max": round(max(values), 1) if values else None,
            "n": len(values)}


def build_token(secret, offset_s=0.0):
    """fbclient.utils.build_token with the SDK's clock `offset_s` seconds off (an SDK on a skewed host)."""
    from fbclient.utils import ALPHABETS

    def enc(num, length):
        s = "000000000000" + str(num)
        return "".join(ALPHABETS[ch] for ch in s[len(s) - length:])
    text = secret.rstrip("=")
    now = int((time.time() + offset_s) * 1000)
    ts = enc(now, len(str(now)))
    start = max(int(random.random() * len(text)), 2)
    return f"{enc(start, 3)}{enc(len(ts), 2)}{text[:start]}{ts}{text[start:]}"


# -- featbit-sim --------------------------------------------------------------------------------------------------------

class NsSimulator:
    """featbit-sim in `<run>-sim` on 10.77.0.100:8100; same interface as Tests/e2e conftest.Simulator."""

    def __init__(self, run, workdir, data_set):
        self.run = run
        data_file = workdir / "sim-data.json"
        data_file.write_text(json.dumps(data_set))
        self.err_path = workdir / "sim.err"
        self.proc = run.popen(["ip", "netns", "exec", run.ns("sim"), SIM_BIN, "--host", SIM_IP, "--port", SIM_PORT,
                               "--data-file", data_file, "--api-key", API_KEY],
                              stdout=subprocess.PIPE, stderr=open(self.err_path, "a"), text=True)
        self.url = f"http://{SIM_IP}:{SIM_PORT}"
        self.ws_url = f"ws://{SIM_IP}:{SIM_PORT}"
        deadline = mono() + 30
        ok = False
        while mono() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "listening on port" in line:
                ok = True
                break
        if not ok:
            self.stop()
            raise AssertionError(f"featbit-sim did not start: {self.err_path.read_text()[-500:]}")
        self._local = threading.local()

    def control(self, method, path, body=None, timeout=10):
        data = None if body is None else json.dumps(body).encode()
        code, text = http(method, self.url + "/control/" + path, data, {"Content-Type": "application/json"},
                          timeout=timeout)
        if code is None or code >= 400:
            raise AssertionError(f"featbit-sim {method} /control/{path}: {code} {text[:300]}")
        return json.loads(text) if text else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# -- one agent node -----------------------------------------------------------------------------------------------------

class NsNode(e2e.Node):
    """A featbit-agent in `<run>-n<i>` on 10.77.0.<i>, HTTP 6100 and cluster 7100. Optional wrappers: a clock
    offset (libfaketime, monotonic left real), a time namespace (monotonic offset), a private mount namespace
    (held by `holder_pid`, for a tmpfs db)."""

    def __init__(self, mesh, index, secret, role="voter"):
        self.mesh = mesh
        self.index = index
        self.id = f"n{index}"
        self.ip = node_ip(index)
        self.port = HTTP_PORT
        self.cluster_port = CLUSTER_PORT
        self.db = mesh.workdir / f"{self.id}.db"
        self.log_path = mesh.workdir / f"{self.id}.err"
        self.out_path = mesh.workdir / f"{self.id}.out"
        self.secret = secret
        self.role = role
        self.proc = None
        self.pid = None  # the agent's own pid (differs from proc.pid behind a forking wrapper)
        self.stopped = False
        self.starts = 0
        self.url = f"http://{self.ip}:{HTTP_PORT}"
        self.extra_args = []
        self.tls_files = None  # (cert, key) of this node's mesh certificate, with MESH_TLS
        self.peer_ids = None  # None: every other node of the mesh
        self.clock_offset_s = 0  # wall clock offset (faketime)
        self.mono_offset_s = 0  # CLOCK_MONOTONIC offset (time namespace)
        self.holder_pid = None  # mount namespace holder (tmpfs db)
        self.gate = None  # a FIFO the start waits on until the harness opens and closes it (simultaneous starts)
        self.started_at = None

    def __repr__(self):
        return f"NsNode({self.id}@{self.ip})"

    def peers(self):
        ids = self.peer_ids if self.peer_ids is not None else [n.id for n in self.mesh.nodes if n is not self]
        return [self.mesh.node(i) for i in ids if i != self.id]

    def args(self):
        m = self.mesh
        peers = ",".join(f"{p.id}@{p.ip}:{CLUSTER_PORT}" for p in self.peers())
        args = [AGENT_BIN, "--mode", m.mode, "--api-key", API_KEY, "--port", str(HTTP_PORT), "--bind", self.ip,
                "--db", str(self.db), "--node-id", self.id, "--agent-id", f"mesh-{self.id}",
                "--cluster-address", f"{self.ip}:{CLUSTER_PORT}", "--peers", peers, "--cluster-secret", self.secret,
                "--cluster-heartbeat-ms", str(m.heartbeat_ms), "--cluster-election-timeout-ms", str(m.election_ms)]
        if m.mode == "auto":
            args += ["--streaming-uri", m.sim.ws_url]
        if m.ca is not None:
            if self.tls_files is None:
                self.tls_files = m.ca.issue(self.id, sans=f"IP:{self.ip}")
            cert, key = self.tls_files
            args += ["--cluster-tls-cert-file", str(cert), "--cluster-tls-key-file", str(key),
                     "--cluster-tls-ca-file", str(m.ca.cert)]
        if self.role != "voter":
            args += ["--cluster-role", self.role]
        return args + self.extra_args

    def command(self):
        ns = self.mesh.run.ns(self.id)
        if self.holder_pid:
            prefix = ["nsenter", "-t", str(self.holder_pid), "-m", f"--net=/run/netns/{ns}", "--"]
        else:
            prefix = ["ip", "netns", "exec", ns]
        if self.mono_offset_s:
            prefix += ["unshare", "--time", "--monotonic", str(self.mono_offset_s), "--boottime",
                       str(self.mono_offset_s), "--kill-child", "--"]
        if self.gate:
            # The shell waits for the gate's EOF, then becomes the agent (same pid).
            prefix += ["sh", "-c", 'cat "$0" > /dev/null; exec "$@"', str(self.gate)]
        return prefix + self.args()

    def env(self):
        env = _clean_env()
        if self.clock_offset_s:
            env.update({"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": f"{self.clock_offset_s:+d}s",
                        "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1"})
        return env

    def start(self):
        if self.running:
            raise AssertionError(f"{self.id} is already running")
        self.starts += 1
        with open(self.log_path, "a") as err, open(self.out_path, "a") as out:
            err.write(json.dumps({"event": "harness-start", "nodeId": self.id, "mono": mono() * 1000,
                                  "start": self.starts}) + "\n")
            err.flush()
            self.proc = self.mesh.run.popen(self.command(), stdout=out, stderr=err, cwd=self.mesh.workdir,
                                            env=self.env())
        # Only the time-namespace wrapper (unshare --time) forks; ip netns exec and nsenter exec the agent.
        self.pid = self._agent_pid() if self.mono_offset_s else self.proc.pid
        if self.pid != self.proc.pid:
            self.mesh.run.register(self.pid)
        self.stopped = False
        self.started_at = mono()
        return self

    def _agent_pid(self):
        """The featbit-agent process itself: proc.pid unless a wrapper forked it (unshare --time)."""
        deadline = mono() + 5
        target = os.path.realpath(AGENT_BIN)
        while mono() < deadline:
            todo, seen = [self.proc.pid], set()
            while todo:
                pid = todo.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                if exe_of(pid) == target:
                    return pid
                todo += children(pid)
            if self.proc.poll() is not None:
                return self.proc.pid
            time.sleep(0.01)
        return self.proc.pid

    def signal(self, sig):
        if self.running and self.pid:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def metrics(self):
        code, text = http("GET", self.url + "/metrics", timeout=1.0)
        return text if code == 200 else ""

    def backup(self):
        code, text = http("GET", self.url + "/api/public/proxy/backup", headers={"Authorization": API_KEY},
                          timeout=5.0)
        if code != 200:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return None

    def errors(self):
        """`level: error` log lines (json)."""
        return [e for e in super().log_events() if e.get("level") in ("error", "critical")]


# -- SDK probe ---------------------------------------------------------------------------------------------------------

class NsProbe(e2e.Probe):
    """e2e.Probe (raw WebSocket server SDK) on a node's 10.77.0.x address, from the probes' namespace. It also
    records every connect/disconnect time, when its first data arrived, and any item version that went back
    (a regression)."""

    def __init__(self, node, secret=SERVER_SECRET):
        self.regressions = []
        self.first_data_at = None
        self.events = []  # (mono, "connect"|"disconnect")
        self.disconnect_times = []
        self.full_syncs = 0
        self.message_times = []
        super().__init__(node, secret)

    def url(self):
        token = build_token(self.secret, getattr(self.node, "clock_offset_s", 0))
        return f"ws://{self.node.ip}:{self.node.port}/streaming?type=server&token={token}"

    def on_connect(self, now):
        self.events.append((now, "connect"))

    def on_disconnect(self, now):
        self.disconnect_times.append(now)
        self.events.append((now, "disconnect"))

    def on_data_sync(self, now, data):
        self.message_times.append(now)
        if self.first_data_at is None:
            self.first_data_at = now
        if data.get("eventType") == "full":
            self.full_syncs += 1

    def on_flag(self, now, flag_id, version, previous):
        if version < previous:
            self.regressions.append({"flag": flag_id, "had": previous, "got": version, "mono": now})


# -- the change stream --------------------------------------------------------------------------------------------------

class ChangeStream:
    """Toggles the data set's flags at featbit-sim (`PUT /control/flags?touch=true`) every `interval` s from a
    thread; `changes` holds (Change) in order. `pause()`/`resume()`; `stop()` joins."""

    def __init__(self, mesh, interval=0.05, keys=None):
        self.mesh = mesh
        self.interval = interval
        data = mesh.sim.control("GET", "data")
        flags = [f for item in data["items"] for f in item["featureFlags"]]
        self.flags = [f for f in flags if keys is None or f["key"] in keys]
        self.changes = []
        self.errors = 0
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="change-stream", daemon=True)
        self._thread.start()

    def _loop(self):
        i = 0
        conn = None
        while not self._stop.is_set():
            if self._paused.is_set():
                self._stop.wait(0.05)
                continue
            flag = self.flags[i % len(self.flags)]
            i += 1
            flag["isEnabled"] = not flag["isEnabled"]
            t0 = mono()
            try:
                if conn is None:
                    conn = httpclient.HTTPConnection(SIM_IP, SIM_PORT, timeout=5)
                conn.request("PUT", "/control/flags?touch=true", json.dumps(flag),
                             {"Content-Type": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200:
                    answer = json.loads(body)
                    self.changes.append(Change(flag["id"], flag["key"], answer["items"][0]["updatedAt"], t0,
                                               flag["isEnabled"]))
                else:
                    self.errors += 1
            except (OSError, httpclient.HTTPException, ValueError):
                self.errors += 1
                conn = None
            self._stop.wait(max(0.0, t0 + self.interval - mono()))

    def pause(self):
        self._paused.set()

    def resume(self):
        self._paused.clear()

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def since(self, t0, t1=None):
        return [c for c in self.changes if c.t0 >= t0 and (t1 is None or c.t0 <= t1)]


# -- status observer ------------------------------------------------------------------------------------------------

class Observer:
    """Polls every running node's status every `interval` s: samples (mono, {node: cluster dict or None})."""

    def __init__(self, mesh, interval=0.1):
        self.mesh = mesh
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="observer", daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            t = mono()
            view = {}
            for n in list(self.mesh.nodes):
                if n.live:
                    st = n.status(timeout=0.5)
                    view[n.id] = st
            self.samples.append((t, view))
            self._stop.wait(max(0.0, t + self.interval - mono()))

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def max_leaders_at_once(self, since=0.0):
        best = 0
        for t, view in self.samples:
            if t < since:
                continue
            leaders = sum(1 for st in view.values() if st and (st.get("cluster") or {}).get("role") == "leader")
            best = max(best, leaders)
        return best


# -- the mesh -------------------------------------------------------------------------------------------------------

class NsMesh(e2e.Mesh):
    """e2e.Mesh with every process in the namespaces of `run`. Nodes are n1…nN (`index` = last octet)."""
    probe_class = NsProbe
    probe_timeout = 15

    def __init__(self, run, workdir, n=3, profile="lan", mode="auto", data_set=None, heartbeat_ms=None,
                 election_ms=None):
        self.run = run
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.heartbeat_ms, self.election_ms = e2e.PROFILES[profile]
        if heartbeat_ms:
            self.heartbeat_ms = heartbeat_ms
        if election_ms:
            self.election_ms = election_ms
        self.E = self.election_ms / 1000
        self.mode = mode
        self.data_set = data_set or fake_data_set()
        self.sim = None
        # Valid from a day back: the clock-skew scenario puts a node an hour behind.
        self.ca = CA(self.workdir / "pki", name="mesh", backdate_days=1) if MESH_TLS else None
        self.nodes = [NsNode(self, i + 1, "mesh-fault-secret") for i in range(n)]
        self.links = {}
        self.probes = []
        self.use_proxies = False
        self._closed = threading.Event()
        self.relay_samples = []
        self._sampler = None
        self._sample_relay = mode == "auto"
        self.observer = None
        self.stream = None
        self.wall_offset = time.time() - mono()

    def add_node(self, index, secret="mesh-fault-secret"):
        node = NsNode(self, index, secret)
        self.nodes.append(node)
        return node

    def start(self, wait=True, nodes=None):
        if self.mode == "auto" and self.sim is None:
            self.sim = NsSimulator(self.run, self.workdir, self.data_set)
        nodes = self.nodes if nodes is None else nodes
        for node in nodes:
            node.start()
        if wait:
            for node in nodes:
                node.wait_listening(30)
        if self._sample_relay and self._sampler is None:
            self._sampler = threading.Thread(target=self._sample_loop, name="relay-sampler", daemon=True)
            self._sampler.start()
        if self.observer is None:
            self.observer = Observer(self)
        return self

    def close(self):
        self._closed.set()
        if self.stream:
            self.stream.stop()
        if self.observer:
            self.observer.stop()
        for probe in self.probes:
            try:
                probe.close()
            except Exception:
                pass
        for node in self.nodes:
            if node.running:
                if node.stopped:
                    node.signal(signal.SIGCONT)
                node.signal(signal.SIGKILL)
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        if self._sampler:
            self._sampler.join(5)
        if self.sim:
            self.sim.stop()

    def peer_port(self, a, b):
        return CLUSTER_PORT

    def role_events(self):
        events = []
        for n in self.nodes:
            for e in n.log_events("mesh-role"):
                e.setdefault("nodeId", n.id)
                e["_node"] = n.id
                e["term"] = e2e._int(e.get("term"))
                e["mono"] = float(e.get("mono") or 0) - n.mono_offset_s * 1000
                e["leaderId"] = e.get("leaderId") or None
                events.append(e)
        return sorted(events, key=lambda e: e.get("mono", 0))

    def events(self, name, node=None):
        out = []
        for n in self.nodes if node is None else [node]:
            for e in n.log_events(name):
                e["_node"] = n.id
                if "mono" in e:
                    try:
                        e["mono"] = float(e["mono"]) - n.mono_offset_s * 1000
                    except ValueError:
                        pass
                out.append(e)
        return sorted(out, key=lambda e: e.get("mono", 0))

    def max_term(self):
        terms = [e["term"] for e in self.role_events() if isinstance(e.get("term"), int)]
        return max(terms) if terms else 0

    def relay_list(self):
        return [c for c in self.sim.control("GET", "connections") if c.get("type") == "relay-proxy"]

    def relay_opened(self):
        return self.sim.control("GET", "state").get("connectionsOpened", {}).get("relay-proxy", 0)

    def wait_new_relay(self, opened_before, t0, timeout):
        """Monotonic time the simulator accepted a relay-proxy connection after `t0` (its `connectedAt`, wall ms
        of this machine, converted), once one with a data-sync exists; None after `timeout`."""
        deadline = mono() + timeout
        while mono() < deadline:
            if self.relay_opened() > opened_before:
                for c in self.relay_list():
                    t = c["connectedAt"] / 1000 - self.wall_offset
                    if t >= t0 - 0.01 and c.get("lastDataSync") is not None:
                        return t
            time.sleep(0.02)
        return None

    def wait_quorum_leader_log(self, t0, exclude=(), timeout=10):
        """(leader id, term, mono s) from the role logs: the first instant after t0 at which a node outside
        `exclude` is leader of term T and a quorum of the configured nodes (counting it) logged leaderId = it in
        term T. Polls the logs until `timeout`."""
        quorum = len(self.nodes) // 2 + 1
        excluded = {e2e._id(x) for x in exclude}
        deadline = mono() + timeout
        while True:
            views = {}
            for e in self.role_events():
                if e["mono"] < t0 * 1000 - 1:
                    continue  # only lines logged after t0 count (a restarted node's old lines are stale)
                views[e["nodeId"]] = e  # latest line per node, in mono order
                leaders = [v for v in views.values() if v["role"] == "leader" and v["nodeId"] not in excluded]
                for lead in leaders:
                    votes = sum(1 for v in views.values()
                                if v["term"] == lead["term"] and v.get("leaderId") == lead["nodeId"])
                    if lead.get("leaderId") != lead["nodeId"]:
                        votes += 1
                    if votes >= quorum:
                        return lead["nodeId"], lead["term"], e["mono"] / 1000
            if mono() > deadline:
                return None
            time.sleep(0.05)

    def data_version(self, node):
        return (node.status() or {}).get("dataVersion")


# -- invariants ----------------------------------------------------------------------------------------------------

def item_map(data_set):
    """{(envId, kind, id): updatedAt ms} of a bootstrap/backup-format document."""
    out = {}
    for item in (data_set or {}).get("items", []):
        env = item.get("envId")
        for kind in ("featureFlags", "segments"):
            for x in item.get(kind) or []:
                out[(env, kind, x["id"])] = iso_ms(x["updatedAt"])
    return out


def data_diff(expected, got):
    missing = [k for k in expected if k not in got]
    older = [k for k in expected if k in got and got[k] < expected[k]]
    extra = [k for k in got if k not in expected]
    return missing, older, extra


def check_invariants(mesh, nodes=None, converge_timeout=15, probes=None):
    """The hard invariants. Returns (failures list, details dict)."""
    failures = []
    details = {}
    leaders = mesh.leaders_by_term()
    bad = {t: sorted(s) for t, s in leaders.items() if len(s) > 1}
    if bad:
        failures.append(f"two leaders in one term: {bad}")
    nodes = nodes if nodes is not None else [n for n in mesh.nodes if n.live]
    if mesh.sim is not None and nodes:
        expected = item_map(mesh.sim.control("GET", "data"))
        diffs = {}
        deadline = mono() + converge_timeout
        while True:
            diffs = {}
            for n in nodes:
                got = item_map(n.backup())
                missing, older, extra = data_diff(expected, got)
                if missing or older:
                    diffs[n.id] = {"missing": len(missing), "older": len(older), "extra": len(extra)}
            if not diffs or mono() > deadline:
                break
            time.sleep(0.2)
            expected = item_map(mesh.sim.control("GET", "data"))
        if diffs:
            failures.append(f"data lost against featbit-sim: {diffs}")
        details["data_equal"] = not diffs
    regressions = []
    for p in (probes if probes is not None else mesh.probes):
        regressions += [dict(r, node=p.node.id) for r in p.regressions]
    for n in mesh.nodes:
        last = None
        for e in mesh.events("mesh-apply", n):
            try:
                dv = int(e.get("dataVersion"))
            except (TypeError, ValueError):
                continue
            if last is not None and dv < last:
                regressions.append({"node": n.id, "apply_dataVersion_from": last, "to": dv})
            last = dv if last is None else max(last, dv)
    if regressions:
        failures.append(f"item regression: {regressions[:5]}")
    details["one_leader_per_term"] = not bad
    details["regressions"] = len(regressions)
    return failures, details


def propagation(changes, probes, t_from=None, t_to=None, exclude=None, limit_s=None):
    """Milliseconds from each change (t0 in [t_from, t_to]) to its arrival at each probe; `exclude(change,
    node_id)` skips pairs; a change never seen counts as missing."""
    out, missing = [], 0
    for c in changes:
        if t_from is not None and c.t0 < t_from:
            continue
        if t_to is not None and c.t0 > t_to:
            continue
        for node_id, p in probes.items():
            if exclude and exclude(c, node_id):
                continue
            t = p.seen(c.flag_id, c.version)
            if t is None:
                missing += 1
            else:
                out.append((t - c.t0) * 1000)
    return out, missing
