"""The clustered mesh end to end: N featbit-agent processes on 127.0.0.1 (LAN profile: heartbeat 200 ms, election
timeout E = 1.5 s), featbit-sim as the FeatBit server, every peer link through a link proxy (Tests/e2e/linkproxy.py)
for cuts and stalls, raw WebSocket SDK probes on every node, and the real FeatBit Python SDK on one.

Scenarios: (a) 3 nodes: one leader, one relay-proxy connection, a change reaches every node (probes and the real
Python SDK); (b) kill -9 of the leader: new leader within 2 s; (c) leader SIGSTOPped for 3E, then resumed; (d) leader
cut from its peers, not from the upstream; (e) follower cut off and healed; (f) upstream down and back; (g) all
nodes started at once, empty and again from their dbs; (h) rolling restart under a stream of changes; (i) a node with
the wrong ClusterSecret; (j) 5 nodes, kill -9 of the leader; (k) manual mode, bootstrap to followers. Extras:
configuration errors, a witness, a one-way stall, a blackholed (silent) leader, a paused follower.

Select with `-m cluster`. Each test prints one JSON line of figures (`pytest -s` shows them)."""
import signal
import threading
import time

import pytest

from conftest import SERVER_SECRET, TESTER, fake_data_set
from mesh import Mesh, figures, iso_ms, mono, wait_for

pytestmark = pytest.mark.cluster

FIRST_ELECTION_S = 15  # start-up: no campaign during the first E, then [E, 2E) plus possible split votes; generous


@pytest.fixture
def make_mesh(tmp_path, request):
    meshes = []

    def make(n=3, start=True, **kw):
        m = Mesh(tmp_path / f"mesh{len(meshes) + 1}", n, **kw)
        meshes.append(m)
        return m.start() if start else m

    failed_before = request.session.testsfailed
    yield make
    for m in meshes:
        if request.session.testsfailed != failed_before:
            m.dump()
        m.close()


def term(cluster):
    assert cluster is not None, "a node did not answer its status"
    return int(cluster["term"])


def settle(make_mesh, n=3, **kw):
    """A started mesh with one leader every node agrees on, one relay-proxy connection (auto mode) and every node
    at the simulator's data version. Returns (mesh, leader)."""
    m = make_mesh(n, **kw)
    lead = m.wait_for_single_leader(FIRST_ELECTION_S)
    if m.mode == "auto":
        m.wait_relay(1, timeout=10, hold=0.5)
        m.wait_converged(15)
    return m, lead


def step_down_ms(m, node, since, timeout=5):
    """Milliseconds from `since` (monotonic s) to `node`'s first mesh-role line after it that is not leader. Waits
    (bounded) for the line: status changes at once, the line is written once the upstream connection is closed."""
    deadline = time.monotonic() + timeout
    while True:
        e = next((e for e in m.role_events() if e["nodeId"] == node.id and e["mono"] >= since * 1000 - 1
                  and e["role"] != "leader"), None)
        if e or time.monotonic() >= deadline:
            return round(e["mono"] - since * 1000) if e else None
        time.sleep(0.05)


def relay_opened(m):
    return m.sim.control("GET", "state").get("connectionsOpened", {}).get("relay-proxy", 0)


# (a) ------------------------------------------------------------------------------------------------------------------

