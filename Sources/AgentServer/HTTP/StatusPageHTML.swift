// The mesh status page served at `GET /ui`, hand-written: edit the HTML below as a normal page. Rules that keep it
// working with the Content-Security-Policy that `StatusPage` sends (which hashes the inline <script> and <style>):
// exactly one <script> and one <style> element, written as the bare tags `<script>` and `<style>`; no `style="…"`
// attributes, no `on…=` handlers, no external URL of any kind. Values from the status API are only ever set with
// `textContent`, never as HTML.

/// The status page (see the comment above for the rules an edit must keep).
enum StatusPageHTML {
    static let text = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>FeatBit Agent mesh</title>
<style>
  :root { --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; --bg2: #f6f8fa; }
  * { box-sizing: border-box; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328; }
  header { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: baseline; padding: 12px 20px;
           border-bottom: 1px solid var(--line); background: var(--bg2); }
  header h1 { font-size: 18px; margin: 0; }
  main { padding: 12px 20px 24px; max-width: 1200px; }
  .muted { color: var(--muted); }
  .hidden { display: none !important; }
  #message { margin: 12px 0; padding: 10px 14px; border-radius: 6px; border: 1px solid; font-weight: 600; }
  #message.error { color: var(--bad); border-color: var(--bad); background: #ffebe9; }
  #message.warn { color: var(--warn); border-color: #d4a72c; background: #fff8c5; }
  form { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 12px 0; }
  input[type=password] { font: inherit; padding: 6px 8px; min-width: 28em; border: 1px solid var(--line); border-radius: 6px; }
  button { font: inherit; padding: 6px 12px; border: 1px solid var(--line); border-radius: 6px; background: #fff; cursor: pointer; }
  .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; margin: 12px 0; }
  .card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
  .card h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 0 0 6px; }
  .card .big { font-size: 20px; font-weight: 600; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }
  dt { color: var(--muted); }
  dd { margin: 0; overflow-wrap: anywhere; }
  table { border-collapse: collapse; width: 100%; margin: 8px 0; }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { background: var(--bg2); font-weight: 600; }
  tr.leader td { background: #dafbe1; }
  tr.self td:first-child { font-weight: 700; }
  .ok { color: var(--ok); font-weight: 600; }
  .warn { color: var(--warn); font-weight: 600; }
  .bad { color: var(--bad); font-weight: 600; }
  .stale { opacity: .55; }
</style>
</head>
<body>
<header>
  <h1>FeatBit Agent mesh</h1>
  <span>seen from node <strong id="self-id">?</strong></span>
  <span class="muted">updated <span id="updated">never</span></span>
  <button id="forget" type="button" class="hidden">Forget key</button>
</header>
<main>
  <div id="message" class="hidden" role="alert"></div>
  <form id="key-form" class="hidden" autocomplete="off">
    <label for="key">ApiKey of this agent</label>
    <input id="key" name="key" type="password" placeholder="rp-…" autocomplete="current-password" required>
    <button type="submit">Show status</button>
    <span class="muted">Kept in this tab only (session storage). <code>/ui#key=…</code> works too.</span>
  </form>
  <section id="view" class="hidden">
    <div class="cards">
      <div class="card"><h2>Leader</h2><div class="big" id="leader">?</div><div class="muted" id="leader-note"></div></div>
      <div class="card"><h2>This node</h2><dl>
        <dt>role</dt><dd id="self-role"></dd><dt>term</dt><dd id="self-term"></dd>
        <dt>readiness</dt><dd id="self-readiness"></dd><dt>serves</dt><dd id="self-serves"></dd>
      </dl></div>
      <div class="card"><h2>Upstream link</h2><dl>
        <dt>state</dt><dd id="upstream-state"></dd><dt>last sync</dt><dd id="upstream-last"></dd>
        <dt>reconnects</dt><dd id="upstream-reconnects"></dd><dt>held by</dt><dd id="upstream-holder"></dd>
      </dl></div>
      <div class="card"><h2>SDK connections</h2><dl>
        <dt>server</dt><dd id="conn-server"></dd><dt>client</dt><dd id="conn-client"></dd>
      </dl></div>
      <div class="card"><h2>Insights</h2><dl>
        <dt>mode</dt><dd id="insights-mode"></dd><dt>forwarded</dt><dd id="insights-forwarded"></dd>
        <dt>dropped</dt><dd id="insights-dropped"></dd><dt>pending</dt><dd id="insights-pending"></dd>
      </dl></div>
      <div class="card"><h2>Problems</h2><dl id="problems"></dl></div>
    </div>
    <h2>Nodes</h2>
    <table id="nodes">
      <thead><tr><th>node</th><th>role</th><th>term</th><th>reachable</th><th>data version</th><th>replication lag</th>
        <th>applied</th><th>upstream</th><th>address</th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="muted">Peers are as this node last heard them; a peer it cannot reach shows its last known data version
      and no role. Lag counts changes of the leader's term not yet durable on that node.</p>
  </section>
</main>
<script>
"use strict";
(function () {
  const STORE = "featbit-agent-ui-key";
  const STATUS_URL = "api/public/proxy/status";  // relative: works behind a path prefix too
  const $ = (id) => document.getElementById(id);
  let timer = null, lastGood = null, lastGoodAt = null, generation = 0;
  let memoryKey = null;  // used only where session storage is disabled

  // A key in the URL fragment (never sent to the server) moves to session storage and leaves the address bar.
  function takeKeyFromFragment() {
    const match = /(?:^#|&)key=([^&]*)/.exec(location.hash);
    if (!match) return false;
    const k = decodeURIComponent(match[1]);
    try { sessionStorage.setItem(STORE, k); } catch (e) { memoryKey = k; }
    history.replaceState(null, "", location.pathname + location.search);
    return true;
  }
  takeKeyFromFragment();

  function key() { try { return sessionStorage.getItem(STORE) || memoryKey; } catch (e) { return memoryKey; } }
  function forgetKey() { memoryKey = null; try { sessionStorage.removeItem(STORE); } catch (e) { /* disabled */ } }
  function show(el, visible) { el.classList.toggle("hidden", !visible); }
  function text(id, value) { $(id).textContent = value === null || value === undefined || value === "" ? "—" : String(value); }
  function message(kind, body) {
    const el = $("message");
    el.className = kind || "";
    el.textContent = body || "";
    show(el, !!body);
  }
  function askForKey(why) {
    show($("key-form"), true);
    show($("forget"), false);
    if (why) message("error", why);
    $("key").focus();
  }
  function time(iso) {
    if (!iso) return "never";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString() + " (" + ago(Date.now() - d.getTime()) + ")";
  }
  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    return s < 60 ? s + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
  }
  function version(v) {
    if (v === null || v === undefined) return "—";
    const d = new Date(Number(v));
    return v + (isNaN(d) || v <= 0 ? "" : "  (" + d.toISOString().replace(".000Z", "Z") + ")");
  }
  function cell(row, value, cls) {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function render(s) {
    const c = s.cluster || {};
    const self = c.nodeId || "?";
    const peers = Array.isArray(c.peers) ? c.peers : [];
    text("self-id", self);
    document.title = "FeatBit Agent mesh · " + self;

    // Leader: who this node hears; a leader it does not hear is shown as none.
    const leader = c.leaderId;
    text("leader", leader || "none heard");
    $("leader").className = "big " + (leader ? "ok" : "bad");
    text("leader-note", leader ? (leader === self ? "this node leads (term " + c.term + ")" : "term " + c.term)
      : "this node hears no leader: it serves its last data (" + (s.readiness || "?") + ")");

    text("self-role", c.role); text("self-term", c.term); text("self-readiness", s.readiness); text("self-serves", s.serves);
    $("self-readiness").className = s.readiness === "Healthy" ? "ok" : s.readiness === "Degraded" ? "warn" : "bad";

    const up = s.upstream || {};
    const holder = c.role === "leader" || c.role === "standalone" ? self : leader;
    const holderPeer = peers.find((p) => p.nodeId === holder);
    let state = up.state || s.syncState;
    if (holder && holder !== self) state = holderPeer && holderPeer.upstream ? holderPeer.upstream + " (as " + holder + " reports)" : "not known";
    if (!holder) state = "no leader: nobody here syncs";
    // FeatBit's sync state "None": this node has no upstream link (manual and offline modes).
    if (state === "None") state = "none: data comes from " + (s.mode === "offline" ? "the data file or featbit.db" : "bootstrap");
    text("upstream-state", state);
    $("upstream-state").className = /^Stable/.test(state) ? "ok" : /^none:/.test(state) ? "" : /^Starting/.test(state) ? "warn" : "bad";
    // Only the node holding the link knows when it last synced; a follower says where to look.
    text("upstream-last", holder && holder !== self ? "known on " + holder : time(up.lastSyncedAt || s.lastSyncedAt));
    text("upstream-reconnects", up.reconnects);
    text("upstream-holder", holder ? (holder === self ? holder + " (this node)" : holder) : "nobody");

    const conn = s.connections || {};
    text("conn-server", conn.server); text("conn-client", conn.client);

    const ins = s.insights || {};
    text("insights-mode", ins.mode);
    text("insights-forwarded", ins.mode === "local" ? ins.stored + " (kept locally)" : ins.forwarded);
    text("insights-dropped", ins.dropped);
    $("insights-dropped").className = ins.dropped > 0 ? "warn" : "";
    text("insights-pending", ins.pending);

    const problems = $("problems");
    problems.replaceChildren();
    const list = Object.entries(s.problems || {});
    if (c.storageHealthy === false) list.push(["storage", "featbit.db cannot be written: this node does not acknowledge or vote"]);
    if (list.length === 0) {
      const dd = document.createElement("dd");
      dd.textContent = "none"; dd.className = "ok";
      problems.appendChild(dd);
    }
    for (const [area, what] of list) {
      const dt = document.createElement("dt"); dt.textContent = area;
      const dd = document.createElement("dd"); dd.textContent = what; dd.className = "bad";
      problems.append(dt, dd);
    }

    const rows = [{ nodeId: self, role: c.role, term: c.term, reachable: true, dataVersion: s.dataVersion,
                    lag: c.lag, applied: c.applied, upstream: holder === self ? up.state : "",
                    address: "(this node)", self: true }]
      .concat(peers);
    const body = $("nodes").tBodies[0];
    body.replaceChildren();
    for (const p of rows) {
      const tr = document.createElement("tr");
      tr.dataset.node = p.nodeId;
      if (p.nodeId === leader) tr.classList.add("leader");
      if (p.self) tr.classList.add("self");
      cell(tr, p.nodeId + (p.nodeId === leader ? " ★" : "") + (p.self ? " (here)" : ""));
      cell(tr, p.reachable ? p.role || "?" : "unknown", p.role === "leader" && p.reachable ? "ok" : "");
      cell(tr, p.term);
      cell(tr, p.reachable ? "yes" : "no", p.reachable ? "ok" : "bad");
      cell(tr, version(p.dataVersion), p.reachable ? "" : "stale");
      cell(tr, p.lag, p.lag > 0 ? "warn" : "");
      cell(tr, p.applied);
      // Only the node holding the upstream link has a state for it; the others show a dash, not "None".
      cell(tr, p.upstream && p.upstream !== "None" ? p.upstream : "—");
      cell(tr, p.address);
      body.appendChild(tr);
    }
    show($("view"), true);
  }

  async function refresh(gen) {
    const k = key();
    if (!k) { askForKey(null); return; }
    const aborter = new AbortController();
    const cut = setTimeout(() => aborter.abort(), 2500);
    try {
      const r = await fetch(STATUS_URL, { headers: { Authorization: k }, cache: "no-store", signal: aborter.signal,
                                          credentials: "omit", referrerPolicy: "no-referrer" });
      if (gen !== generation) return;
      if (r.status === 401 || r.status === 403) {
        forgetKey();
        show($("view"), false);
        askForKey("The ApiKey was refused by this agent (HTTP " + r.status + "). Enter the agent's ApiKey (rp-…) to see the mesh.");
        return;
      }
      if (!r.ok) throw new Error("HTTP " + r.status);
      const s = await r.json();
      lastGood = s; lastGoodAt = Date.now();
      render(s);
      show($("key-form"), false);
      show($("forget"), true);
      message(null, null);
      $("view").classList.remove("stale");
      text("updated", new Date(lastGoodAt).toLocaleTimeString());
    } catch (e) {
      if (gen !== generation) return;
      const why = e && e.name === "AbortError" ? "no answer within 2.5 s" : (e && e.message) || "network error";
      if (lastGood) {
        $("view").classList.add("stale");
        message("warn", "This node did not answer (" + why + "); showing what it reported " + ago(Date.now() - lastGoodAt) + ". Retrying every second.");
      } else {
        message("warn", "This node did not answer (" + why + "). Retrying every second.");
      }
    } finally {
      clearTimeout(cut);
    }
    if (gen === generation) schedule(gen);
  }
  function schedule(gen) { clearTimeout(timer); timer = setTimeout(() => refresh(gen), 1000); }
  function start() { generation += 1; clearTimeout(timer); refresh(generation); }

  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const k = $("key").value.trim();
    $("key").value = "";
    if (!k) return;
    try { sessionStorage.setItem(STORE, k); } catch (e) { memoryKey = k; }
    message(null, null);
    start();
  });
  $("forget").addEventListener("click", () => {
    forgetKey();
    generation += 1; clearTimeout(timer);
    show($("view"), false);
    message(null, null);
    askForKey(null);
  });
  // A new #key=… typed into the address bar of the open page.
  window.addEventListener("hashchange", () => { if (takeKeyFromFragment()) start(); });
  start();
})();
</script>
</body>
</html>
"""#
}
