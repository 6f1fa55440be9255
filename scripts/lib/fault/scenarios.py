"""Scenarios 1-12 and 14-18 of the fault-test matrix (cluster-design.md §4.4), layer 2 (network namespaces), LAN
profile (heartbeat 200 ms, election timeout E = 1.5 s), 3 nodes unless noted.

Each scenario builds a fresh mesh (featbit-sim + agents + one probe per node), runs a change stream at featbit-sim,
injects its fault, checks its pass criteria (LAN-profile thresholds) and the hard invariants (≤ 1 leader per term
from the `mesh-role` lines, no data lost against featbit-sim's final state, no item regression), and prints ONE
JSON line of figures. Where a criterion of §4.4 cannot hold on physical grounds it is changed and the reason is
printed in that line (`criteria_changed`)."""
import json
import os
import random
import signal
import threading
import time
import traceback

from fault.cluster import (ChangeStream, NsMesh, check_invariants, fake_data_set, mono, propagation, stats,
                           wait_for)
from fault.env import AGENT_BIN, CLI_IP, SIM_IP, node_ip

FIRST_ELECTION_S = 20


class ScenarioTimeout(Exception):
    pass


class Ctx:
    """One scenario's state: its mesh(es), checks and figures."""

    def __init__(self, sid, name, run, workdir, profile="lan", baseline=None, n=3):
        self.sid, self.name, self.run, self.workdir, self.profile = sid, name, run, workdir, profile
        self.n = n
        self.failures = []
        self.figures = {}
        self.changed = []  # criteria changed, with the reason
        self.notes = []
        self.meshes = []
        self.baseline = baseline if baseline is not None else {}
        self.t_fault = None
        self.live_at_end = None

    # -- checks

    def check(self, ok, message):
        if not ok:
            self.failures.append(message)
        return ok

    def fig(self, **kw):
        self.figures.update(kw)

    def criterion_changed(self, text):
        self.changed.append(text)

    # -- mesh

    def mesh(self, n=None, **kw):
        n = n or self.n
        m = NsMesh(self.run, self.workdir / f"mesh{len(self.meshes) + 1}", n, self.profile, **kw)
        self.meshes.append(m)
        return m

    def settle(self, n=None, start=True, nodes=None, **kw):
        """A started mesh with one leader every started node agrees on, one relay-proxy connection and every
        node at featbit-sim's data version. Returns (mesh, leader)."""
        m = self.mesh(n, **kw)
        if start:
            m.start(nodes=nodes)
        lead = m.wait_for_single_leader(FIRST_ELECTION_S, nodes=nodes)
        m.wait_relay(1, timeout=15, hold=0.5)
        m.wait_converged(20, nodes=nodes)
        return m, lead

    def stream(self, m, interval=0.05, **kw):
        m.stream = ChangeStream(m, interval, **kw)
        return m.stream

    def steady(self, m, probes, seconds):
        """Runs the stream for `seconds` of steady state; returns the monotonic end."""
        t = mono()
        time.sleep(seconds)
        return t, mono()

    # -- common figures

    def failover(self, m, t0, old, opened_before, change_at=0.1, live=None, probes=None, elect_timeout=10,
                 upstream_timeout=20):
        """T_elect (log: a leader of a new term reported by a quorum), T_upstream (featbit-sim accepted the new
        leader's relay-proxy connection with its data-sync) and T_e2e (a change made at t0 + 0.1 s reached every
        probe of a live node), all in ms from t0. Returns (new leader id, term, figures dict)."""
        time.sleep(max(0.0, t0 + change_at - mono()))
        change = m.change_flag()
        got = m.wait_quorum_leader_log(t0, exclude=[old] if old else (), timeout=elect_timeout)
        out = {"T_elect_ms": None, "T_upstream_ms": None, "T_e2e_ms": None}
        new_id = term = None
        if got:
            new_id, term, t_el = got
            out["T_elect_ms"] = round((t_el - t0) * 1000)
        t_up = m.wait_new_relay(opened_before, t0, upstream_timeout)
        if t_up is not None:
            out["T_upstream_ms"] = round((t_up - t0) * 1000)
        targets = {i: p for i, p in (probes or {}).items() if live is None or i in live}
        try:
            arrivals = m.wait_change(change, targets, timeout=upstream_timeout)
            out["T_e2e_ms"] = round(max(arrivals.values()) + (change.t0 - t0) * 1000)
        except AssertionError as e:
            self.failures.append(f"T_e2e: {e}")
        return new_id, term, out

    def before_leader_fault(self):
        """A settled mesh with probes everywhere and a stream of changes running for 3 s: (mesh, leader, probes,
        highest term, relay-proxy connections opened so far)."""
        m, lead = self.settle()
        probes = m.probe_all()
        self.stream(m, 0.05)
        time.sleep(3)
        return m, lead, probes, m.max_term(), m.relay_opened()

    def terms_used(self, m, term0):
        used = terms_since(m, term0)
        self.fig(terms_used=used)
        return used

    def finish_leader_fault(self, m, probes, t_fault):
        """`finish`, and never more than 2 relay-proxy connections at once (the old leader's and the new one's)."""
        self.finish(m, probes, t_fault)
        self.check((self.figures.get("relay_max") or 0) <= 2,
                   f"relay-proxy connections reached {self.figures['relay_max']}")

    def finish(self, m, probes, t_fault, live=None, converge_timeout=20):
        """Stops the stream, checks the hard invariants on the live nodes and fills the common figures."""
        if m.stream:
            time.sleep(0.5)
            m.stream.stop()
        nodes = [m.node(i) for i in live] if live is not None else [n for n in m.nodes if n.live]
        live_probes = {i: p for i, p in probes.items() if i in {n.id for n in nodes}}
        failures, details = check_invariants(m, nodes, converge_timeout, probes=list(probes.values()))
        self.failures += failures
        self.fig(**details)
        if m.stream:
            changes = m.stream.changes
            early = {i: p for i, p in live_probes.items() if p.events and (t_fault is None or p.events[0][0] < t_fault)}
            steady, miss_s = propagation(changes, early, t_to=t_fault)
            fault, miss_f = propagation(changes, live_probes, t_from=t_fault)
            self.fig(changes=len(changes), prop_ms=stats(steady), prop_fault_ms=stats(fault))
            if not changes:
                self.failures.append("the change stream made no change")
            if miss_s or miss_f:
                self.failures.append(f"changes never seen by a live probe: {miss_s + miss_f}")
        self.fig(relay_max=m.relay_max(since=t_fault) if t_fault else m.relay_max(),
                 max_leaders_at_once=m.observer.max_leaders_at_once(t_fault or 0) if m.observer else None)

    def close(self):
        for m in self.meshes:
            try:
                m.close()
            except Exception as e:  # keep closing
                self.notes.append(f"close: {e}")
        try:
            self.run.clear_faults()
        except Exception as e:
            self.notes.append(f"clear faults: {e}")

    def line(self, elapsed):
        out = {"scenario": self.sid, "name": self.name, "result": "pass" if not self.failures else "fail"}
        out.update(self.figures)
        out["elapsed_s"] = round(elapsed, 1)
        if self.changed:
            out["criteria_changed"] = self.changed
        if self.notes:
            out["notes"] = self.notes
        if self.failures:
            out["failures"] = self.failures
        return out


def terms_since(m, term0):
    return m.max_term() - term0


def role_lines_after(m, t, node=None):
    return [e for e in m.role_events() if e["mono"] >= t * 1000 - 1 and (node is None or e["nodeId"] == node)]


def drop_all(run, node):
    """Everything in and out of a node's namespace (except its loopback) is dropped: the host is silent."""
    run.nft_rules(node.id, [("input", 'iifname "eth0" drop'), ("output", 'oifname "eth0" drop')])


