"""Credentials end to end: no secret in any log line even at trace level (every e2e agent is also checked when it
stops, see conftest.secret_leaks), forged SDK secrets read nothing, and failed admin logins are limited."""
import json
import urllib.error
import urllib.request

import websocket  # websocket-client, installed with fb-python-sdk

from conftest import API_KEY, CLIENT_SECRET, SERVER_SECRET, TESTER, fake_data_set, secret_leaks, wait_until

# Well formed, naming the served environment (the public half of a secret), but not a secret it has.
FORGED = "Zm9yZ2VkLXNlY3JldC0xMg" + SERVER_SECRET[22:]


def metric(agent, name):
    _, text = agent.request("GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_no_secret_in_any_log_line_at_trace_level(start_simulator, start_agent, sdk_clients):
    from fbclient.utils import build_token
    sim = start_simulator()
    agent = start_agent({"Mode": "auto", "StreamingUri": sim.ws_url, "ApiKey": API_KEY, "AgentId": "e2e-secrets",
                         "LogLevel": "trace"})
    assert wait_until(lambda: agent.request("GET", "/health/readiness") == (200, "Healthy"), timeout=10)
    # Everything that handles a credential: SDK sockets with good and bad tokens, HTTP SDK endpoints, the admin API
    # with a wrong key, a bootstrap refused, insights.
    client = sdk_clients(agent)
    assert client.variation("returns-true", TESTER, None) is True
    client.track_metric(TESTER, "checkout")
    for secret in (SERVER_SECRET, CLIENT_SECRET, FORGED):
        for kind in ("server", "client"):
            try:
                ws = websocket.create_connection(f"{agent.ws_url}/streaming?type={kind}&token={build_token(secret)}",
                                                 timeout=5)
                ws.close()
            except Exception:
                pass
    for secret in (SERVER_SECRET, FORGED, "garbage"):
        agent.request("GET", "/api/public/sdk/server/latest-all", headers={"Authorization": secret})
    agent.request("GET", "/api/public/proxy/status", headers={"Authorization": "rp-wrong-key"})
    agent.request("POST", "/api/public/proxy/bootstrap", b"{broken", {"Authorization": API_KEY})
    code, status = agent.request("GET", "/api/public/proxy/status", headers={"Authorization": API_KEY})
    assert code == 200
    _, metrics = agent.request("GET", "/metrics")
    for text in (status, metrics):
        assert not secret_leaks(text), "the status and metrics carry no secret"
    client.stop()
    log = agent.read_stderr()
    assert '"level":"debug"' in log or '"level":"trace"' in log, "the level below info was on"
    assert '"upstream-applied"' in log and '"admin-auth-failed"' in log and '"bootstrap-rejected"' in log
    assert not secret_leaks(log)


def test_forged_secrets_read_nothing_and_failed_admin_logins_are_limited(start_agent, sdk_clients):
    agent = start_agent({"Mode": "manual", "ApiKey": API_KEY})
    code, _ = agent.request("POST", "/api/public/proxy/bootstrap", fake_data_set(), {"Authorization": API_KEY})
    assert code == 200
    assert agent.request("GET", "/api/public/sdk/server/latest-all", headers={"Authorization": FORGED}) == (401, "")
    code, body = agent.request("GET", "/api/public/sdk/server/latest-all", headers={"Authorization": SERVER_SECRET})
    assert code == 200 and json.loads(body)["data"]["featureFlags"]

    for attempt in range(10):
        code, _ = agent.request("GET", "/api/public/proxy/status", headers={"Authorization": f"rp-guess-{attempt}"})
        assert code == 401
    request = urllib.request.Request(agent.url + "/api/public/proxy/status", headers={"Authorization": API_KEY})
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("the 11th attempt from this address was let through")
    except urllib.error.HTTPError as error:
        assert error.code == 429
        assert int(error.headers["Retry-After"]) >= 1
    assert metric(agent, "featbit_agent_admin_auth_failures_total") == 10
    assert metric(agent, "featbit_agent_admin_auth_limited_total") == 1
    log = agent.read_stderr()
    assert log.count('"admin-auth-failed"') == 9 and log.count('"admin-auth-limited"') == 1
    # The SDKs on this address are not admin clients: still served.
    assert sdk_clients(agent).variation("returns-true", TESTER, None) is True
