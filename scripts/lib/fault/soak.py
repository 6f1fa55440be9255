"""The soak scenarios (scripts/fault-soak; by hand or nightly, not in CI): 13 (flapping WAN) and row 19 of the matrix,
the five-node variants of 1, 4, 9 and 13 (cluster-design.md §4.4).

13: every mesh link 75 ms ± 10 ms each way (one NFQUEUE delayer in the bridge namespace, fed by iptables FORWARD for
node-to-node packets) and 5 % loss per direction (nft `numgen random` on the bridge); every 20-40 s a random node
(19-13: a random minority of 1 or 2) is cut off from its peers for 3-8 s. Default profile WAN (h 500 ms, E 5 s), the
one sized for 150 ms round trips; the links to featbit-sim and to the probes are not delayed, so propagation
figures are the mesh's own."""
import random
import time

from fault.cluster import mono, pct, propagation, stats, wait_for
from fault.env import node_ip
from fault.scenarios import (Ctx, ScenarioTimeout, drop_peers, role_lines_after, run_one, s1_leader_kill9,
                             s9_simultaneous_start, terms_since)


def wan_links(ctx, loss_pct=5, delay_ms=75, jitter_ms=10, max_s=3600):
    """Delay and loss on every node-to-node packet crossing the bridge (each direction of each link once)."""
    lo, hi = node_ip(1), node_ip(9)
    ctx.run.start_delayer(13, delay_ms, jitter_ms, 0.0, max_s=max_s, where="br")
    ctx.run.queue_rule("br", ["FORWARD", "-m", "iprange", "--src-range", f"{lo}-{hi}", "--dst-range", f"{lo}-{hi}",
                              "-j", "NFQUEUE", "--queue-num", "13", "--queue-bypass"])
    ctx.run.nft_rules("br", [("forward", f"ether type ip ip saddr {lo}-{hi} ip daddr {lo}-{hi} "
                                         f"numgen random mod 100 < {loss_pct} drop")], family="bridge")
    rtt = ctx.run.exec_in("n1", "ping", "-q", "-c", "20", "-i", "0.05", "-W", "2", node_ip(2), check=False).stdout
    return rtt.strip().splitlines()[-2:] if rtt.strip() else []


def flapping(ctx, duration, minority=1):
    m, lead = ctx.settle()
    probes = m.probe_all()
    ping = wan_links(ctx, max_s=duration + 600)
    ctx.fig(profile={"heartbeat_ms": m.heartbeat_ms, "election_timeout_ms": m.election_ms}, ping_n1_n2=ping)
    time.sleep(2 * m.E)  # the delayed links settle before counting
    term0 = m.max_term()
    stream = ctx.stream(m, 0.5)
    t0 = ctx.t_fault = mono()
    end = t0 + duration
    cuts = []
    rng = random.Random()
    while True:
        wait = rng.uniform(20, 40)
        if mono() + wait + 8 > end:
            break
        time.sleep(wait)
        k = rng.randint(1, minority)
        victims = rng.sample(m.nodes, k)
        leader_now = m.single_leader()
        length = rng.uniform(3, 8)
        t_cut = mono()
        for v in victims:
            drop_peers(ctx.run, v, [n for n in m.nodes if n not in victims])
        time.sleep(length)
        for v in victims:
            ctx.run.nft_clear(v.id)
        cuts.append({"nodes": [v.id for v in victims], "t": t_cut, "until": mono(),
                     "leader": bool(leader_now and leader_now in victims)})
    time.sleep(max(0.0, end - mono()))
    t_end = mono()
    # Leader changes: attributed to a leader cut when they happen between its start and its end + 2E + 2 s.
    new_leaders = [e for e in role_lines_after(m, t0) if e["role"] == "leader"]
    spurious, per_cut = [], []
    for e in new_leaders:
        t = e["mono"] / 1000
        owner = next((c for c in cuts if c["leader"] and c["t"] <= t <= c["until"] + 2 * m.E + 2), None)
        if owner is None:
            spurious.append((e["nodeId"], e["term"], round(t - t0, 1)))
    for c in cuts:
        if c["leader"]:
            per_cut.append(sum(1 for e in new_leaders if c["t"] <= e["mono"] / 1000 <= c["until"] + 2 * m.E + 2))
    stream.stop()

    def excluded(c, node_id):
        for cut in cuts:
            lo, hi = cut["t"] - 3.0, cut["until"] + (2 * m.E + 3 if cut["leader"] else 3.0)
            if lo <= c.t0 <= hi and (cut["leader"] or node_id in cut["nodes"]):
                return True
        return False
    clean, miss_c = propagation(stream.changes, probes, t_from=t0, exclude=excluded)
    every, miss_a = propagation(stream.changes, probes, t_from=t0)
    ctx.fig(duration_s=round(t_end - t0), cut_offs=[{"nodes": c["nodes"], "at_s": round(c["t"] - t0, 1),
                                                     "len_s": round(c["until"] - c["t"], 1), "leader": c["leader"]}
                                                    for c in cuts],
            leader_changes=len(new_leaders), spurious_leader_changes=spurious, leader_changes_per_leader_cut=per_cut,
            prop_outside_cutoffs_ms=stats(clean), prop_all_ms=stats(every), terms_used=terms_since(m, term0))
    ctx.criterion_changed("propagation p50/p99 are checked on changes made outside cut-off windows (3 s before a cut "
                          "to 3 s after it for the cut node; for a leader cut to 2E + 3 s after it for every node): "
                          "a cut-off node cannot receive anything, that is the fault itself; 'all' is reported too")
    ctx.check(not spurious, f"leader changes from loss/delay alone: {spurious}")
    ctx.check(all(x <= 1 for x in per_cut), f"more than one leader change per leader cut-off: {per_cut}")
    ctx.check(clean and pct(clean, 99) <= 1500, f"propagation p99 {pct(clean, 99)} ms > 1500 ms")
    ctx.check(clean and pct(clean, 50) <= 250, f"propagation p50 {pct(clean, 50)} ms > 250 ms")
    ctx.check(miss_a == 0, f"{miss_a} changes never reached a probe")
    ctx.run.stop_delayers()
    ctx.run.clear_faults()
    ctx.finish(m, probes, t0, converge_timeout=30)