def drop_peers(run, node, peers, also=()):
    """Symmetric partition of `node` from `peers` (+ extra addresses), inside `node`'s namespace."""
    addrs = ", ".join([p.ip for p in peers] + list(also))
    run.nft_rules(node.id, [("input", f"ip saddr {{ {addrs} }} drop"), ("output", f"ip daddr {{ {addrs} }} drop")])


def one_way(run, src, dst):
    """IP packets from `src` to `dst` are dropped on the bridge (one direction only)."""
    run.nft_rules("br", [("forward", f"ether type ip ip saddr {src.ip} ip daddr {dst.ip} drop")], family="bridge")


def caught_up(m, node, nodes, timeout=20):
    """`node` reports caughtUp and the dataVersion of the single leader of `nodes`."""
    m.wait_caught_up(node, timeout, nodes=nodes)


def transfer_away(m, node):
    """If `node` leads, SIGTERM it (graceful hand-over) and restart it; returns the leader afterwards."""
    lead = m.wait_for_single_leader(10)
    if lead is node:
        node.terminate()
        node.restart()
        lead = m.wait_for_single_leader(15)
        m.wait_caught_up(node, 20)
    return lead


# ---------------------------------------------------------------------------------------------------------------------

def s1_leader_kill9(ctx):
    m, lead = ctx.settle()
    probes = m.probe_all()
    ctx.stream(m, 0.025)
    time.sleep(5)
    term0, opened = m.max_term(), m.relay_opened()
    t0 = ctx.t_fault = lead.kill9()
    new, term, f = ctx.failover(m, t0, lead, opened, probes=probes, live={n.id for n in m.nodes if n is not lead})
    ctx.fig(old_leader=lead.id, new_leader=new, **f)
    time.sleep(2)
    used = ctx.terms_used(m, term0)
    ctx.check(f["T_elect_ms"] is not None and f["T_elect_ms"] <= 1000, f"T_elect {f['T_elect_ms']} ms > 1000 ms")
    if f["T_e2e_ms"] is not None and f["T_upstream_ms"] is not None and f["T_elect_ms"] is not None:
        connect = f["T_upstream_ms"] - f["T_elect_ms"]
        ctx.check(f["T_e2e_ms"] <= f["T_elect_ms"] + connect + 1000,
                  f"T_e2e {f['T_e2e_ms']} ms > T_elect + upstream connect ({connect} ms) + 1 s")
    ctx.check(used == 1, f"{used} new terms (expected 1)")
    disc = {i: p.disconnects for i, p in probes.items() if i != lead.id}
    ctx.check(all(d == 0 for d in disc.values()), f"followers' probes disconnected: {disc}")
    ctx.finish(m, probes, t0)
    ctx.check((ctx.figures.get("relay_max") or 0) <= 2, f"relay-proxy connections reached {ctx.figures.get('relay_max')}")
    ctx.baseline["s1"] = dict(f, terms_used=used)


def s2_leader_host_crash(ctx):
    m, lead, probes, term0, opened = ctx.before_leader_fault()
    others = [n for n in m.nodes if n is not lead]
    t0 = ctx.t_fault = mono()
    drop_all(ctx.run, lead)
    lead.sigstop()
    new, term, f = ctx.failover(m, t0, lead, opened, probes=probes, live={n.id for n in others})
    ctx.fig(old_leader=lead.id, new_leader=new, **f)
    ctx.check(f["T_elect_ms"] is not None and f["T_elect_ms"] <= 3500, f"T_elect {f['T_elect_ms']} ms > 3500 ms")
    # The stopped, cut-off host cannot close anything; let it stay dead a while, then let it run (still cut off).
    time.sleep(max(0.0, t0 + 2 * m.E + 1 - mono()))
    t_cont = lead.sigcont()
    stopped = None
    deadline = mono() + m.E + 3
    while mono() < deadline and stopped is None:
        down = [e for e in role_lines_after(m, t_cont, lead.id) if e["role"] != "leader"]
        if down:
            stopped = down[0]["mono"] / 1000
        time.sleep(0.05)
    step_ms = round((stopped - t_cont) * 1000) if stopped else None
    ctx.fig(cont_to_old_leader_step_down_ms=step_ms)
    ctx.criterion_changed(
        "'old leader's upstream socket closed by check-quorum <= E after the drop (mock connection log)' cannot be "
        "observed: a SIGSTOPped process runs no check-quorum and a silenced namespace delivers no FIN to featbit-sim. "
        "Checked instead: once it runs again (SIGCONT, still cut off) it steps down within E (log), and after the "
        "heal featbit-sim is back to 1 relay-proxy connection within 2E + TCP retransmission (<= 8 s)")
    ctx.check(step_ms is not None and step_ms <= m.E * 1000, f"old leader stepped down {step_ms} ms after SIGCONT")
    t_heal = mono()
    ctx.run.nft_clear(lead.id)
    try:
        t_one = m.wait_relay(1, timeout=8, hold=0.3)
        ctx.fig(heal_to_one_upstream_ms=round((t_one - t_heal) * 1000))
    except AssertionError as e:
        ctx.failures.append(str(e))
    try:
        back = m.wait_for_single_leader(10)
        ctx.check(back.id == new, f"after the heal {back.id} leads, not {new}")
    except AssertionError as e:
        ctx.failures.append(str(e))
    time.sleep(1)
    used = ctx.terms_used(m, term0)
    ctx.check(used <= 2, f"{used} new terms (target <= 2 per leader fault)")
    ctx.finish_leader_fault(m, probes, t0)


def s3_zombie_leader(ctx):
    m, lead, probes, term0, opened = ctx.before_leader_fault()
    t0 = ctx.t_fault = lead.sigstop()
    others = {n.id for n in m.nodes if n is not lead}
    new, term, f = ctx.failover(m, t0, lead, opened, probes=probes, live=others, elect_timeout=3 * m.E)
    ctx.fig(old_leader=lead.id, new_leader=new, **f)
    time.sleep(max(0.0, t0 + 3 * m.E - mono()))
    t_cont = lead.sigcont()
    # featbit-sim back to 1 connection: polled fast.
    t_one = None
    deadline = mono() + 5
    while mono() < deadline:
        if m.relay_connections() == 1:
            t_one = mono()
            break
        time.sleep(0.02)
    time.sleep(1.0)
    down = [e for e in role_lines_after(m, t_cont, lead.id) if e["role"] != "leader"]
    step_ms = round(down[0]["mono"] - t_cont * 1000) if down else None
    tick = m.heartbeat_ms / 4
    ctx.fig(cont_to_step_down_ms=step_ms, cont_to_one_upstream_ms=round((t_one - t_cont) * 1000) if t_one else None,
            tick_ms=tick)
    ctx.check(step_ms is not None and step_ms <= tick, f"stepped down {step_ms} ms after SIGCONT (> 1 tick)")
    ctx.check(t_one is not None and t_one - t_cont <= 1.0, "relay-proxy connections not back to 1 within 1 s")
    # No follower accepts a message of the old term after the resume.
    old_term = term0
    stale = [e for n in m.nodes if n is not lead for e in m.events("mesh-apply", n)
             if e.get("mono", 0) >= t_cont * 1000 and str(e.get("position", "")).split(".")[0] == str(old_term)]
    stale += [e for e in role_lines_after(m, t_cont) if e["nodeId"] != lead.id and e.get("leaderId") == lead.id]
    ctx.check(not stale, f"a follower accepted the old term after the resume: {stale[:3]}")
    used = ctx.terms_used(m, term0)
    ctx.check(used <= 2, f"{used} new terms")
    ctx.finish_leader_fault(m, probes, t0)