def test_three_nodes_one_leader_one_upstream_and_a_change_reaches_every_node(make_mesh):
    from fbclient.client import FBClient
    from fbclient.config import Config

    t_start = mono()
    m = make_mesh(3)
    lead = m.wait_for_single_leader(FIRST_ELECTION_S)
    t_elected = mono()
    t_one = m.wait_relay(1, timeout=10, hold=1.0)
    m.wait_converged(15)
    wait_for(lambda: all(n.readiness() == (200, "Healthy") for n in m.nodes), 10,
             message="every node Healthy")

    version = m.sim_data_version()
    wait_for(lambda: all(p["dataVersion"] == version for st in m.statuses().values() for p in st["cluster"]["peers"]),
             5, message="every node's peer list to show every peer's dataVersion")
    statuses = m.statuses()
    for node_id, st in statuses.items():
        c = st["cluster"]
        assert c["nodeId"] == node_id and c["leaderId"] == lead.id and term(c) == term(statuses[lead.id]["cluster"])
        assert c["role"] == ("leader" if node_id == lead.id else "follower")
        assert {p["nodeId"] for p in c["peers"]} == {n.id for n in m.nodes} - {node_id}
        assert all(p["reachable"] is True for p in c["peers"]), c["peers"]
    assert all(st["cluster"]["caughtUp"] is True for st in statuses.values())
    assert statuses[lead.id]["syncState"] == "Stable"

    probes = m.probe_all()
    follower = m.followers()[0]
    sdk = FBClient(Config(SERVER_SECRET, event_url=follower.url, streaming_url=f"ws://127.0.0.1:{follower.port}"),
                   start_wait=10)
    try:
        assert sdk.initialize
        assert sdk.variation("returns-true", TESTER, None) is True
        change = m.change_flag("returns-true")
        latencies = m.wait_change(change, probes, timeout=5)
        assert wait_for(lambda: sdk.variation("returns-true", TESTER, None) is False, 5, message="the SDK to see it")
        t_sdk = round((mono() - change.t0) * 1000, 1)
    finally:
        sdk.stop()
    assert m.relay_max(since=t_one) <= 1 and m.relay_connections() == 1
    m.assert_one_leader_per_term()
    figures("a-three-nodes", leader=lead.id, first_election_ms=round((t_elected - t_start) * 1000),
            change_to_probe_ms=latencies, change_to_python_sdk_ms_upper_bound=t_sdk)


# (b) ------------------------------------------------------------------------------------------------------------------

def test_leader_kill9_fails_over_within_two_seconds(make_mesh):
    m, lead = settle(make_mesh, 3)
    probes = m.probe_all()
    old_term = term(lead.cluster())
    opened = relay_opened(m)

    t_kill = lead.kill9()
    new_lead, t_quorum = m.wait_quorum_leader(timeout=10, exclude=[lead])
    failover_ms = round((t_quorum - t_kill) * 1000)
    t_upstream = wait_for(lambda: relay_opened(m) > opened and mono(), 15, interval=0.02,
                          message="the new leader's relay-proxy connection")
    elected = m.first_leader_event_after(t_kill, exclude=[lead])
    assert failover_ms <= 2000, f"failover took {failover_ms} ms"
    assert term(new_lead.cluster()) > old_term

    m.wait_relay(1, timeout=10, hold=1.0)
    assert m.relay_max(since=t_kill) <= 2
    live = {n.id: probes[n.id] for n in m.live()}
    change = m.change_flag()
    latencies = m.wait_change(change, live, timeout=10)
    assert all(p.disconnects == 0 for p in live.values()), "a surviving node's SDK was disconnected"
    m.assert_one_leader_per_term()
    figures("b-leader-kill9", old_leader=lead.id, new_leader=new_lead.id,
            kill_to_quorum_leader_ms=failover_ms,
            kill_to_leader_log_ms=round(elected["mono"] - t_kill * 1000) if elected else None,
            kill_to_new_upstream_ms=round((t_upstream - t_kill) * 1000),
            change_after_failover_ms=latencies)


# (c) ------------------------------------------------------------------------------------------------------------------

