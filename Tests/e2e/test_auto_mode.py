"""Auto mode end to end: the built agent syncing from featbit-sim, with the real Python SDK on the agent."""
import json
import time

from conftest import API_KEY, SERVER_SECRET, TESTER, wait_until


def flag(sim, key):
    data = sim.control("GET", "data")
    for item in data["items"]:
        for f in item["featureFlags"]:
            if f["key"] == key:
                return f
    raise KeyError(key)


def readiness(agent):
    return agent.request("GET", "/health/readiness")


def status(agent):
    code, body = agent.request("GET", "/api/public/proxy/status", headers={"Authorization": API_KEY})
    assert code == 200
    return json.loads(body)


def auto_agent(start_agent, sim, **env):
    settings = {"Mode": "auto", "StreamingUri": sim.ws_url, "ApiKey": API_KEY, "AgentId": "e2e-agent"}
    settings.update(env)
    return start_agent(settings)


def test_initial_sync_and_change_propagation_to_the_sdk(start_simulator, start_agent, sdk_clients):
    sim = start_simulator()
    agent = auto_agent(start_agent, sim)
    assert wait_until(lambda: readiness(agent) == (200, "Healthy"), timeout=10)
    st = status(agent)
    assert st["syncState"] == "Stable" and st["serves"] == "webapp:dev" and st["dataVersion"] == 1674885485421
    client = sdk_clients(agent)
    assert client.initialize
    assert client.variation("returns-true", TESTER, None) is True

    changed = flag(sim, "returns-true")
    changed["isEnabled"] = False
    sim.control("PUT", "flags?touch=true", changed)
    started = time.time()
    assert wait_until(lambda: client.variation("returns-true", TESTER, None) is False, timeout=5)
    assert time.time() - started < 1.5
    # The agent registered and reports its status upstream.
    assert wait_until(lambda: any(s.get("agentId") == "e2e-agent" for s in sim.control("GET", "agent-status")), timeout=10)


def test_upstream_down_keeps_serving_and_missed_changes_arrive_after(start_simulator, start_agent, sdk_clients):
    sim = start_simulator()
    agent = auto_agent(start_agent, sim)
    assert wait_until(lambda: readiness(agent) == (200, "Healthy"), timeout=10)
    client = sdk_clients(agent)
    assert client.initialize

    sim.control("POST", "down")
    assert wait_until(lambda: readiness(agent) == (200, "Degraded"), timeout=10)
    assert status(agent)["syncState"] == "Interrupted"
    # Still serving from memory.
    assert client.variation("returns-true", TESTER, None) is True
    code, _ = agent.request("GET", "/api/public/sdk/server/latest-all", headers={"Authorization": SERVER_SECRET})
    assert code == 200

    # A change made while the agent cannot see it...
    changed = flag(sim, "returns-true")
    changed["isEnabled"] = False
    sim.control("PUT", "flags?touch=true", changed)
    time.sleep(0.5)
    assert client.variation("returns-true", TESTER, None) is True
    # ...arrives through rp_patch once the server is back.
    sim.control("POST", "up")
    assert wait_until(lambda: client.variation("returns-true", TESTER, None) is False, timeout=20)
    assert wait_until(lambda: readiness(agent) == (200, "Healthy"), timeout=5)
    assert "upstream-disconnected" in agent.read_stderr()


def test_refused_key_is_reported_and_not_hammered(start_simulator, start_agent):
    sim = start_simulator()
    agent = auto_agent(start_agent, sim, ApiKey="rp-not-a-known-key")
    assert wait_until(lambda: "upstream-refused" in agent.read_stderr(), timeout=10)
    assert readiness(agent) == (503, "Unhealthy")
    time.sleep(3)
    # One refused connect, then a slow retry: not a reconnect storm.
    assert agent.read_stderr().count("upstream-refused") == 1
    code, body = agent.request("GET", "/api/public/proxy/status", headers={"Authorization": "rp-not-a-known-key"})
    assert code == 200 and "4003" in json.loads(body)["problems"]["upstream"]


def test_registration_refusal_does_not_stop_serving(start_simulator, start_agent, sdk_clients):
    sim = start_simulator()
    sim.control("POST", "registration-failures", {"status": 403, "count": 100})
    agent = auto_agent(start_agent, sim)
    assert wait_until(lambda: "agent-registration-refused" in agent.read_stderr(), timeout=10)
    assert wait_until(lambda: readiness(agent) == (200, "Healthy"), timeout=10)
    assert "quota" in status(agent)["problems"]["registration"]
    assert sdk_clients(agent).initialize


