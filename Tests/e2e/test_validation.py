"""Every data set is validated at the door: a broken flag never reaches the real Python SDK, through any source."""
import json
import time

from conftest import API_KEY, ENV_ID, TESTER, fake_data_set, wait_until


def break_variations(flags, _segments):
    """The typo a new user made: "variations" as a string, on returns-true (flags[0])."""
    flags[0]["variations"] = "oops"


def touch(key, updated_at, **fields):
    def edit(flags, _segments):
        for flag in flags:
            if flag["key"] == key:
                flag.update(fields)
                flag["updatedAt"] = updated_at
    return edit


def status(agent):
    code, body = agent.request("GET", "/api/public/proxy/status", headers={"Authorization": API_KEY})
    assert code == 200
    return json.loads(body)


def refused_metric(agent, source):
    _, text = agent.request("GET", "/metrics")
    for line in text.splitlines():
        if line.startswith("featbit_agent_items_refused_total") and f'source="{source}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_bootstrap_with_a_broken_flag_is_400_with_its_path_and_the_sdk_keeps_the_data(start_agent, sdk_clients):
    agent = start_agent({"Mode": "manual", "ApiKey": API_KEY})
    code, _ = agent.request("POST", "/api/public/proxy/bootstrap", fake_data_set(), {"Authorization": API_KEY})
    assert code == 200
    client = sdk_clients(agent)
    assert client.variation("returns-true", TESTER, None) is True

    broken = fake_data_set(break_variations)
    broken["items"][0]["segments"][1]["included"] = None
    code, body = agent.request("POST", "/api/public/proxy/bootstrap", broken, {"Authorization": API_KEY})
    assert code == 400
    answer = json.loads(body)
    problems = {p["path"]: p["reason"] for p in answer["problems"]}
    assert problems["items[0].featureFlags[0].variations"] == "expected a list, got a string"
    assert problems["items[0].segments[1].included"] == "expected a list, got null"
    assert "items[0].featureFlags[0].variations: expected a list" in answer["error"]
    assert "bootstrap-rejected" in agent.read_stderr()
    # Nothing of it was applied: the SDK still evaluates the last good data, and a new SDK gets it too.
    assert client.variation("returns-true", TESTER, None) is True
    assert sdk_clients(agent).variation("returns-true", TESTER, None) is True


def test_data_file_with_a_broken_flag_is_refused_at_start_and_on_edit(tmp_path, start_agent, sdk_clients):
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(fake_data_set(break_variations)))
    refused = start_agent({"Mode": "offline", "DataFile": str(data_file)}, wait=False)
    assert refused.proc.wait(timeout=20) == 2
    assert "items[0].featureFlags[0].variations: expected a list" in refused.read_stderr()

    data_file.write_text(json.dumps(fake_data_set()))
    agent = start_agent({"Mode": "offline", "DataFile": str(data_file)})
    client = sdk_clients(agent)
    assert client.variation("returns-true", TESTER, None) is True
    # A broken edit (that would also switch the flag off) is refused whole, with the path in the log line.
    edit = fake_data_set(touch("returns-true", "2024-06-01T00:00:00.000Z", isEnabled=False, fallthrough={"variations": 3}))
    data_file.write_text(json.dumps(edit))
    assert wait_until(lambda: "datafile-rejected" in agent.read_stderr(), timeout=5)
    assert "items[0].featureFlags[0].fallthrough.variations: expected a list" in agent.read_stderr()
    assert client.variation("returns-true", TESTER, None) is True


def test_upstream_invalid_items_are_refused_alone_counted_and_shown(start_simulator, start_agent, sdk_clients):
    sim = start_simulator()
    agent = start_agent({"Mode": "auto", "StreamingUri": sim.ws_url, "ApiKey": API_KEY, "AgentId": "e2e-validation"})
    assert wait_until(lambda: agent.request("GET", "/health/readiness") == (200, "Healthy"), timeout=10)
    client = sdk_clients(agent)
    assert client.variation("returns-true", TESTER, None) is True
    assert client.variation("return-10p-true", TESTER, None) is False
    version = status(agent)["dataVersion"]

    # One rp_patch: return-10p-true with a rollout past 1 (an SDK would serve it "true" to everyone), and
    # returns-true validly switched off.
    flags = fake_data_set()["items"][0]["featureFlags"]
    broken, valid = json.loads(json.dumps(flags[1])), json.loads(json.dumps(flags[0]))
    broken["updatedAt"] = "2024-06-01T00:00:00.000Z"
    broken["fallthrough"]["variations"][0]["rollout"] = [0, 2]
    valid.update(isEnabled=False, updatedAt="2024-06-01T00:00:01.000Z")
    message = {"messageType": "data-sync", "data": {"eventType": "rp_patch", "items": [
        {"envId": ENV_ID, "secrets": [], "featureFlags": [broken, valid], "segments": []}]}}
    sim.control("POST", "send-raw", {"text": json.dumps(message)})

    assert wait_until(lambda: client.variation("returns-true", TESTER, None) is False, timeout=5)
    assert client.variation("return-10p-true", TESTER, None) is False, "the broken version never reached the SDK"
    problems = status(agent).get("problems", {})
    assert "items[0].featureFlags[0].fallthrough.variations[0].rollout" in problems.get("invalidItems", ""), problems
    assert ENV_ID in problems["invalidItems"]
    assert refused_metric(agent, "upstream") == 1
    log = [json.loads(line) for line in agent.read_stderr().splitlines() if '"item-refused"' in line]
    assert len(log) == 1 and log[0]["envId"] == ENV_ID and log[0]["id"] == flags[1]["id"]
    assert "fallthrough.variations[0].rollout" in log[0]["problems"]
    assert status(agent)["dataVersion"] > version

    # A message whose every item is invalid applies nothing and moves no version.
    version = status(agent)["dataVersion"]
    broken["updatedAt"] = "2024-07-01T00:00:00.000Z"
    only_broken = {"messageType": "data-sync", "data": {"eventType": "patch", "featureFlags": [broken], "segments": []}}
    # Sent twice (as a resync would repeat it): counted each time, logged once.
    sim.control("POST", "send-raw", {"text": json.dumps(only_broken)})
    sim.control("POST", "send-raw", {"text": json.dumps(only_broken)})
    assert wait_until(lambda: refused_metric(agent, "upstream") == 3, timeout=5)
    time.sleep(0.2)
    assert status(agent)["dataVersion"] == version
    assert client.variation("return-10p-true", TESTER, None) is False
    assert len([line for line in agent.read_stderr().splitlines() if '"item-refused"' in line]) == 2
    assert agent.read_stderr().count('"every item invalid"') == 2

    # A valid version of the flag heals it: served, and the problem is gone.
    fixed = json.loads(json.dumps(flags[1]))
    fixed["updatedAt"] = "2024-08-01T00:00:00.000Z"
    fixed["fallthrough"]["variations"][0]["rollout"] = [0, 1]
    fixed["fallthrough"]["variations"][1]["rollout"] = [1, 1]
    sim.control("POST", "send-raw", {"text": json.dumps(
        {"messageType": "data-sync", "data": {"eventType": "patch", "featureFlags": [fixed], "segments": []}})})
    assert wait_until(lambda: client.variation("return-10p-true", TESTER, None) is True, timeout=5)
    assert "invalidItems" not in status(agent).get("problems", {})