def test_paused_leader_steps_down_on_resume(make_mesh):
    m, lead = settle(make_mesh, 3)
    probes = m.probe_all()
    old_term = term(lead.cluster())
    pause = 3 * m.E

    t_stop = lead.sigstop()
    new_lead, t_quorum = m.wait_quorum_leader(timeout=pause, exclude=[lead])
    new_term = term(new_lead.cluster())
    assert new_term > old_term
    time.sleep(max(0.0, t_stop + pause - mono()))
    assert m.relay_max(since=t_stop) <= 2
    t_cont = lead.sigcont()

    def stepped_down():
        c = lead.cluster()
        return c and c["role"] == "follower" and term(c) >= new_term and c["leaderId"] == new_lead.id
    wait_for(stepped_down, 5, message=f"{lead.id} to follow {new_lead.id} after SIGCONT")
    t_follow = mono()
    m.wait_relay(1, timeout=10, hold=1.0)
    assert m.relay_max(since=t_cont) <= 2
    assert m.wait_for_single_leader(5) is new_lead
    change = m.change_flag()
    latencies = m.wait_change(change, probes, timeout=10)
    m.assert_one_leader_per_term()
    down = step_down_ms(m, lead, t_cont)  # read late: the log line may follow the status update
    figures("c-paused-leader", old_leader=lead.id, new_leader=new_lead.id, old_term=old_term, new_term=new_term,
            stop_to_quorum_leader_ms=round((t_quorum - t_stop) * 1000),
            cont_to_step_down_log_ms=down,
            cont_to_follower_status_ms=round((t_follow - t_cont) * 1000), change_ms=latencies)


# (d) ------------------------------------------------------------------------------------------------------------------

def test_leader_cut_from_peers_but_not_from_upstream(make_mesh):
    m, lead = settle(make_mesh, 3)
    probes = m.probe_all()
    others = [n for n in m.nodes if n is not lead]
    old_term = term(lead.cluster())

    t_cut = mono()
    m.isolate(lead, "cut")
    new_lead, t_quorum = m.wait_quorum_leader(timeout=2 * m.E + 5, exclude=[lead])
    wait_for(lambda: (lead.cluster() or {}).get("role") != "leader", m.E + 3,
             message=f"the cut-off leader {lead.id} to step down")
    down_ms = step_down_ms(m, lead, t_cut)
    assert down_ms is not None and down_ms <= m.E * 1000 + 500, \
        f"check-quorum: the cut-off leader stepped down {down_ms} ms after the cut (E = {m.E * 1000:.0f} ms)"
    t_one = m.wait_relay(1, timeout=m.E + 3, hold=0.5)
    samples = [c for t, c in m.relay_samples if t >= t_cut]
    assert max(samples) <= 2, f"relay-proxy connections reached {max(samples)}"
    new_term = term(new_lead.cluster())
    assert new_term > old_term
    assert m.single_leader(others) is new_lead

    t_heal = mono()
    m.heal()
    assert m.wait_for_single_leader(10) is new_lead
    wait_for(lambda: term(lead.cluster()) == new_term, 5, message="the old leader to adopt the new term")
    assert all(term(n.cluster()) == new_term for n in m.nodes), f"extra terms after the heal: {m.terms()}"
    change = m.change_flag()
    latencies = m.wait_change(change, probes, timeout=10)
    m.wait_relay(1, timeout=5)
    assert m.relay_max(since=t_cut) <= 2
    m.assert_one_leader_per_term()
    figures("d-leader-cut-from-peers", old_leader=lead.id, new_leader=new_lead.id,
            cut_to_quorum_leader_ms=round((t_quorum - t_cut) * 1000),
            cut_to_old_leader_step_down_ms=down_ms,
            cut_to_one_upstream_ms=round((t_one - t_cut) * 1000),
            relay_connections_max=max(samples), heal_to_single_leader_ms=round((mono() - t_heal) * 1000),
            change_ms=latencies)


# (e) ------------------------------------------------------------------------------------------------------------------

