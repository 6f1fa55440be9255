"""Helpers (not tests) for the clustered-mesh end-to-end tests and scripts/bench-cluster.

A `Mesh` is featbit-sim plus N featbit-agent nodes on 127.0.0.1 with free ports, each with its own db, every peer
link routed through a `LinkProxy` (node A's `Peers` entry for B points at the A->B proxy, which forwards to B's real
cluster address, so faults can be injected per direction). `Probe` is a raw WebSocket server SDK on one node that
records the CLOCK_MONOTONIC arrival time of every flag version pushed to it.

Every process, thread and socket started here is stopped by `Mesh.close()` (the tests call it from a fixture
finalizer, so also when a test fails); every wait is bounded in time and raises AssertionError with the state seen.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from datetime import datetime, timezone

import websocket  # websocket-client, installed with fb-python-sdk

from conftest import AGENT_BIN, API_KEY, SERVER_SECRET, Simulator, fake_data_set, free_port, secret_leaks
from linkproxy import LinkProxy

PROFILES = {"lan": (200, 1500), "wan": (500, 5000)}  # (heartbeat ms, election timeout ms)


def mono():
    """CLOCK_MONOTONIC in seconds: comparable with the agents' `mono` (ms) log fields."""
    return time.monotonic()


def iso_ms(value):
    """A FeatBit `updatedAt` (ISO-8601 string or epoch ms) as epoch milliseconds."""
    if isinstance(value, (int, float)):
        return int(value)
    text = value.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{(frac + '000000')[:6]}"
    dt = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


def wait_for(predicate, timeout, interval=0.05, message="condition"):
    """Poll `predicate` until it returns a truthy value (returned) or `timeout` seconds pass (AssertionError)."""
    deadline = mono() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if mono() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {message}")
        time.sleep(interval)