def s4_leader_cut_from_peers(ctx):
    m, lead, probes, term0, opened = ctx.before_leader_fault()
    old_conn = [c["id"] for c in m.relay_list()]
    others = [n for n in m.nodes if n is not lead]
    t0 = ctx.t_fault = mono()
    drop_peers(ctx.run, lead, others)
    # The old leader's relay-proxy connection at featbit-sim: polled until it is gone.
    t_gone = None
    gone_box = {}

    def watch():
        deadline = mono() + 3 * m.E + 5
        while mono() < deadline:
            try:
                ids = {c["id"] for c in m.relay_list()}
            except AssertionError:
                ids = set(old_conn)
            if not ids & set(old_conn):
                gone_box["t"] = mono()
                return
            time.sleep(0.02)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    new, term, f = ctx.failover(m, t0, lead, opened, probes=probes, live={n.id for n in m.nodes},
                                elect_timeout=2 * m.E + 5)
    watcher.join(3 * m.E + 6)
    t_gone = gone_box.get("t")
    ctx.fig(old_leader=lead.id, new_leader=new, **f)
    close_ms = round((t_gone - t0) * 1000) if t_gone else None
    # how long featbit-sim saw 2 connections
    two = [t for t, c in m.relay_samples if t >= t0 and c >= 2]
    two_ms = round((max(two) - min(two)) * 1000 + 100) if two else 0
    ctx.fig(old_leader_upstream_closed_ms=close_ms, two_upstreams_ms=two_ms)
    ctx.check(f["T_elect_ms"] is not None and f["T_elect_ms"] <= 2 * m.E * 1000 + 1000,
              f"T_elect {f['T_elect_ms']} ms > 2E + 1 s")
    ctx.criterion_changed("'old leader closes upstream <= E' checked as <= E + 250 ms at featbit-sim: check-quorum "
                          "fires on the first tick (50 ms) after E without a quorum, then the WebSocket close and "
                          "this harness's 20 ms polling add their share")
    ctx.check(close_ms is not None and close_ms <= m.E * 1000 + 250, f"old leader's upstream closed after {close_ms} ms")
    connect = (f["T_upstream_ms"] or 0) - (f["T_elect_ms"] or 0)
    ctx.check(two_ms <= m.E * 1000 + max(connect, 0) + 300,
              f"2 upstream connections for {two_ms} ms > E + connect ({connect} ms)")
    t_heal = mono()
    ctx.run.nft_clear(lead.id)
    try:
        back = m.wait_for_single_leader(10)
        ctx.check(back.id == new, f"after the heal {back.id} leads, not {new}")
        wait_for(lambda: (lead.cluster() or {}).get("term") == term and (lead.cluster() or {}).get("role") == "follower",
                 5, message="the old leader to follow in the new term")
        ctx.fig(heal_to_rejoin_ms=round((mono() - t_heal) * 1000))
    except AssertionError as e:
        ctx.failures.append(str(e))
    time.sleep(1.5)
    used = ctx.terms_used(m, term0)
    ctx.check(m.max_term() == term, f"extra terms after the heal: {m.max_term()} vs {term}")
    ctx.finish_leader_fault(m, probes, t0)


def s5_leader_cut_from_upstream(ctx):
    m, lead = ctx.settle()
    probes = m.probe_all()
    ctx.stream(m, 0.2)
    time.sleep(2)
    term0 = m.max_term()
    t0 = ctx.t_fault = mono()
    ctx.run.nft_rules(lead.id, [("input", f"ip saddr {SIM_IP} drop"), ("output", f"ip daddr {SIM_IP} drop")])
    silence, transfer_after, probe_every = 45, 30, 30
    bound = silence + transfer_after + probe_every + m.E
    ctx.criterion_changed(
        f"bound {bound:.1f} s instead of 30 s + probe interval + E: a silent drop (nft drop) is only noticed by "
        f"the upstream client's silence timeout (45 s without any message, pings every 15 s; the kernel retransmits "
        f"for ~15 min), after which the 30 s Interrupted clock starts. 'No transfer back within 10 min' is observed "
        f"for 15 s only (suite budget); the agent's rule forbids a return for 5 min")
    got = m.wait_quorum_leader_log(t0, exclude=[lead], timeout=bound + 10)
    if not got:
        ctx.failures.append(f"leadership did not move within {bound + 10:.0f} s: {m.summary()}")
        ctx.finish(m, probes, t0)
        return
    new, term, t_moved = got
    ctx.fig(old_leader=lead.id, new_leader=new, T_move_ms=round((t_moved - t0) * 1000))
    interrupted = [e for e in lead.log_events() if e.get("event") in ("upstream-silent", "upstream-disconnected")]
    ctx.check(t_moved - t0 <= bound, f"leadership moved after {t_moved - t0:.1f} s > {bound:.1f} s")
    t1 = mono()
    change = m.change_flag()
    try:
        arr = m.wait_change(change, probes, timeout=10)
        ctx.fig(T_e2e_after_move_ms=round(max(arr.values())))
    except AssertionError as e:
        ctx.failures.append(str(e))
    time.sleep(15)
    back = [e for e in role_lines_after(m, t_moved + 0.01) if e["role"] == "leader"]
    ctx.check(not back, f"leadership moved again (ping-pong): {back[:3]}")
    ctx.fig(terms_used=terms_since(m, term0))
    ctx.finish(m, probes, t0)


def s6_follower_cut(ctx):
    m, lead = ctx.settle()
    probes = m.probe_all()
    ctx.stream(m, 0.05)
    time.sleep(3)
    term0 = m.max_term()
    f = next(n for n in m.nodes if n is not lead)
    t0 = ctx.t_fault = mono()
    drop_peers(ctx.run, f, [n for n in m.nodes if n is not f])
    try:
        wait_for(lambda: f.readiness() == (200, "Degraded"), 2 * m.E + 3, message="the cut-off follower Degraded")
        ctx.fig(cut_to_degraded_ms=round((mono() - t0) * 1000))
    except AssertionError as e:
        ctx.failures.append(str(e))
    time.sleep(max(0.0, t0 + 2 * m.E + 1 - mono()))
    ctx.check(probes[f.id].connected and probes[f.id].disconnects == 0, "the cut-off follower's probe disconnected")
    ctx.check(m.max_term() == term0, f"term changed during the cut: {m.terms()}")
    last = m.stream.changes[-1]
    t_heal = mono()
    ctx.run.nft_clear(f.id)
    t_seen = probes[f.id].wait_seen(last.flag_id, last.version, 10)
    ctx.fig(follower=f.id, heal_to_catch_up_ms=round((t_seen - t_heal) * 1000) if t_seen else None)
    ctx.check(t_seen is not None and t_seen - t_heal <= 2.0 + 0.01, "no catch-up within 2 s + RTT of the heal")
    time.sleep(2)
    applies = [e for e in m.events("mesh-apply", f) if e.get("mono", 0) >= t_heal * 1000]
    kinds = sorted({e.get("kind") for e in applies})
    ctx.fig(catch_up_kinds=kinds)
    ctx.check("snapshot" not in kinds and "patch" in kinds, f"catch-up by {kinds}, not by patch only")
    ctx.check(m.max_term() == term0, f"term changed after the heal: {m.terms()}")
    ctx.fig(terms_used=terms_since(m, term0))
    ctx.finish(m, probes, t0)


def _reach(node):
    text = node.metrics()
    out = {}
    for line in text.splitlines():
        if line.startswith("featbit_agent_mesh_peer_connected{"):
            labels, value = line.rsplit(" ", 1)
            lab = dict(kv.split("=", 1) for kv in labels[labels.index("{") + 1:-1].split(","))
            out[f"{lab['peer'].strip(chr(34))}:{lab['direction'].strip(chr(34))}"] = int(float(value))
    st = node.cluster() or {}
    return {"status_reachable": {p["nodeId"]: p["reachable"] for p in st.get("peers", [])}, "connected": out}