def test_follower_cut_off_catches_up_after_heal(make_mesh):
    m, lead = settle(make_mesh, 3)
    probes = m.probe_all()
    follower = m.followers()[0]
    rest = {i: p for i, p in probes.items() if i != follower.id}
    term0 = term(lead.cluster())

    m.isolate(follower, "cut")
    change = m.change_flag()
    m.wait_change(change, rest, timeout=5)
    time.sleep(0.5)
    assert probes[follower.id].seen(change.flag_id, change.version) is None, "a cut-off follower got the change"
    wait_for(lambda: follower.readiness() == (200, "Degraded"), 2 * m.E + 3,
             message="the cut-off follower to report Degraded")
    assert probes[follower.id].connected, "the cut-off follower stopped serving its SDK"

    t_heal = mono()
    m.heal(follower)
    wait_for(lambda: (follower.status() or {}).get("dataVersion") == lead.status()["dataVersion"], 10,
             interval=0.02, message="the healed follower to reach the leader's dataVersion")
    catch_up_ms = round((mono() - t_heal) * 1000)
    assert probes[follower.id].wait_seen(change.flag_id, change.version, 5) is not None
    m.wait_caught_up(follower, 10)
    assert m.wait_for_single_leader(5) is lead
    assert all(term(n.cluster()) == term0 for n in m.nodes), f"term changed by a follower fault: {m.terms()}"
    m.assert_one_leader_per_term()
    figures("e-follower-cut", follower=follower.id, heal_to_same_data_version_ms=catch_up_ms,
            heal_to_probe_ms=round((probes[follower.id].seen(change.flag_id, change.version) - t_heal) * 1000))


# (f) ------------------------------------------------------------------------------------------------------------------

def test_upstream_down_and_back_keeps_the_leader(make_mesh):
    m, lead = settle(make_mesh, 3)
    probes = m.probe_all()
    terms0 = m.terms()
    roles_before = len(m.role_events())

    m.sim.control("POST", "down")
    t_down = mono()
    wait_for(lambda: lead.status()["syncState"] != "Stable", 10, message="the leader to see the upstream down")
    during = m.change_flag()  # made while no agent can see it
    time.sleep(max(0.0, t_down + 3 - mono()))
    assert all(n.status() is not None for n in m.nodes), "a node stopped answering while the upstream was down"
    m.sim.control("POST", "up")
    t_up = mono()
    m.wait_change(during, probes, timeout=25)
    t_during_seen = mono()
    after = m.change_flag()
    latencies = m.wait_change(after, probes, timeout=10)
    m.wait_relay(1, timeout=5, hold=0.5)
    assert m.wait_for_single_leader(5) is lead, "the leader changed because the upstream went away"
    assert m.terms() == terms0, f"terms changed: {terms0} -> {m.terms()}"
    assert len(m.role_events()) == roles_before, f"role changes: {m.role_events()[roles_before:]}"
    m.assert_one_leader_per_term()
    figures("f-upstream-down", leader=lead.id, up_to_missed_change_everywhere_ms=round((t_during_seen - t_up) * 1000),
            change_after_ms=latencies)


# (g) ------------------------------------------------------------------------------------------------------------------

def test_simultaneous_start_empty_and_again_with_dbs(make_mesh):
    m = make_mesh(3)
    spread = max(n.started_at for n in m.nodes) - min(n.started_at for n in m.nodes)
    initial = max(term(n.cluster()) for n in m.nodes)
    t0 = min(n.started_at for n in m.nodes)
    lead = m.wait_for_single_leader(FIRST_ELECTION_S)
    first_ms = round((mono() - t0) * 1000)
    terms_used = term(lead.cluster()) - initial
    assert terms_used <= 3, f"{terms_used} terms used from empty dbs"
    m.wait_relay(1, timeout=10, hold=1.0)
    m.wait_converged(15)
    version = m.sim_data_version()

    # Stop every node at once, then start them all at once from their dbs.
    for n in m.nodes:
        n.signal(signal.SIGTERM)
    for n in m.nodes:
        rc = n.proc.wait(15)
        assert rc == 0, f"{n.id} exited with {rc}"
    before = max(int(e["term"]) for e in m.role_events())
    for n in m.nodes:
        n.start()
    t1 = min(n.started_at for n in m.nodes)
    for n in m.nodes:
        n.wait_listening()
    # Served from the db before (or whatever the state of) the election: data at once.
    served = {n.id: n.readiness() for n in m.nodes}
    assert all(code == 200 for code, _ in served.values()), f"not serving from the db at once: {served}"
    assert all(n.status()["dataVersion"] == version for n in m.nodes)
    lead2 = m.wait_for_single_leader(FIRST_ELECTION_S)
    second_ms = round((mono() - t1) * 1000)
    terms_used2 = term(lead2.cluster()) - before
    assert terms_used2 <= 3, f"{terms_used2} terms used on the restart"
    m.wait_relay(1, timeout=10, hold=1.0)
    probes = m.probe_all()
    change = m.change_flag()
    m.wait_change(change, probes, timeout=10)
    m.assert_one_leader_per_term()
    figures("g-simultaneous-start", start_spread_ms=round(spread * 1000), empty_dbs_to_leader_ms=first_ms,
            empty_terms_used=terms_used, restart_to_leader_ms=second_ms, restart_terms_used=terms_used2,
            readiness_at_restart=served)