def s13(ctx):
    flapping(ctx, ctx.args.duration, minority=1)


def s19_13(ctx):
    flapping(ctx, ctx.args.duration, minority=2)


def s19_1(ctx):
    s1_leader_kill9(ctx)


def s19_9(ctx):
    s9_simultaneous_start(ctx)


def s19_4(ctx):
    """Five nodes; the leader and one follower (a minority of 2) are cut off from the other three."""
    m, lead = ctx.settle()
    probes = m.probe_all()
    ctx.stream(m, 0.05)
    time.sleep(3)
    term0, opened = m.max_term(), m.relay_opened()
    minority = [lead, next(n for n in m.nodes if n is not lead)]
    majority = [n for n in m.nodes if n not in minority]
    t0 = ctx.t_fault = mono()
    for v in minority:
        drop_peers(ctx.run, v, majority)
    new, term, f = ctx.failover(m, t0, lead, opened, probes=probes, live={n.id for n in majority},
                                elect_timeout=2 * m.E + 5)
    ctx.fig(old_leader=lead.id, minority=[n.id for n in minority], new_leader=new, **f)
    ctx.check(new in {n.id for n in majority}, f"the new leader {new} is not on the majority side")
    ctx.check(f["T_elect_ms"] is not None and f["T_elect_ms"] <= 2 * m.E * 1000 + 1000,
              f"T_elect {f['T_elect_ms']} ms > 2E + 1 s")
    time.sleep(2 * m.E)
    views = {n.id: n.cluster() or {} for n in minority}
    ctx.fig(minority_view={i: {"role": c.get("role"), "term": c.get("term"), "leaderId": c.get("leaderId")}
                           for i, c in views.items()})
    ctx.check(all(c.get("term") == term0 for c in views.values()), f"minority terms moved: {views}")
    ctx.check(all(c.get("role") != "leader" for c in views.values()), "the minority still has a leader")
    ctx.check(all(probes[n.id].connected for n in minority), "a minority node stopped serving its probe")
    for v in minority:
        ctx.run.nft_clear(v.id)
    try:
        back = m.wait_for_single_leader(15)
        ctx.check(back.id == new, f"after the heal {back.id} leads, not {new}")
    except AssertionError as e:
        ctx.failures.append(str(e))
    time.sleep(2)
    ctx.check(m.max_term() == term, f"extra terms after the heal: {m.max_term()} vs {term}")
    ctx.fig(terms_used=terms_since(m, term0))
    ctx.finish(m, probes, t0)


SOAKS = [
    ("13", "flapping-wan", s13, None),
    ("19-1", "five-nodes-leader-kill9", s19_1, 120),
    ("19-4", "five-nodes-minority-of-2-cut-off", s19_4, 150),
    ("19-9", "five-nodes-simultaneous-start", s19_9, 150),
    ("19-13", "five-nodes-flapping-wan", s19_13, None),
]


def run_soak(run, workroot, sid, name, fn, limit, args):
    profile = args.profile if sid in ("13", "19-13") else "lan"
    n = 5 if sid.startswith("19") else 3
    limit = limit or int(args.duration + 300)

    def wrapped(ctx):
        ctx.args = args
        ctx.n = n
        ctx.profile = profile
        fn(ctx)
    import fault.scenarios as sc
    line = sc.run_one(run, workroot, 0, f"{sid}-{name}", wrapped, limit, {})
    line["scenario"] = sid
    line["name"] = name
    line["nodes"] = n
    line["profile"] = profile
    return line