def test_sigterm_exits_promptly_while_registration_and_upstream_wait_to_retry(start_simulator, start_agent):
    # Registration refused (next round in 5 minutes) and the FeatBit server down (reconnect backoff): nothing of
    # that may hold SIGTERM up.
    sim = start_simulator()
    sim.control("POST", "registration-failures", {"status": 403, "count": 100})
    agent = auto_agent(start_agent, sim)
    assert wait_until(lambda: "agent-registration-refused" in agent.read_stderr(), timeout=10)
    assert wait_until(lambda: readiness(agent) == (200, "Healthy"), timeout=10)
    sim.control("POST", "down")
    assert wait_until(lambda: "upstream-disconnected" in agent.read_stderr(), timeout=10)
    started = time.time()
    assert agent.stop(timeout=20) == 0
    assert time.time() - started < 10


def test_registration_retries_transient_failures(start_simulator, start_agent):
    sim = start_simulator()
    sim.control("POST", "registration-failures", {"status": 500, "count": 2})
    agent = auto_agent(start_agent, sim)
    assert wait_until(lambda: "agent-registered" in agent.read_stderr(), timeout=20)
    assert agent.read_stderr().count("agent-registration-attempt") == 2


def send_events(agent, client):
    for i in range(3):
        client.variation("returns-true", {"key": f"user-{i}", "name": f"User {i}", "plan": "pro", "email": f"u{i}@example.com"}, None)
    client.flush()


def insights_received(sim):
    return sim.control("GET", "insights")


def test_insights_forward(start_simulator, start_agent, sdk_clients):
    sim = start_simulator()
    agent = auto_agent(start_agent, sim)
    client = sdk_clients(agent)
    send_events(agent, client)
    assert wait_until(lambda: len(insights_received(sim)) > 0, timeout=10)
    text = json.dumps(insights_received(sim))
    assert "user-1" in text and "u1@example.com" in text
    assert SERVER_SECRET in text  # forwarded with the SDK's own env secret


def test_insights_anonymize(start_simulator, start_agent, sdk_clients):
    sim = start_simulator()
    agent = auto_agent(start_agent, sim, InsightsMode="anonymize", InsightsAllowProperties="plan")
    client = sdk_clients(agent)
    send_events(agent, client)
    assert wait_until(lambda: len(insights_received(sim)) > 0, timeout=10)
    text = json.dumps(insights_received(sim))
    assert "user-1" not in text and "User 1" not in text and "example.com" not in text
    assert "pro" in text  # allow-listed property kept
    assert "returns-true" in text  # the insight itself is intact


def test_insights_drop(start_simulator, start_agent, sdk_clients):
    sim = start_simulator()
    agent = auto_agent(start_agent, sim, InsightsMode="drop")
    client = sdk_clients(agent)
    send_events(agent, client)
    time.sleep(2.5)
    assert insights_received(sim) == []


def test_bad_upstream_input_is_rejected_and_the_data_stays(start_simulator, start_agent, sdk_clients):
    sim = start_simulator()
    agent = auto_agent(start_agent, sim)
    assert wait_until(lambda: readiness(agent) == (200, "Healthy"), timeout=10)
    client = sdk_clients(agent)
    assert client.initialize
    bad = [
        "{not json",
        json.dumps({"messageType": "data-sync", "data": {"eventType": "rp_teleport", "items": []}}),
        json.dumps({"messageType": "data-sync", "data": {"eventType": "patch",
                    "featureFlags": [{"id": "x", "envId": "226b9bf8-4af3-4ffa-9b01-162270e4cd40"}], "segments": []}}),
        json.dumps({"messageType": "data-sync", "data": {"eventType": "rp_full", "items": [{"envId": "nope"}]}}),
        json.dumps({"messageType": "data-sync", "data": {"eventType": "patch", "featureFlags": [], "segments": [],
                    "padding": "x" * (10 * 1024 * 1024)}})[:-3] + "!!!",
    ]
    for text in bad:
        sim.control("POST", "send-raw", {"text": text})
    assert wait_until(lambda: agent.read_stderr().count("upstream-message-rejected") >= 5, timeout=15)
    assert client.variation("returns-true", TESTER, None) is True
    assert status(agent)["dataVersion"] == 1674885485421
    # The link still works: a real change goes through and heals the state.
    changed = flag(sim, "returns-true")
    changed["isEnabled"] = False
    sim.control("PUT", "flags?touch=true", changed)
    assert wait_until(lambda: client.variation("returns-true", TESTER, None) is False, timeout=5)
    assert wait_until(lambda: readiness(agent) == (200, "Healthy"), timeout=5)


def test_insights_local_stay_on_the_machine(tmp_path, start_simulator, start_agent, sdk_clients):
    import sqlite3
    db = tmp_path / "featbit.db"
    sim = start_simulator()
    agent = auto_agent(start_agent, sim, InsightsMode="local", DbPath=str(db))
    client = sdk_clients(agent)
    send_events(agent, client)

    def kept():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            table = next(t for t in tables if "insight" in t)
            return [bytes(r[0]).decode() if isinstance(r[0], bytes) else r[0]
                    for r in conn.execute(f"SELECT body FROM {table}")]

    assert wait_until(lambda: any("user-1" in body for body in kept()), timeout=10)
    time.sleep(1.5)
    assert insights_received(sim) == []