# (h) ------------------------------------------------------------------------------------------------------------------

def test_rolling_restart_under_a_stream_of_changes(make_mesh):
    m, lead = settle(make_mesh, 3)
    probes = m.probe_all()
    stop = threading.Event()
    sent = []
    keys = ["returns-true", "return-10p-true", "individual-targeting"]

    def stream():
        i = 0
        while not stop.is_set() and i < 400:
            try:
                sent.append(m.change_flag(keys[i % len(keys)]))
            except Exception:
                pass
            i += 1
            stop.wait(0.1)
    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    wait_for(lambda: len(sent) >= 3, 10, message="the first changes")
    steps = []
    try:
        for node in list(m.nodes):
            was_leader = m.single_leader() is node
            rc, took = node.terminate()
            assert rc == 0 and took <= 10, f"{node.id}: exit {rc} after {took:.1f} s"
            step = {"node": node.id, "was_leader": was_leader, "sigterm_exit_ms": round(took * 1000)}
            if was_leader:
                new_lead, t_q = m.wait_quorum_leader(timeout=5, exclude=[node])
                elected = m.first_leader_event_after(node.terminated_at, exclude=[node])
                step["new_leader"] = new_lead.id
                step["sigterm_to_new_leader_log_ms"] = round(elected["mono"] - node.terminated_at * 1000) \
                    if elected else None
                step["sigterm_to_quorum_leader_seen_ms"] = round((t_q - node.terminated_at) * 1000)
            node.restart()
            code, text = node.readiness()
            assert code == 200, f"{node.id} not serving from its db at once: {code} {text}"
            m.wait_for_single_leader(10)
            t_back = mono()
            m.wait_caught_up(node, 15)
            step["restart_to_caught_up_ms"] = round((mono() - t_back) * 1000)
            steps.append(step)
        wait_for(lambda: len(sent) >= 20, 15, message="20 changes in the stream")
    finally:
        stop.set()
        streamer.join(15)
    m.wait_converged(15, nodes=m.nodes)
    last = {}
    for c in sent:
        last[c.flag_id] = c
    for node_id, p in probes.items():
        for c in last.values():
            assert p.wait_seen(c.flag_id, c.version, 5) is not None, f"{node_id} probe missed {c}"
    for node_id, p in probes.items():
        assert p.disconnects == 1, f"{node_id}'s SDK was disconnected {p.disconnects} times (1 = its own restart)"
    m.wait_relay(1, timeout=5)
    m.assert_one_leader_per_term()
    figures("h-rolling-restart", changes=len(sent), steps=steps)


# (i) ------------------------------------------------------------------------------------------------------------------

def test_node_with_the_wrong_secret_never_joins(make_mesh):
    # The mesh forms first (a brand-new node votes only once it has heard every peer), then n3 comes back with the
    # wrong secret: n1 and n2 go on with their leader, and n3 never joins.
    m = make_mesh(3)
    m.wait_for_single_leader(FIRST_ELECTION_S)
    good = [m.node("n1"), m.node("n2")]
    bad = m.node("n3")
    if m.single_leader() is bad:
        bad.terminate()
        lead = m.wait_for_single_leader(FIRST_ELECTION_S, nodes=good)
    else:
        bad.terminate()
    bad.secret = "not-the-mesh-secret"
    bad.restart()
    lead = m.wait_for_single_leader(FIRST_ELECTION_S, nodes=good)
    m.wait_relay(1, timeout=10)
    t_settled = mono()
    samples = 0
    end = mono() + 2 * m.E + 1
    while mono() < end:
        for n in good:
            c = n.cluster()
            entry = next(p for p in c["peers"] if p["nodeId"] == "n3")
            assert entry["reachable"] is False, f"{n.id} lists n3 as reachable: {entry}"
        c = bad.cluster()
        assert c["role"] != "leader" and c["leaderId"] in (None, ""), f"n3 joined or leads: {c}"
        samples += 1
        time.sleep(0.2)
    assert m.single_leader(good) is lead
    assert m.relay_max(since=t_settled) == 1
    refused = [e for n in m.nodes for e in n.log_events() if e.get("event") == "mesh-handshake-refused"]
    assert refused, "no mesh-handshake-refused line"
    m.assert_one_leader_per_term()
    figures("i-wrong-secret", leader=lead.id, samples=samples, handshake_refusals=len(refused),
            n3_readiness=bad.readiness())