def s7_asymmetric(ctx):
    m, lead = ctx.settle()
    probes = m.probe_all()
    ctx.stream(m, 0.05)
    time.sleep(3)
    term0 = m.max_term()
    f = next(n for n in m.nodes if n is not lead)
    ctx.t_fault = mono()
    views = {}
    for label, src, dst in (("leader_to_follower", lead, f), ("follower_to_leader", f, lead)):
        t0 = mono()
        one_way(ctx.run, src, dst)
        time.sleep(3 * m.E)
        views[label] = {"leader": _reach(lead), "follower": _reach(f)}
        last = m.stream.changes[-1]
        t_heal = mono()
        ctx.run.nft_clear("br", family="bridge")
        t_seen = probes[f.id].wait_seen(last.flag_id, last.version, 10)
        ctx.check(t_seen is not None, f"{label}: the follower did not converge after the heal")
        ctx.fig(**{f"{label}_heal_to_converged_ms": round((t_seen - t_heal) * 1000) if t_seen else None})
        try:
            wait_for(lambda: all(all(v == 1 for v in _reach(n)["connected"].values()) for n in (lead, f)), 10,
                     interval=0.1, message="every connection of the pair up again")
            ctx.fig(**{f"{label}_heal_to_reconnected_ms": round((mono() - t_heal) * 1000)})
        except AssertionError as e:
            ctx.failures.append(f"{label}: {e}")
    ctx.fig(follower=f.id, reachability_during=views)
    ctx.criterion_changed(
        "'status shows the one-way reachability': status has one `reachable` per peer (heard within E or a "
        "connection up); the per-direction view is the metric featbit_agent_mesh_peer_connected{peer,direction}, "
        "reported here. With an IP-level one-way drop TCP loses the ACKs of the other direction too, so both "
        "connections between the pair fail after TCP_USER_TIMEOUT; what is checked is churn and convergence")
    used = ctx.terms_used(m, term0)
    ctx.check(used == 0, f"{used} new terms from a one-way drop")
    ctx.check(m.wait_for_single_leader(5) is lead, "the leader changed")
    ctx.finish(m, probes, ctx.t_fault)


def s8_upstream_down(ctx):
    m, lead = ctx.settle()
    probes = m.probe_all()
    ctx.stream(m, 0.1)
    time.sleep(2)
    term0 = m.max_term()
    roles0 = len(m.role_events())
    ctx.t_fault = mono()
    outage = 8
    ctx.criterion_changed(
        f"outage {outage} s instead of 60 s (suite budget; three variants). The schedule is checked from the "
        "leader's own upstream-disconnected lines (0.1-0.5 s, then 1, 2, 3, 5, 8… s ±20 %, never above 55 s ±20 %) "
        "and the reconnect after 'up' must come at the next scheduled attempt (+1 s). For the blackhole the socket "
        "is not noticed as dead (silence timeout 45 s) and simply resumes: changes made during it must arrive "
        "within the TCP retransmission backoff after the heal (<= 8 s) instead of 'reconnect + 2 s'")
    nodes_ips = ", ".join(n.ip for n in m.nodes)
    out = {}
    for variant in ("close1000", "blackhole", "rst"):
        opened = m.relay_opened()
        lines_before = len(lead.log_events("upstream-disconnected"))
        t_down = mono()
        if variant == "close1000":
            m.sim.control("POST", "close-relay-proxies", {"code": 1000})
            m.sim.control("POST", "down")
        elif variant == "blackhole":
            ctx.run.nft_rules("sim", [("input", f"ip saddr {{ {nodes_ips} }} drop"),
                                      ("output", f"ip daddr {{ {nodes_ips} }} drop")])
        else:
            ctx.run.nft_rules("sim", [("input", f"ip saddr {{ {nodes_ips} }} tcp dport 8100 reject with tcp reset")])
        time.sleep(1)
        during = m.change_flag()
        time.sleep(max(0.0, t_down + outage - mono()))
        serving = all(n.status() is not None for n in m.nodes) and all(p.connected for p in probes.values())
        t_up = mono()
        if variant == "close1000":
            m.sim.control("POST", "up")
        else:
            ctx.run.nft_clear("sim")
        t_re = m.wait_new_relay(opened, t_down, 5 if variant == "blackhole" else 60)
        try:
            arr = m.wait_change(during, probes, timeout=30)
            t_all = during.t0 + max(arr.values()) / 1000
        except AssertionError as e:
            ctx.failures.append(f"{variant}: {e}")
            t_all = None
        v = {"serving": serving, "reconnect_after_up_ms": round((t_re - t_up) * 1000) if t_re else None,
             "missed_change_after_up_ms": round((t_all - t_up) * 1000) if t_all else None}
        ctx.check(serving, f"{variant}: a node or a probe stopped serving during the outage")
        lines = lead.log_events("upstream-disconnected")[lines_before:]
        if variant == "blackhole":
            ctx.check(t_all is not None and t_all - t_up <= 8, f"{variant}: missed change {v}")
        else:
            ctx.check(t_re is not None, f"{variant}: no reconnect")
            if t_re and t_all:
                ctx.check(t_all - t_re <= 2.0, f"{variant}: change reached probes {t_all - t_re:.2f} s after reconnect")
            delays = [float(e.get("retryInSeconds", "nan")) for e in lines]
            v["retry_s"] = delays
            sched = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55]
            ok = all((0.1 <= d <= 0.5) if i == 0 else (0.8 * sched[min(i, 9)] - 0.01 <= d <= 1.2 * sched[min(i, 9)] + 0.01)
                     for i, d in enumerate(delays))
            ctx.check(ok and delays, f"{variant}: retry delays off the Fibonacci schedule (±20 %, 55 s cap): {delays}")
            if t_re is not None and lines:
                from fault.cluster import iso_ms
                last = [e for e in lines if iso_ms(e["ts"]) / 1000 - m.wall_offset <= t_re]
                if last:
                    due = iso_ms(last[-1]["ts"]) / 1000 - m.wall_offset + float(last[-1]["retryInSeconds"])
                    v["reconnect_vs_schedule_ms"] = round((t_re - due) * 1000)
                    ctx.check(-0.5 <= t_re - due <= 1.0, f"{variant}: reconnect {t_re - due:+.2f} s off its scheduled attempt")
        # the data-sync carried the node's versions
        conns = m.relay_list()
        ds = [c.get("lastDataSync") for c in conns]
        stamps = [((d.get("data") or d).get("timestamp") if isinstance(d, dict) else None) for d in ds]
        v["data_sync_timestamp"] = stamps
        if variant != "blackhole":
            ctx.check(any((t or 0) > 0 for t in stamps), f"{variant}: the reconnect's data-sync carried no versions: {ds[:1]}")
        out[variant] = v
        time.sleep(1)
    ctx.fig(leader=lead.id, variants=out)
    roles = m.role_events()[roles0:]
    ctx.check(not roles, f"role changes during upstream outages: {roles[:3]}")
    ctx.fig(terms_used=terms_since(m, term0))
    ctx.finish(m, probes, ctx.t_fault)
    ctx.check((ctx.figures.get("relay_max") or 0) <= 1 + 1, f"relay-proxy connections reached {ctx.figures['relay_max']}")


def _wait_at_gate(pids, timeout=15.0):
    """Waits until every process is a shell whose `cat` of the gate has started (bounded)."""
    deadline = mono() + timeout
    while mono() < deadline:
        waiting = 0
        for pid in pids:
            try:
                children = open(f"/proc/{pid}/task/{pid}/children").read().split()
                if any(open(f"/proc/{c}/comm").read().strip() == "cat" for c in children):
                    waiting += 1
            except OSError:
                pass
        if waiting == len(pids):
            time.sleep(0.05)  # the cats are past fork; let them reach open()
            return
        time.sleep(0.01)