def http(method, url, body=None, headers=None, timeout=2.0):
    """(status, text) or (None, error text) when the server does not answer within `timeout`."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return None, str(e)


# Ports for mesh nodes: below the ephemeral range, never handed out twice (see conftest.free_port).
mesh_port = free_port


_CONFIG_KEYS = ("Mode", "ApiKey", "AgentId", "StreamingUri", "EventUri", "ForwardEvents", "InsightsMode", "Port",
                "BindAddress", "DbPath", "DataFile", "NodeId", "ClusterAddress", "Peers", "ClusterSecret",
                "ClusterHeartbeatMs", "ClusterElectionTimeoutMs", "ClusterRole", "LogLevel", "TlsCertFile", "TlsKeyFile",
                "ClusterTlsCertFile", "ClusterTlsKeyFile", "ClusterTlsCaFile", "UpstreamCaFile")


def _clean_env():
    return {k: v for k, v in os.environ.items() if k not in _CONFIG_KEYS}


# -- SDK probe ---------------------------------------------------------------------------------------------------------

class Probe:
    """A raw WebSocket server SDK on one node: sends data-sync {timestamp: 0} and records when each (flag id,
    updatedAt) first arrives (time.monotonic()). Reconnects (bounded backoff) when the node goes away, so it
    survives kill/restart; `close()` stops and joins its thread."""

    def __init__(self, node, secret=SERVER_SECRET):
        from fbclient.utils import build_token
        self._token = build_token
        self.node = node
        self.secret = secret
        self.arrivals = {}  # (flag id, version ms) -> first arrival (monotonic s)
        self.latest = {}  # flag id -> newest version ms seen
        self.connects = 0
        self.disconnects = 0
        self.messages = 0
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{node.id}", daemon=True)
        self._thread.start()

    @property
    def connected(self):
        return self.connects > self.disconnects

    # Hooks for probes that record more (the fault suite's): the URL to dial, connects and disconnects, and every
    # data-sync message and flag version (called with the probe's lock held).
    def url(self):
        return f"ws://127.0.0.1:{self.node.port}/streaming?type=server&token={self._token(self.secret)}"

    def on_connect(self, now):
        pass

    def on_disconnect(self, now):
        pass

    def on_data_sync(self, now, data):
        pass

    def on_flag(self, now, flag_id, version, previous):
        pass

    def _run(self):
        while not self._closed.is_set():
            ws = None
            try:
                ws = websocket.create_connection(self.url(), timeout=2)
                self.connects += 1
                self.on_connect(mono())
                ws.send(json.dumps({"messageType": "data-sync", "data": {"timestamp": 0}}))
                ws.settimeout(0.2)
                last_ping = mono()
                while not self._closed.is_set():
                    try:
                        text = ws.recv()
                    except websocket.WebSocketTimeoutException:
                        if mono() - last_ping > 10:
                            ws.send(json.dumps({"messageType": "ping", "data": {}}))
                            last_ping = mono()
                        continue
                    if not text:
                        break
                    self._record(text)
            except (websocket.WebSocketException, OSError, ValueError):
                pass
            finally:
                if ws is not None:
                    try:
                        ws.close(timeout=0.2)
                    except Exception:
                        pass
                    if self.connects > self.disconnects:
                        self.disconnects += 1
                        self.on_disconnect(mono())
            self._closed.wait(0.1)

    def _record(self, text):
        now = mono()
        try:
            message = json.loads(text)
        except ValueError:
            return
        if message.get("messageType") != "data-sync":
            return
        data = message.get("data") or {}
        flags = data.get("featureFlags") or []
        with self._cond:
            self.messages += 1
            self.on_data_sync(now, data)
            for f in flags:
                version = iso_ms(f["updatedAt"])
                self.arrivals.setdefault((f["id"], version), now)
                previous = self.latest.get(f["id"], -1)
                self.on_flag(now, f["id"], version, previous)
                if version > previous:
                    self.latest[f["id"]] = version
            self._cond.notify_all()

    def seen(self, flag_id, version):
        """First arrival (monotonic s) of `flag_id` at a version >= `version`, or None."""
        with self._cond:
            times = [t for (fid, v), t in self.arrivals.items() if fid == flag_id and v >= version]
        return min(times) if times else None

    def wait_seen(self, flag_id, version, timeout):
        deadline = mono() + timeout
        with self._cond:
            while True:
                t = self.seen_locked(flag_id, version)
                if t is not None or self._closed.is_set():
                    return t
                left = deadline - mono()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.2))

    def seen_locked(self, flag_id, version):
        times = [t for (fid, v), t in self.arrivals.items() if fid == flag_id and v >= version]
        return min(times) if times else None

    def close(self):
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(5)


# -- one agent node -----------------------------------------------------------------------------------------------------

class Node:
    def __init__(self, mesh, node_id, secret, role="voter"):
        self.mesh = mesh
        self.id = node_id
        self.port = mesh_port()
        self.cluster_port = mesh_port()
        self.db = mesh.workdir / f"{node_id}.db"
        self.log_path = mesh.workdir / f"{node_id}.err"
        self.out_path = mesh.workdir / f"{node_id}.out"
        self.secret = secret
        self.role = role
        self.proc = None
        self.stopped = False  # SIGSTOPped
        self.starts = 0
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = []

    def __repr__(self):
        return f"Node({self.id}, port={self.port})"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def live(self):
        return self.running and not self.stopped

    def args(self):
        m = self.mesh
        peers = ",".join(f"{p.id}@127.0.0.1:{m.peer_port(self, p)}" for p in m.nodes if p is not self)
        args = [AGENT_BIN, "--mode", m.mode, "--api-key", API_KEY, "--port", str(self.port), "--bind", "127.0.0.1",
                "--db", str(self.db), "--node-id", self.id, "--agent-id", f"mesh-{self.id}",
                "--cluster-address", f"127.0.0.1:{self.cluster_port}", "--peers", peers,
                "--cluster-secret", self.secret,
                "--cluster-heartbeat-ms", str(m.heartbeat_ms), "--cluster-election-timeout-ms", str(m.election_ms)]
        if m.mode == "auto":
            args += ["--streaming-uri", m.sim.ws_url]
        if self.role != "voter":
            args += ["--cluster-role", self.role]
        return args + self.extra_args

    def start(self):
        if self.running:
            raise AssertionError(f"{self.id} is already running")
        self.starts += 1
        with open(self.log_path, "a") as err, open(self.out_path, "a") as out:
            err.write(json.dumps({"event": "harness-start", "nodeId": self.id, "mono": mono() * 1000,
                                  "start": self.starts}) + "\n")
            err.flush()
            self.proc = subprocess.Popen(self.args(), stdout=out, stderr=err, cwd=self.mesh.workdir,
                                         env=_clean_env())
        self.stopped = False
        self.started_at = mono()
        return self

    def wait_listening(self, timeout=20):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.id} exited with {self.proc.returncode}: {self.log_tail(20)}")
            return http("GET", self.url + "/health/liveness", timeout=0.5)[0] == 200
        wait_for(up, timeout, message=f"{self.id} to listen")
        return self

    def status(self, timeout=1.0):
        """The parsed /api/public/proxy/status, or None if the node does not answer."""
        if not self.live:
            return None
        code, body = http("GET", self.url + "/api/public/proxy/status", headers={"Authorization": API_KEY},
                          timeout=timeout)
        if code != 200:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    def cluster(self, timeout=1.0):
        st = self.status(timeout)
        return st.get("cluster") if st else None

    def readiness(self):
        return http("GET", self.url + "/health/readiness", timeout=1.0)

    def bootstrap(self, data_set):
        return http("POST", self.url + "/api/public/proxy/bootstrap", data_set,
                    {"Authorization": API_KEY, "Content-Type": "application/json"}, timeout=10)

    def signal(self, sig):
        if self.running:
            self.proc.send_signal(sig)

    def kill9(self):
        """SIGKILL; returns the monotonic time of the kill."""
        t = mono()
        self.signal(signal.SIGKILL)
        self.proc.wait(10)
        self.stopped = False
        return t

    def sigstop(self):
        t = mono()
        self.signal(signal.SIGSTOP)
        self.stopped = True
        return t

    def sigcont(self):
        t = mono()
        self.signal(signal.SIGCONT)
        self.stopped = False
        return t

    def terminate(self, timeout=15):
        """SIGTERM and wait; returns (exit code, seconds taken). SIGKILL after `timeout`."""
        t = self.terminated_at = mono()
        self.signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
            rc = None
        return rc, mono() - t

    def restart(self, wait=True):
        """Same db, same ports, same arguments."""
        self.start()
        return self.wait_listening() if wait else self

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_events(self, event=None):
        out = []
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if event is None or e.get("event") == event:
                out.append(e)
        return out

    def log_tail(self, n=30):
        return "\n".join(self.log_text().splitlines()[-n:])


# -- the mesh -----------------------------------------------------------------------------------------------------------

class Mesh:
    def __init__(self, workdir, n=3, profile="lan", mode="auto", secrets=None, roles=None, data_set=None,
                 proxies=True, sample_relay=True):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.heartbeat_ms, self.election_ms = PROFILES[profile]
        self.E = self.election_ms / 1000
        self.mode = mode
        self.data_set = data_set or fake_data_set()
        self.sim = None
        self.nodes = []
        self.links = {}  # (from id, to id) -> LinkProxy
        self.probes = []
        self.use_proxies = proxies
        self._closed = threading.Event()
        self.relay_samples = []  # (monotonic s, relay-proxy connections at the simulator)
        self._sampler = None
        self._sample_relay = sample_relay and mode == "auto"
        for i in range(n):
            node_id = f"n{i + 1}"
            self.nodes.append(Node(self, node_id, (secrets or {}).get(node_id, "mesh-e2e-secret"),
                                   (roles or {}).get(node_id, "voter")))

    # -- setup / teardown

    def start(self, wait=True):
        """Start featbit-sim (auto mode), the link proxies and every node at once."""
        if self.mode == "auto":
            self.sim = Simulator(self.workdir, self.data_set)
        if self.use_proxies:
            for a in self.nodes:
                for b in self.nodes:
                    if a is not b:
                        self.links[(a.id, b.id)] = LinkProxy("127.0.0.1", b.cluster_port, name=f"{a.id}->{b.id}")
        for node in self.nodes:
            node.start()
        if wait:
            for node in self.nodes:
                node.wait_listening()
        if self._sample_relay:
            self._sampler = threading.Thread(target=self._sample_loop, name="relay-sampler", daemon=True)
            self._sampler.start()
        return self

    def close(self):
        self._closed.set()
        errors = []
        for probe in self.probes:
            try:
                probe.close()
            except Exception as e:  # keep going: everything must be stopped
                errors.append(e)
        for node in self.nodes:
            try:
                if node.running:
                    if node.stopped:
                        node.signal(signal.SIGCONT)
                    node.proc.kill()
                    node.proc.wait(10)
            except Exception as e:
                errors.append(e)
        for link in self.links.values():
            try:
                link.close()
            except Exception as e:
                errors.append(e)
        if self._sampler:
            self._sampler.join(5)
        if self.sim:
            self.sim.stop()
        for node in self.nodes:
            text = node.log_text() + (node.out_path.read_text(errors="replace") if node.out_path.exists() else "")
            leaks = secret_leaks(text, extra=(node.secret,))
            if leaks:
                errors.append(AssertionError(f"{node.id} logged a secret: {leaks}"))
        if errors:
            raise errors[0]

    def dump(self, lines=25):
        """Log tails of every node (printed by the fixture; pytest shows it for failing tests)."""
        for node in self.nodes:
            print(f"---- {node.id} (port {node.port}, cluster {node.cluster_port}) last {lines} log lines")
            print(node.log_tail(lines))

    # -- topology

    def node(self, node_id):
        return next(n for n in self.nodes if n.id == node_id)

    def peer_port(self, a, b):
        return self.links[(a.id, b.id)].port if self.use_proxies else b.cluster_port

    def link(self, a, b):
        return self.links[(_id(a), _id(b))]

    def set_links(self, node, mode, outbound=True, inbound=True, peers=None):
        """Set every link of `node` (to/from `peers`, default all others) to `mode`."""
        for other in peers or [n for n in self.nodes if n is not node]:
            if outbound:
                self.link(node, other).set_mode(mode)
            if inbound:
                self.link(other, node).set_mode(mode)

    def isolate(self, node, mode="cut"):
        self.set_links(node, mode)

    def heal(self, node=None):
        for link in self.links.values() if node is None else \
                [l for (a, b), l in self.links.items() if node.id in (a, b)]:
            link.set_mode("pass")

    def live(self):
        return [n for n in self.nodes if n.live]

    # -- cluster views

    def statuses(self, nodes=None):
        return {n.id: n.status() for n in (nodes or self.live())}

    def summary(self, nodes=None):
        """One compact line per node for messages and printed figures."""
        parts = []
        for n in nodes or self.nodes:
            st = n.status() if n.live else None
            if st is None:
                parts.append(f"{n.id}: {'stopped' if n.stopped else 'down' if not n.running else 'no answer'}")
                continue
            c = st.get("cluster") or {}
            parts.append(f"{n.id}: {c.get('role')} t{c.get('term')} leader={c.get('leaderId')} "
                         f"dv={st.get('dataVersion')} {st.get('readiness')} caughtUp={c.get('caughtUp')}")
        return "; ".join(parts)

    def single_leader(self, nodes=None):
        """The leader Node if exactly one of `nodes` (default: live ones) reports role leader and every one of them
        reports it as leaderId; else None."""
        nodes = nodes or self.live()
        sts = {n.id: n.cluster() for n in nodes}
        if any(c is None for c in sts.values()):
            return None
        leaders = [i for i, c in sts.items() if c.get("role") == "leader"]
        if len(leaders) != 1 or any(c.get("leaderId") != leaders[0] for c in sts.values()):
            return None
        return self.node(leaders[0])

    def wait_for_single_leader(self, timeout=10, nodes=None):
        try:
            return wait_for(lambda: self.single_leader(nodes), timeout, message="a single leader")
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.summary()}") from None

    def wait_quorum_leader(self, timeout, exclude=()):
        """(leader Node, monotonic time) once a node outside `exclude` is leader and a quorum of the configured nodes
        (counting itself) report it as leaderId."""
        quorum = len(self.nodes) // 2 + 1
        excluded = {_id(x) for x in exclude}

        def check():
            cs = {n.id: n.cluster(timeout=0.5) for n in self.live()}
            for i, c in cs.items():
                if c and c.get("role") == "leader" and i not in excluded:
                    votes = sum(1 for x in cs.values() if x and x.get("leaderId") == i)
                    if votes >= quorum:
                        return self.node(i), mono()
            return None
        try:
            return wait_for(check, timeout, interval=0.02, message="a leader reported by a quorum")
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.summary()}") from None

    def leader(self):
        return self.single_leader()

    def followers(self):
        lead = self.single_leader()
        return [n for n in self.live() if n is not lead]

    def terms(self, nodes=None):
        return {n.id: (n.cluster() or {}).get("term") for n in (nodes or self.live())}

    def wait_caught_up(self, node, timeout=15, nodes=None):
        """`node` reports caughtUp with the leader (the single leader of `nodes`, default all) and its dataVersion."""
        def check():
            lead = self.single_leader(nodes)
            if lead is None:
                return False
            st, lst = node.status(), lead.status()
            return bool(st and lst and st["dataVersion"] == lst["dataVersion"]
                        and (node is lead or st["cluster"].get("caughtUp") is True))
        try:
            wait_for(check, timeout, message=f"{node.id} to catch up")
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.summary()}") from None

    # -- the simulator

    def relay_connections(self):
        return self.sim.control("GET", "state")["connections"]["relay-proxy"]

    def sim_data_version(self):
        return self.sim.control("GET", "state")["dataVersion"]

    def _sample_loop(self):
        # Short timeouts: one slow answer must not leave a gap of many seconds without samples.
        while not self._closed.is_set():
            t = mono()
            code, text = http("GET", self.sim.url + "/control/state", timeout=1.0)
            if code == 200:
                try:
                    self.relay_samples.append((t, json.loads(text)["connections"]["relay-proxy"]))
                except (ValueError, KeyError, TypeError):
                    pass
            self._closed.wait(0.1)

    def relay_max(self, since=0.0, until=None):
        """Most relay-proxy connections seen at once since `since` (an open window also counts one sample taken now,
        so a window the background sampler missed is never empty)."""
        values = [c for t, c in self.relay_samples if t >= since and (until is None or t <= until)]
        if until is None:
            try:
                values.append(self.relay_connections())
            except Exception:
                pass
        return max(values) if values else None

    def wait_relay(self, count, timeout, hold=0.0):
        """Wait until the simulator has `count` relay-proxy connections (and still has after `hold` s)."""
        def check():
            if self.relay_connections() != count:
                return False
            if hold:
                end = mono() + hold
                while mono() < end:
                    if self.relay_connections() != count:
                        return False
                    time.sleep(0.05)
            return mono()
        try:
            return wait_for(check, timeout, message=f"{count} relay-proxy connection(s) at the simulator")
        except AssertionError as e:
            raise AssertionError(f"{e} (now {self.relay_connections()}): {self.summary()}") from None

    def change_flag(self, key="returns-true"):
        """Toggle a flag at the simulator (`PUT /control/flags?touch=true`). Returns (flag id, version ms, t0) with
        t0 the monotonic time just before the PUT."""
        data = self.sim.control("GET", "data")
        flag = next(f for item in data["items"] for f in item["featureFlags"] if f["key"] == key)
        flag["isEnabled"] = not flag["isEnabled"]
        t0 = mono()
        answer = self.sim.control("PUT", "flags?touch=true", flag)
        return Change(flag["id"], key, answer["items"][0]["updatedAt"], t0, flag["isEnabled"])

    # -- probes

    # What `probe` makes, and how long `probe_all` waits by default (the fault harness's namespaces need longer).
    probe_class = Probe
    probe_timeout = 10

    def probe(self, node):
        p = self.probe_class(node)
        self.probes.append(p)
        return p

    def probe_all(self, nodes=None, timeout=None):
        """A probe on every node (default: all live), waiting until each has its first full data set."""
        timeout = self.probe_timeout if timeout is None else timeout
        probes = {n.id: self.probe(n) for n in (nodes or self.live())}
        wait_for(lambda: all(p.messages > 0 for p in probes.values()), timeout, message="every probe's data set")
        return probes

    def wait_change(self, change, probes, timeout=10):
        """Milliseconds from the change at the simulator to its arrival at each probe ({node id: ms})."""
        out, missing = {}, []
        deadline = mono() + timeout
        for node_id, p in probes.items():
            t = p.wait_seen(change.flag_id, change.version, max(0.0, deadline - mono()))
            if t is None:
                missing.append(node_id)
            else:
                out[node_id] = round((t - change.t0) * 1000, 1)
        if missing:
            raise AssertionError(f"change {change.version} of {change.key} did not reach {missing} within "
                                 f"{timeout} s (reached {out}): {self.summary()}")
        return out

    def wait_converged(self, timeout=15, nodes=None):
        """Every node (default: live) reports the simulator's dataVersion."""
        nodes = nodes or self.live()

        def check():
            target = self.sim_data_version()
            return all((n.status() or {}).get("dataVersion") == target for n in nodes)
        try:
            wait_for(check, timeout, message="every node at the simulator's dataVersion")
        except AssertionError as e:
            raise AssertionError(f"{e} ({self.sim_data_version()}): {self.summary()}") from None

    # -- logs

    def role_events(self):
        """Every `mesh-role` line of every node (all its runs), oldest first by `mono`."""
        events = []
        for n in self.nodes:
            for e in n.log_events("mesh-role"):
                # Log metadata values are strings: normalise term and mono to numbers, "" leaderId to None.
                e.setdefault("nodeId", n.id)
                e["_node"] = n.id
                e["term"] = _int(e.get("term"))
                e["mono"] = float(e.get("mono") or 0)
                e["leaderId"] = e.get("leaderId") or None
                events.append(e)
        return sorted(events, key=lambda e: e.get("mono", 0))

    def leaders_by_term(self):
        leaders = defaultdict(set)
        for e in self.role_events():
            if e.get("role") == "leader":
                leaders[e.get("term")].add(e["nodeId"])
        return dict(leaders)

    def assert_one_leader_per_term(self):
        leaders = self.leaders_by_term()
        bad = {t: sorted(s) for t, s in leaders.items() if len(s) > 1}
        assert not bad, f"two leaders in one term: {bad}"
        return leaders

    def first_leader_event_after(self, t, exclude=()):
        """The first mesh-role leader line after monotonic time `t` (s) from a node not in `exclude`."""
        excluded = {_id(x) for x in exclude}
        for e in self.role_events():
            # The agents log whole milliseconds (truncated): allow 1 ms.
            if e.get("role") == "leader" and e.get("mono", 0) >= t * 1000 - 1 and e["nodeId"] not in excluded:
                return e
        return None


class Change:
    def __init__(self, flag_id, key, version, t0, enabled):
        self.flag_id, self.key, self.version, self.t0, self.enabled = flag_id, key, version, t0, enabled

    def __repr__(self):
        return f"Change({self.key}@{self.version})"


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _id(x):
    return x if isinstance(x, str) else x.id


def figures(name, **values):
    """Print one JSON line of figures for a scenario (pytest -s, or the captured output of a failure)."""
    print(json.dumps({"scenario": name, **values}), flush=True)
    sys.stdout.flush()