# (j) ------------------------------------------------------------------------------------------------------------------

def test_five_nodes_leader_kill9(make_mesh):
    m, lead = settle(make_mesh, 5)
    probes = m.probe_all()
    t_kill = lead.kill9()
    new_lead, t_quorum = m.wait_quorum_leader(timeout=10, exclude=[lead])
    failover_ms = round((t_quorum - t_kill) * 1000)
    assert failover_ms <= 2 * m.E * 1000 + 1000, f"failover took {failover_ms} ms"
    assert m.wait_for_single_leader(10) is new_lead
    m.wait_relay(1, timeout=10, hold=0.5)
    live = {n.id: probes[n.id] for n in m.live()}
    assert len(live) == 4
    change = m.change_flag()
    latencies = m.wait_change(change, live, timeout=10)
    m.assert_one_leader_per_term()
    figures("j-five-nodes-kill9", old_leader=lead.id, new_leader=new_lead.id, kill_to_quorum_leader_ms=failover_ms,
            change_ms=latencies)


# (k) ------------------------------------------------------------------------------------------------------------------

def test_manual_mode_bootstrap_to_a_follower_reaches_every_node(make_mesh):
    m = make_mesh(3, mode="manual")
    lead = m.wait_for_single_leader(FIRST_ELECTION_S)
    assert all(n.readiness()[0] == 503 for n in m.nodes), "data before any bootstrap"
    followers = m.followers()

    data = fake_data_set()
    version = max(iso_ms(x["updatedAt"]) for item in data["items"] for x in item["featureFlags"] + item["segments"])
    t0 = mono()
    code, text = followers[0].bootstrap(data)
    assert code == 200, f"bootstrap to follower {followers[0].id}: {code} {text}"
    wait_for(lambda: all((n.status() or {}).get("dataVersion") == version for n in m.nodes), 10,
             message="every node to hold the bootstrap")
    first_ms = round((mono() - t0) * 1000)
    probes = m.probe_all()

    def edit(flags, segments):
        f = next(f for f in flags if f["key"] == "returns-true")
        f["isEnabled"] = False
        f["updatedAt"] = "2030-01-01T00:00:00.000Z"
    second = fake_data_set(edit)
    target = next(f for f in second["items"][0]["featureFlags"] if f["key"] == "returns-true")
    t1 = mono()
    code, text = followers[-1].bootstrap(second)
    assert code == 200, f"bootstrap to follower {followers[-1].id}: {code} {text}"
    arrivals = {}
    for node_id, p in probes.items():
        t = p.wait_seen(target["id"], iso_ms(target["updatedAt"]), 10)
        assert t is not None, f"the second bootstrap did not reach {node_id}: {m.summary()}"
        arrivals[node_id] = round((t - t1) * 1000, 1)
    assert m.wait_for_single_leader(5) is lead

    # A valid bootstrap too large for one peer frame (16 MiB) cannot be forwarded: the follower says so (413) instead
    # of waiting for a leader that never hears it; nothing changes anywhere.
    def pad(flags, segments):
        flags[0]["description"] = "x" * (17 * 1024 * 1024)
    code, text = followers[0].bootstrap(fake_data_set(pad))
    assert code == 413 and "post it to the leader" in text, f"{code} {text[:200]}"
    assert all(p.wait_seen(target["id"], iso_ms(target["updatedAt"]), 1) is not None for p in probes.values())
    assert all((n.status() or {}).get("dataVersion") == iso_ms(target["updatedAt"]) for n in m.nodes)
    m.assert_one_leader_per_term()
    figures("k-manual-bootstrap", leader=lead.id, first_bootstrap_to=followers[0].id,
            first_bootstrap_everywhere_ms=first_ms, second_bootstrap_to=followers[-1].id,
            second_bootstrap_to_probe_ms=arrivals)