def _open_gate(gate, pids, timeout=5.0):
    """Releases every process waiting on the FIFO `gate`; returns {pid: mono time it became featbit-agent}, polled
    every millisecond (a process that reached the gate late is released again)."""
    target = os.path.realpath(AGENT_BIN)
    execed = {}
    deadline = mono() + timeout
    while len(execed) < len(pids) and mono() < deadline:
        try:
            # Opening a FIFO for writing without a reader fails (ENXIO): nobody is waiting then.
            os.close(os.open(gate, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        until = mono() + 0.5
        while len(execed) < len(pids) and mono() < until:
            for pid in pids:
                if pid not in execed:
                    try:
                        if os.path.realpath(f"/proc/{pid}/exe") == target:
                            execed[pid] = mono()
                    except OSError:
                        pass
            time.sleep(0.001)
    return execed


def s9_simultaneous_start(ctx):
    m = ctx.mesh()
    from fault.cluster import NsSimulator
    m.sim = NsSimulator(ctx.run, m.workdir, m.data_set)
    t_first = {}
    for round_ in ("empty", "with_db"):
        # Every node waits behind one gate, so they start together however loaded the machine is; the spread is
        # measured from the moments the processes became featbit-agent.
        gate = m.workdir / f"gate-{round_}"
        os.mkfifo(gate)
        for n in m.nodes:
            n.gate = gate
            n.start()
            n.gate = None
        _wait_at_gate([n.pid for n in m.nodes])
        t_start = mono()
        execed = _open_gate(gate, [n.pid for n in m.nodes])
        spread = (max(execed.values()) - min(execed.values())) if len(execed) == len(m.nodes) else float("inf")
        probes = None
        if round_ == "with_db":
            m.probes = []
            probes = {n.id: m.probe(n) for n in m.nodes}
        for n in m.nodes:
            n.wait_listening(30)
        if m.observer is None:
            m.start(wait=False, nodes=[])
        got = m.wait_quorum_leader_log(t_start, timeout=FIRST_ELECTION_S)
        if not got:
            ctx.failures.append(f"{round_}: no leader within {FIRST_ELECTION_S} s")
            break
        lid, term, t_el = got
        elect_ms = round((t_el - t_start) * 1000)
        terms = sorted({e["term"] for e in m.role_events() if e["mono"] >= t_start * 1000 and e["role"] != "follower"
                        or e["mono"] >= t_start * 1000 and e["role"] == "leader"})
        before = max([e["term"] for e in m.role_events() if e["mono"] < t_start * 1000] or [0])
        used = term - before
        t_relay = m.wait_relay(1, timeout=15, hold=1.0)
        m.wait_converged(20)
        r = {"start_spread_ms": round(spread * 1000), "T_elect_ms": elect_ms, "terms_used": used,
             "relay_after_election": m.relay_max(since=t_el + 1)}
        ctx.check(spread <= 0.05, f"{round_}: starts spread over {spread * 1000:.0f} ms > 50 ms")
        ctx.check(elect_ms <= 2 * m.E * 1000 + 1000, f"{round_}: leader after {elect_ms} ms > 2E + 1 s")
        ctx.check(used <= 3, f"{round_}: {used} terms used")
        if round_ == "with_db":
            firsts = {i: p.first_data_at for i, p in probes.items()}
            served_before = {i: (t is not None and t < t_el) for i, t in firsts.items()}
            r["probe_data_before_leader_ms"] = {i: round((t_el - t) * 1000) if t else None for i, t in firsts.items()}
            ctx.check(all(served_before.values()), f"probes not served from the db before a leader: {firsts} vs {t_el}")
        t_first[round_] = r
        if round_ == "empty":
            for n in m.nodes:
                n.signal(signal.SIGTERM)
            for n in m.nodes:
                rc = n.proc.wait(15)
                ctx.check(rc == 0, f"{n.id} exited with {rc}")
    ctx.fig(**t_first)
    ctx.t_fault = 0
    probes = {n.id: p for n, p in zip(m.nodes, m.probes)} if m.probes else m.probe_all()
    ctx.finish(m, probes, None)
    ctx.check((m.relay_max(since=mono() - 3) or 0) <= 1, "more than 1 relay-proxy connection at the end")


def s10_rolling_restart(ctx):
    m, lead = ctx.settle()
    probes = m.probe_all()
    ctx.stream(m, 0.1)
    time.sleep(2)
    term0 = m.max_term()
    ctx.t_fault = mono()
    steps = []
    windows = {}
    for node in list(m.nodes):
        was_leader = m.single_leader() is node
        opened = m.relay_opened()
        rc, took = node.terminate()
        step = {"node": node.id, "was_leader": was_leader, "sigterm_exit_ms": round(took * 1000)}
        ctx.check(rc == 0 and took <= 10, f"{node.id}: exit {rc} after {took:.1f} s")
        if was_leader:
            got = m.wait_quorum_leader_log(node.terminated_at, exclude=[node], timeout=5)
            step["transfer_ms"] = round((got[2] - node.terminated_at) * 1000) if got else None
            ctx.check(got is not None and got[2] - node.terminated_at <= 1.0,
                      f"leader transfer took {step['transfer_ms']} ms > 1 s")
        t_restart = mono()
        node.restart()
        code, text = node.readiness()
        step["readiness_at_start"] = f"{code} {text}"
        ctx.check(code == 200, f"{node.id} not serving from its db at once: {code} {text}")
        m.wait_for_single_leader(10)
        m.wait_caught_up(node, 20)
        windows[node.id] = (node.terminated_at, mono())
        step["restart_to_caught_up_ms"] = round((mono() - t_restart) * 1000)
        steps.append(step)
        time.sleep(2)
    m.stream.stop()
    # T_e2e gap for nodes not restarting at that moment
    lat, miss = propagation(m.stream.changes, probes, t_from=ctx.t_fault,
                            exclude=lambda c, nid: windows[nid][0] - 0.5 <= c.t0 <= windows[nid][1] + 1)
    gap = max(lat) if lat else None
    ctx.fig(steps=steps, e2e_gap_max_ms=round(gap) if gap else None)
    ctx.check(gap is not None and gap <= 2000, f"T_e2e gap {gap} ms > 2 s")
    disc = {i: p.disconnects for i, p in probes.items()}
    ctx.check(all(d == 1 for d in disc.values()), f"SDK disconnects (1 = its own restart): {disc}")
    ctx.fig(terms_used=terms_since(m, term0))
    ctx.finish(m, probes, ctx.t_fault)


def s11_node_added(ctx):
    # A: 3 -> 4 by rolling restart
    m = ctx.mesh(4)
    for n in m.nodes[:3]:
        n.peer_ids = [x.id for x in m.nodes[:3]]
    m.start(nodes=m.nodes[:3])
    lead = m.wait_for_single_leader(FIRST_ELECTION_S, nodes=m.nodes[:3])
    m.wait_relay(1, timeout=15, hold=0.5)
    m.wait_converged(20, nodes=m.nodes[:3])
    probes = m.probe_all(nodes=m.nodes[:3])
    ctx.stream(m, 0.1)
    time.sleep(2)
    term0 = m.max_term()
    n4 = m.nodes[3]
    old = m.nodes[:3]
    t0 = ctx.t_fault = mono()
    n4.start().wait_listening(30)
    probes[n4.id] = m.probe(n4)
    time.sleep(2 * m.E)
    early = [e for e in m.events("mesh-apply", n4) if e.get("kind") == "snapshot"]
    refused = [e for n in old for e in n.log_events("mesh-handshake-refused") if e.get("peer") == n4.id]
    ctx.fig(new_node_follows_before_rollout=bool(early), old_nodes_refuse_new_node=len(refused))
    # README 'Adding or removing a node': nodes still on the old list refuse the new node's connection as an unknown
    # node id, so it serves nothing yet; it catches up by snapshot once the leader runs the new list (checked below).
    ctx.check(not early, "the new node got a snapshot from a leader still on the old list")
    ctx.check(len(refused) >= 1, "no node on the old list logged refusing the new node (mesh-handshake-refused)")
    ctx.check(m.max_term() == term0, f"an election caused by the new node: term {term0} -> {m.max_term()}")
    lead = m.single_leader(old)
    steps = []
    order = sorted(old, key=lambda n: n is lead)  # followers first, the leader last (it hands over)
    term_before_snapshot = None
    for n in order:
        n.peer_ids = None
        if n is lead:
            term_before_snapshot = m.max_term()
        rc, took = n.terminate()
        t_r = mono()
        n.restart()
        try:
            wait_for(lambda: m.single_leader(old) is not None, 15, message="a leader of the old nodes")
            caught_up(m, n, old, 20)
        except AssertionError as e:
            ctx.failures.append(str(e))
        steps.append({"node": n.id, "was_leader": n is lead, "sigterm_exit_ms": round(took * 1000),
                      "restart_to_caught_up_ms": round((mono() - t_r) * 1000)})
    t_roll = mono()
    term_after_rollout = m.max_term()
    try:
        caught_up(m, n4, m.nodes, 30)
        snaps = [e for e in m.events("mesh-apply", n4) if e.get("kind") == "snapshot"]
        ctx.fig(new_node_snapshot_after_rollout_ms=round(snaps[0]["mono"] - t_roll * 1000) if snaps else None)
        ctx.check(bool(snaps), "the new node did not catch up by snapshot")
    except AssertionError as e:
        ctx.failures.append(str(e))
    time.sleep(2 * m.E)
    ctx.check(m.max_term() == term_after_rollout,
              f"an election during/after the snapshot transfer: term {term_after_rollout} -> {m.max_term()}")

    def same():
        for n in m.nodes:
            c = n.cluster()
            if not c or not all(p.get("samePeerList") is True for p in c["peers"]) or len(c["peers"]) != 3:
                return False
        return True
    try:
        wait_for(same, 10, message="every node to report samePeerList for 3 peers")
    except AssertionError as e:
        ctx.failures.append(f"{e}: {[n.cluster() for n in m.nodes]}")
    ctx.fig(add_steps=steps, terms_used_add=terms_since(m, term0))
    ctx.finish(m, probes, t0)
    m.close()
    # B: the negative test 3 -> 5 in one step
    m2 = ctx.mesh(5)
    for n in m2.nodes[:3]:
        n.peer_ids = [x.id for x in m2.nodes[:3]]
    m2.start(nodes=m2.nodes[:3])
    lead = m2.wait_for_single_leader(FIRST_ELECTION_S, nodes=m2.nodes[:3])
    m2.wait_relay(1, timeout=15, hold=0.5)
    tb = mono()
    term_b = m2.max_term()
    m2.start(nodes=m2.nodes[3:])
    victim = next(n for n in m2.nodes[:3] if n is not lead)
    victim.peer_ids = None
    victim.terminate()
    victim.restart()
    time.sleep(2 * m2.E)
    # force elections with the lists mixed: kill -9 the leader
    cur = m2.single_leader(m2.nodes[:3]) or lead
    cur.kill9()
    time.sleep(3 * m2.E)
    unsafe = [e for n in m2.nodes for e in n.log_events("mesh-unsafe-peer-list")]
    leaders = m2.leaders_by_term()
    bad = {t: sorted(s) for t, s in leaders.items() if len(s) > 1}
    at_once = m2.observer.max_leaders_at_once(tb) if m2.observer else None
    ctx.fig(negative={"unsafe_peer_list_lines": len(unsafe), "leaders_by_term":
                      {str(t): sorted(s) for t, s in leaders.items() if t and t > term_b},
                      "max_leaders_at_once": at_once})
    ctx.check(unsafe, "3 -> 5 in one step: no mesh-unsafe-peer-list line")
    ctx.check(not bad, f"3 -> 5: two leaders in one term: {bad}")


def s12_node_removed(ctx):
    m, lead = ctx.settle()
    probes = m.probe_all()
    ctx.stream(m, 0.1)
    time.sleep(2)
    removed = next(n for n in m.nodes if n is not lead)
    keep = [n for n in m.nodes if n is not removed]
    keep.sort(key=lambda n: n is lead)  # the follower first, the leader last (it hands over)
    ctx.t_fault = mono()
    for n in keep:
        n.peer_ids = [x.id for x in keep if x is not n]
        n.terminate()
        n.restart()
        wait_for(lambda: m.single_leader(keep) is not None, 15, message="a leader of the kept nodes")
        caught_up(m, n, keep, 20)
    handed = [e["nodeId"] for e in role_lines_after(m, ctx.t_fault) if e["role"] == "leader"]
    ctx.fig(leaders_during_rollout=handed)
    t_done = mono()
    term1 = max((n.cluster() or {}).get("term", 0) for n in keep)
    time.sleep(4 * m.E)
    term2 = max((n.cluster() or {}).get("term", 0) for n in keep)
    changes_on_keep = [e for e in role_lines_after(m, t_done) if e["nodeId"] in {n.id for n in keep}]
    ctx.fig(removed=removed.id, kept=[n.id for n in keep], term_after_rollout=term1, term_after_wait=term2,
            removed_node_view=removed.cluster())
    ctx.check(term2 == term1 and not changes_on_keep,
              f"{removed.id} caused term changes on the kept nodes: {changes_on_keep[:3]}")
    ctx.finish(m, {i: p for i, p in probes.items() if i != removed.id}, ctx.t_fault, live=[n.id for n in keep])


def s14_clock_skew(ctx):
    m = ctx.mesh(3)
    m.nodes[0].clock_offset_s = -3600
    m.nodes[1].mono_offset_s = 100000
    m.nodes[2].clock_offset_s = 3 * 3600
    t_start = mono()
    m.start()
    got = m.wait_quorum_leader_log(t_start, timeout=FIRST_ELECTION_S)
    lead = m.wait_for_single_leader(FIRST_ELECTION_S)
    m.wait_relay(1, timeout=15, hold=0.5)
    m.wait_converged(20)
    first_terms = m.max_term()
    own = {}
    now = time.time()
    for n in m.nodes:
        st = n.status() or {}
        from fault.cluster import iso_ms
        rep = st.get("reportedAt")
        own[n.id] = round((iso_ms(rep) / 1000 - now) / 3600, 2) if rep else None
    ctx.fig(first_election_ms=round((got[2] - t_start) * 1000) if got else None, first_terms=first_terms,
            status_clock_offset_h=own)
    for n in m.nodes:
        exp = n.clock_offset_s / 3600
        ctx.check(own[n.id] is not None and abs(own[n.id] - exp) < 0.05,
                  f"{n.id} status time offset {own[n.id]} h, expected {exp} h")
    probes = m.probe_all()
    ctx.stream(m, 0.025)
    time.sleep(5)
    term0, opened = m.max_term(), m.relay_opened()
    t0 = ctx.t_fault = lead.kill9()
    new, term, f = ctx.failover(m, t0, lead, opened, probes=probes, live={n.id for n in m.nodes if n is not lead})
    time.sleep(2)
    used = terms_since(m, term0)
    base = ctx.baseline.get("s1")
    ctx.fig(old_leader=lead.id, new_leader=new, terms_used=used, baseline_s1=base, **f)
    ctx.criterion_changed("'identical to the baseline ± noise' checked as the same terms used as scenario 1 and "
                          "T_elect within the LAN bound (1 s) like scenario 1; clock rate ±1 % is not tested: the "
                          "agent has no test clock hook and libfaketime's rate also scales sleeps")
    ctx.check(used == (base or {}).get("terms_used", 1), f"{used} new terms vs baseline {base}")
    ctx.check(f["T_elect_ms"] is not None and f["T_elect_ms"] <= 1000, f"T_elect {f['T_elect_ms']} ms > 1000 ms")
    errors = {n.id: [e.get("msg") for e in n.errors()] for n in m.nodes}
    errors = {k: v for k, v in errors.items() if v}
    ctx.check(not errors, f"error log lines under clock skew: {errors}")
    ctx.fig(error_lines=errors)
    ctx.finish(m, probes, t0)


def s15_disk_full(ctx):
    m = ctx.mesh(3)
    target = m.nodes[2]
    dbdir = m.workdir / "n3-tmpfs"
    holder = ctx.run.tmpfs_holder(target.id, dbdir, "4m")
    target.holder_pid = holder.pid
    target.db = dbdir / "featbit.db"
    m.start()
    m.wait_for_single_leader(FIRST_ELECTION_S)
    m.wait_relay(1, timeout=15, hold=0.5)
    m.wait_converged(20)
    lead = transfer_away(m, target)
    m.wait_relay(1, timeout=15, hold=0.5)
    probes = m.probe_all()
    term0 = m.max_term()
    # fill the tmpfs
    ctx.run.in_mount_ns(holder.pid, "sh", "-c", f"dd if=/dev/zero of={dbdir}/filler bs=4k 2>/dev/null; sync; true")
    df = ctx.run.in_mount_ns(holder.pid, "df", "-k", str(dbdir)).stdout.splitlines()[-1]
    ctx.t_fault = t0 = mono()
    stream = ctx.stream(m, 0.025)
    wait_for(lambda: len(stream.changes) >= 200, 30, message="200 changes")
    stream.pause()
    last = stream.changes[-1]
    t_seen = probes[target.id].wait_seen(last.flag_id, last.version, 10)
    ctx.check(t_seen is not None, "the disk-full node's probe did not get the latest change (serving from memory)")
    try:
        wait_for(lambda: (target.cluster() or {}).get("storageHealthy") is False, 15, message="storageHealthy false")
    except AssertionError as e:
        ctx.failures.append(str(e))
    ready = target.readiness()
    st = target.status() or {}
    lst = lead.cluster() or {}
    peer = next((p for p in lst.get("peers", []) if p["nodeId"] == target.id), {})
    ctx.fig(disk=df.split()[1:5], readiness_full=ready, storage_healthy_full=(st.get("cluster") or {}).get("storageHealthy"),
            status_reason={k: v for k, v in st.items() if "reason" in k.lower() or "degrad" in k.lower()},
            leader_view_of_full_node={"applied": peer.get("applied"), "lag": peer.get("lag"),
                                      "leader_applied": lst.get("applied")})
    ctx.check(ready == (200, "Degraded"), f"readiness while the disk is full: {ready}")
    ctx.check(peer.get("lag") not in (None, 0), f"the leader saw acks from the disk-full node: {peer}")
    ctx.check(target.running, "the disk-full node crashed")
    # votes refused: kill the leader; the two left need the disk-full node's vote.
    old = lead
    t_kill = old.kill9()
    time.sleep(2 * m.E + 1)
    elected = [e for e in role_lines_after(m, t_kill) if e["role"] == "leader"]
    ctx.fig(leaders_while_full=[(e["nodeId"], e["term"]) for e in elected])
    votes_refused = not elected or all(e["nodeId"] == target.id for e in elected)
    ctx.check(not elected, f"a leader was elected with the disk-full node's vote: {elected[:2]}")
    vote_fail = [e for e in target.log_events() if e.get("event") == "mesh-vote-write-failed"]
    ctx.fig(vote_write_failed_lines=len(vote_fail))
    t_free = mono()
    ctx.run.in_mount_ns(holder.pid, "rm", "-f", f"{dbdir}/filler")
    try:
        wait_for(lambda: (target.cluster() or {}).get("storageHealthy") is True, 15, message="storageHealthy again")
        ctx.fig(free_to_storage_healthy_ms=round((mono() - t_free) * 1000))
    except AssertionError as e:
        ctx.failures.append(str(e))
    try:
        got = m.wait_quorum_leader_log(t_free, exclude=[old], timeout=15)
        ctx.fig(free_to_leader_ms=round((got[2] - t_free) * 1000) if got else None)
        ctx.check(got is not None, "no leader after the disk was freed")
    except AssertionError as e:
        ctx.failures.append(str(e))
    old.restart()
    stream.resume()
    time.sleep(2)
    stream.stop()
    m.wait_converged(20)
    wait_for(lambda: target.readiness() == (200, "Healthy"), 15, message="the freed node Healthy")
    ctx.fig(free_to_healthy_ms=round((mono() - t_free) * 1000))

    def acked():
        lead_now = m.single_leader()
        if lead_now is None or (target.cluster() or {}).get("storageHealthy") is not True:
            return False
        if lead_now is target:
            return True
        peer = next((p for p in (lead_now.cluster() or {}).get("peers", []) if p["nodeId"] == target.id), {})
        return peer.get("lag") == 0
    wait_for(acked, 15, message="the freed node's changes acknowledged (lag 0 at the leader)")
    # restart from the (tmpfs) db: same digest
    from fault.cluster import item_map
    before = item_map(target.backup())
    target.terminate()
    target.start()
    target.wait_listening(30)
    after_start = item_map(target.backup())
    ctx.check(after_start == before, "after a restart the disk-full node's db differs from what it served")
    ctx.fig(restart_same_digest=after_start == before, terms_used=terms_since(m, term0))
    ctx.finish(m, probes, t0)


def s16_restart_isolated(ctx):
    m, lead = ctx.settle()
    probes = m.probe_all()
    ctx.stream(m, 0.1)
    time.sleep(2)
    m.stream.stop()
    m.wait_converged(10)
    f = next(n for n in m.nodes if n is not lead)
    dv = m.data_version(f)
    ctx.t_fault = t0 = mono()
    m.sim.control("POST", "down")
    drop_peers(ctx.run, f, [n for n in m.nodes if n is not f], also=[SIM_IP])
    f.terminate()
    p = probes[f.id]
    msgs_before = p.messages
    t_start = mono()
    f.start()
    f.wait_listening(30)
    wait_for(lambda: p.messages > msgs_before, 5, interval=0.01, message="the probe's full data set after restart")
    t_served = next(t for t in p.message_times if t >= t_start)
    served_ms = round((t_served - t_start) * 1000)
    ready = f.readiness()
    dv2 = m.data_version(f)
    ctx.fig(node=f.id, start_to_probe_data_ms=served_ms, readiness=ready, dataVersion_before=dv, dataVersion_after=dv2)
    ctx.check(served_ms <= 1000, f"served {served_ms} ms after start > 1 s")
    ctx.check(ready == (200, "Degraded"), f"readiness {ready}")
    ctx.check(dv2 == dv, f"dataVersion {dv2} != pre-restart {dv}")
    ctx.run.nft_clear(f.id)
    m.sim.control("POST", "up")
    m.wait_for_single_leader(10)
    ctx.finish(m, probes, t0)


def big_data_set(target_bytes):
    """The fake data set plus flags padded to about `target_bytes` of JSON."""
    def edit(flags, segments):
        base = flags[0]
        pad = "x" * 2000
        i = 0
        size = len(json.dumps(flags))
        while size < target_bytes:
            f = json.loads(json.dumps(base))
            f["id"] = f"{i:08d}-0000-4000-8000-{i:012d}"
            f["key"] = f"padded-flag-{i}"
            f["name"] = f"padded flag {i}"
            f["description"] = pad
            flags.append(f)
            size += len(json.dumps(f))
            i += 1
    return fake_data_set(edit)


def s17_slow_link_big_snapshot(ctx):
    size_mb = 4
    ctx.criterion_changed(f"data set {size_mb} MB instead of 20 MB: a 20 MB JSON set loaded by debug builds of "
                          "featbit-sim and three agents on 2 shared cores takes minutes; 4 MB over 8 Mbit/s is still a "
                          ">= 4 s transfer (about 3E). The new node's link also gets 25 ms each way (NFQUEUE delayer), "
                          "whose packet log gives the heartbeat inter-arrival figures")
    m = ctx.mesh(3, data_set=big_data_set(size_mb * 1_000_000))
    n3 = m.nodes[2]
    # All three start (a fresh node votes only once it has heard every peer), then n3 loses its data: it is the new,
    # empty node that must catch up by snapshot over the slow link.
    m.start()
    lead = m.wait_for_single_leader(FIRST_ELECTION_S + 10)
    if lead is n3:
        lead = transfer_away(m, n3)
    m.wait_relay(1, timeout=30, hold=0.5)
    m.wait_converged(60)
    n3.kill9()
    for suffix in ("", "-wal", "-shm"):
        (m.workdir / f"n3.db{suffix}").unlink(missing_ok=True)
    time.sleep(1)
    term0 = m.max_term()
    ctx.run.tbf(n3.id, rate="8mbit", burst="16kb", latency="50ms")
    log = ctx.run.dir / f"delayq-s17-{int(time.time())}.log"
    ctx.run.start_delayer(17, 25, 0, 0.0, max_s=300, log=log, where=n3.id)
    nodes = ",".join(n.ip for n in m.nodes[:2])
    ctx.run.queue_rule(n3.id, ["INPUT", "-m", "iprange", "--src-range", f"{node_ip(1)}-{node_ip(9)}", "-j",
                               "NFQUEUE", "--queue-num", "17", "--queue-bypass"])
    ctx.run.queue_rule(n3.id, ["OUTPUT", "-m", "iprange", "--dst-range", f"{node_ip(1)}-{node_ip(9)}", "-j",
                               "NFQUEUE", "--queue-num", "17", "--queue-bypass"])
    t0 = ctx.t_fault = mono()
    n3.start().wait_listening(30)
    try:
        m.wait_converged(45, nodes=[n3])
    except AssertionError as e:
        ctx.failures.append(str(e))
    t_done = mono()
    snaps = [e for e in m.events("mesh-apply", n3) if e.get("kind") == "snapshot"]
    ctx.fig(transfer_ms=round((t_done - t0) * 1000), new_node_snapshots=len(snaps))
    time.sleep(1)
    used = terms_since(m, term0)
    ctx.check(used == 0, f"{used} elections during the transfer")
    ctx.run.stop_delayers()
    # heartbeat inter-arrival on the leader's control connection(s) to n3 during the transfer
    flows = {}
    try:
        for line in log.read_text().splitlines():
            t, src, sport, dst, dport, size = line.split()
            t = float(t)
            if src == lead.ip and dst == n3.ip and dport == "7100" and t0 <= t <= t_done:
                flows.setdefault(sport, []).append((t, int(size)))
    except FileNotFoundError:
        pass
    control = [v for v in flows.values() if len(v) >= 5 and sorted(s for _, s in v)[len(v) // 2] < 600]
    gaps = []
    for v in control:
        ts = [t for t, _ in v]
        gaps += [(b - a) * 1000 for a, b in zip(ts, ts[1:])]
    h = m.heartbeat_ms
    late = [max(0.0, g - h) for g in gaps]
    from fault.cluster import pct
    p99 = pct(late, 99)
    ctx.fig(heartbeat_gap_ms={"p50": pct(gaps, 50), "p99": pct(gaps, 99), "max": round(max(gaps)) if gaps else None,
                              "n": len(gaps)}, heartbeat_delay_p99_ms=p99, flows=len(flows), terms_used=used)
    ctx.check(p99 is not None and p99 <= m.E * 1000 / 4, f"heartbeat delay p99 {p99} ms > E/4")
    probes = {n.id: m.probe(n) for n in m.nodes}
    time.sleep(1)
    overflow = [e for e in lead.log_events("mesh-outbound-overflow") if e.get("peer") == n3.id]
    ctx.fig(leader_outbound_overflows_to_new_node=len(overflow))
    ctx.finish(m, probes, t0, converge_timeout=5)


def s18_paused_follower(ctx):
    m, lead = ctx.settle()
    probes = m.probe_all()
    ctx.stream(m, 0.05)
    time.sleep(3)
    term0 = m.max_term()
    f = next(n for n in m.nodes if n is not lead)
    t0 = ctx.t_fault = f.sigstop()
    time.sleep(3 * m.E)
    last = m.stream.changes[-1]
    t_cont = f.sigcont()
    t_seen = probes[f.id].wait_seen(last.flag_id, last.version, 10)
    ctx.fig(follower=f.id, cont_to_caught_up_ms=round((t_seen - t_cont) * 1000) if t_seen else None)
    ctx.check(t_seen is not None, "the resumed follower did not catch up")
    time.sleep(2 * m.E)
    applies = [e for e in m.events("mesh-apply", f) if e.get("mono", 0) >= t_cont * 1000]
    kinds = sorted({e.get("kind") for e in applies})
    ctx.fig(catch_up_kinds=kinds)
    ctx.check("snapshot" not in kinds and "patch" in kinds, f"caught up by {kinds}, not by patch")
    used = ctx.terms_used(m, term0)
    ctx.check(used == 0, f"{used} new terms from a paused follower")
    ctx.finish(m, probes, t0)


SCENARIOS = [
    (1, "leader-kill9", s1_leader_kill9, 90),
    (2, "leader-host-crash-silence", s2_leader_host_crash, 90),
    (3, "zombie-leader-sigstop", s3_zombie_leader, 90),
    (4, "leader-cut-from-peers", s4_leader_cut_from_peers, 90),
    (5, "leader-cut-from-upstream", s5_leader_cut_from_upstream, 200),
    (6, "follower-cut-symmetric", s6_follower_cut, 90),
    (7, "asymmetric-one-way", s7_asymmetric, 90),
    (8, "upstream-down-and-back", s8_upstream_down, 180),
    (9, "simultaneous-start", s9_simultaneous_start, 120),
    (10, "rolling-restart", s10_rolling_restart, 150),
    (11, "node-added-3-to-4-and-3-to-5-negative", s11_node_added, 200),
    (12, "node-removed-still-running", s12_node_removed, 120),
    (14, "clock-skew", s14_clock_skew, 90),
    (15, "disk-full", s15_disk_full, 150),
    (16, "restart-isolated-from-leader-and-upstream", s16_restart_isolated, 90),
    (17, "slow-link-big-snapshot", s17_slow_link_big_snapshot, 240),
    (18, "paused-follower", s18_paused_follower, 90),
]


def run_one(run, workroot, sid, name, fn, limit, baseline):
    ctx = Ctx(sid, name, run, workroot / f"s{sid:02d}-{name}", baseline=baseline)
    t = mono()

    def on_alarm(*_):
        raise ScenarioTimeout(f"scenario exceeded its {limit} s time bound")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        fn(ctx)
    except ScenarioTimeout as e:
        ctx.failures.append(str(e))
    except Exception as e:
        ctx.failures.append(f"{type(e).__name__}: {e}")
        ctx.notes.append(traceback.format_exc(limit=4).replace("\n", " | ")[-1500:])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        if ctx.failures:
            for m in ctx.meshes:
                try:
                    tail = {n.id: n.log_tail(4) for n in m.nodes}
                    (ctx.workdir / "failure-summary.txt").write_text(json.dumps(tail, indent=1))
                except Exception:
                    pass
        ctx.close()
    return ctx.line(mono() - t)