# Contract extras: configuration errors, and a witness ------------------------------------------------------------------

@pytest.mark.parametrize("args, key", [
    (["--peers", "n2@127.0.0.1:7102"], "ClusterSecret"),
    (["--peers", "n1@127.0.0.1:7101,n2@127.0.0.1:7102", "--cluster-secret", "long-enough-secret"], "Peers"),
    (["--peers", "n2@127.0.0.1:7102,n2@127.0.0.1:7103", "--cluster-secret", "long-enough-secret"], "Peers"),
    (["--peers", "n2@127.0.0.1:notaport", "--cluster-secret", "long-enough-secret"], "Peers"),
    (["--peers", "n2@127.0.0.1:7102", "--cluster-secret", "long-enough-secret", "--cluster-address", "nowhere"],
     "ClusterAddress"),
    (["--peers", "n2@127.0.0.1:7102", "--cluster-secret", "long-enough-secret", "--cluster-role", "boss"],
     "ClusterRole"),
])
def test_cluster_configuration_errors_exit_2_naming_the_key(tmp_path, args, key):
    import subprocess
    from conftest import AGENT_BIN
    from mesh import mesh_port
    base = ["--node-id", "n1", "--mode", "offline", "--db", str(tmp_path / "x.db"), "--port", str(mesh_port()),
            "--bind", "127.0.0.1"]
    if "--cluster-address" not in args:
        base += ["--cluster-address", f"127.0.0.1:{mesh_port()}"]
    proc = subprocess.run([AGENT_BIN] + base + args, capture_output=True, text=True, timeout=20, cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}: {text}"
    assert any(line.startswith(f"configuration error: {key}") or f" {key}:" in line or f"{key}:" in line
               for line in text.splitlines()), text


def test_witness_votes_but_never_leads(make_mesh):
    m = make_mesh(3, roles={"n3": "witness"})
    data = [m.node("n1"), m.node("n2")]
    witness = m.node("n3")
    lead = m.wait_for_single_leader(FIRST_ELECTION_S, nodes=data)
    m.wait_relay(1, timeout=10, hold=0.5)
    assert witness.cluster()["role"] == "witness"
    probes = {n.id: m.probe(n) for n in data}
    wait_for(lambda: all(p.messages for p in probes.values()), 10, message="the data nodes' probes")
    other = next(n for n in data if n is not lead)
    t_kill = lead.kill9()
    new_lead, t_quorum = m.wait_quorum_leader(timeout=10, exclude=[lead])
    assert new_lead is other, f"{new_lead.id} leads, not the surviving data node {other.id}"
    m.wait_relay(1, timeout=10, hold=0.5)
    change = m.change_flag()
    latencies = m.wait_change(change, {other.id: probes[other.id]}, timeout=10)
    assert not [e for e in m.role_events() if e["nodeId"] == "n3" and e["role"] in ("leader", "candidate")]
    m.assert_one_leader_per_term()
    figures("witness", leader=lead.id, new_leader=new_lead.id, kill_to_quorum_leader_ms=round((t_quorum - t_kill) * 1000),
            change_ms=latencies, witness_status=witness.cluster())


def test_one_way_stall_leader_to_follower_causes_no_churn(make_mesh):
    # Only the leader's messages to one follower are held (its A->B link stalled); the follower still reaches
    # everyone. Pre-vote and leader stickiness must keep the leader and the term; after the heal the follower
    # gets what it missed.
    m, lead = settle(make_mesh, 3)
    probes = m.probe_all()
    follower = m.followers()[0]
    terms0 = m.terms()
    m.link(lead, follower).set_mode("stall")
    t_stall = mono()
    change = m.change_flag()
    others = {i: p for i, p in probes.items() if i != follower.id}
    m.wait_change(change, others, timeout=5)
    time.sleep(max(0.0, t_stall + 3 * m.E - mono()))
    assert m.single_leader([n for n in m.nodes if n is not follower]) is lead, m.summary()
    assert term(lead.cluster()) == terms0[lead.id], f"terms: {terms0} -> {m.terms()}"
    t_heal = mono()
    m.heal()
    m.wait_change(change, {follower.id: probes[follower.id]}, timeout=10)
    m.wait_caught_up(follower, 10)
    assert m.wait_for_single_leader(5) is lead
    assert m.terms() == terms0, f"terms: {terms0} -> {m.terms()}"
    m.assert_one_leader_per_term()
    figures("one-way-stall", leader=lead.id, follower=follower.id,
            heal_to_follower_probe_ms=round((probes[follower.id].seen(change.flag_id, change.version) - t_heal) * 1000))


def test_leader_blackholed_from_peers_silence_not_reset(make_mesh):
    # Like (d), but the leader's links stall (connections stay open, nothing arrives: a host that went silent)
    # instead of being reset, so no fast path applies: the followers must time out; the held messages of the old
    # term are delivered after the heal and must change nothing.
    m, lead = settle(make_mesh, 3)
    probes = m.probe_all()
    old_term = term(lead.cluster())
    t0 = mono()
    m.isolate(lead, "stall")
    new_lead, t_quorum = m.wait_quorum_leader(timeout=2 * m.E + 3, exclude=[lead])
    wait_for(lambda: (lead.cluster() or {}).get("role") != "leader", m.E + 3,
             message=f"the silenced leader {lead.id} to step down")
    down_ms = step_down_ms(m, lead, t0)
    assert down_ms is not None and down_ms <= m.E * 1000 + 500, \
        f"check-quorum: the silenced leader stepped down {down_ms} ms after the stall (E = {m.E * 1000:.0f} ms)"
    m.wait_relay(1, timeout=m.E + 3, hold=0.5)
    assert m.relay_max(since=t0) <= 2
    new_term = term(new_lead.cluster())
    assert new_term > old_term
    m.heal()
    assert m.wait_for_single_leader(10) is new_lead
    wait_for(lambda: term(lead.cluster()) == new_term, 5, message="the old leader to adopt the new term")
    time.sleep(1)
    assert all(term(n.cluster()) == new_term for n in m.nodes), f"extra terms after the heal: {m.terms()}"
    change = m.change_flag()
    latencies = m.wait_change(change, probes, timeout=10)
    m.assert_one_leader_per_term()
    figures("leader-blackholed", old_leader=lead.id, new_leader=new_lead.id,
            stall_to_quorum_leader_ms=round((t_quorum - t0) * 1000),
            stall_to_old_leader_step_down_ms=down_ms, change_ms=latencies)


def test_paused_follower_causes_no_election(make_mesh):
    m, lead = settle(make_mesh, 3)
    probes = m.probe_all()
    follower = m.followers()[0]
    terms0 = m.terms()
    follower.sigstop()
    change = m.change_flag()
    m.wait_change(change, {i: p for i, p in probes.items() if i != follower.id}, timeout=5)
    time.sleep(3 * m.E)
    t_cont = follower.sigcont()
    m.wait_change(change, {follower.id: probes[follower.id]}, timeout=10)
    arrived_ms = round((probes[follower.id].seen(change.flag_id, change.version) - t_cont) * 1000)
    m.wait_caught_up(follower, 10)
    time.sleep(2 * m.E)  # a resumed follower must not start an election either
    assert m.wait_for_single_leader(5) is lead
    assert m.terms() == terms0, f"terms changed: {terms0} -> {m.terms()}"
    m.assert_one_leader_per_term()
    figures("paused-follower", leader=lead.id, follower=follower.id, cont_to_change_ms=arrived_ms)
