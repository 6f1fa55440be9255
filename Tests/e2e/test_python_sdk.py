"""The real FeatBit Python server SDK against the built agent, as a user would run it."""
import json
import signal
import socket
import subprocess
import time

import websocket  # websocket-client, installed with fb-python-sdk

from conftest import (API_KEY, CLIENT_SECRET, SERVER_SECRET, TESTER, fake_data_set, free_port, set_enabled,
                      wait_until)


def test_offline_data_file_serves_the_sdk_and_an_edit_reaches_it_within_a_second(tmp_path, start_agent, sdk_clients):
    data_file = tmp_path / "dump.json"
    data_file.write_text(json.dumps(fake_data_set()))
    agent = start_agent({"Mode": "offline", "DataFile": str(data_file)})
    client = sdk_clients(agent)
    assert client.initialize
    assert client.variation("return-10p-true", TESTER, None) is False
    assert client.variation("returns-true", TESTER, None) is True
    detail = client.variation_detail("return-10p-true", TESTER, None)
    assert detail.reason == "fall through all rules"

    data_file.write_text(json.dumps(fake_data_set(set_enabled("returns-true", False, "2024-06-01T00:00:00.000Z"))))
    changed_at = time.time()
    assert wait_until(lambda: client.variation("returns-true", TESTER, None) is False, timeout=3)
    assert time.time() - changed_at < 1.5

    # A broken edit is ignored: the SDK keeps the last good data.
    data_file.write_text("{ not json")
    time.sleep(0.6)
    assert client.variation("returns-true", TESTER, None) is False
    assert "datafile-rejected" in agent.read_stderr()


def test_data_file_updated_by_a_symlink_swap_is_reloaded(tmp_path, start_agent, sdk_clients):
    # How Kubernetes updates a ConfigMap volume: data.json -> ..data/data.json, then ..data is swapped atomically.
    import os
    first, second = tmp_path / "v1", tmp_path / "v2"
    first.mkdir()
    second.mkdir()
    (first / "data.json").write_text(json.dumps(fake_data_set()))
    (second / "data.json").write_text(json.dumps(fake_data_set(set_enabled("returns-true", False, "2024-06-01T00:00:00.000Z"))))
    os.symlink("v1", tmp_path / "..data")
    os.symlink("..data/data.json", tmp_path / "data.json")
    agent = start_agent({"Mode": "offline", "DataFile": str(tmp_path / "data.json")})
    client = sdk_clients(agent)
    assert client.initialize
    assert client.variation("returns-true", TESTER, None) is True
    os.symlink("v2", tmp_path / "..data_tmp")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert wait_until(lambda: client.variation("returns-true", TESTER, None) is False, timeout=3)


def test_manual_mode_bootstrap_then_change(start_agent, sdk_clients):
    agent = start_agent({"Mode": "manual", "ApiKey": API_KEY})
    status, body = agent.bootstrap(fake_data_set())
    assert status == 200, body
    assert json.loads(body) == {"serves": "webapp:dev", "dataVersion": 1674885485421}
    client = sdk_clients(agent)
    assert client.initialize
    assert client.variation("returns-true", TESTER, None) is True

    status, _ = agent.bootstrap(fake_data_set(set_enabled("returns-true", False, "2024-06-01T00:00:00.000Z")))
    assert status == 200
    changed_at = time.time()
    assert wait_until(lambda: client.variation("returns-true", TESTER, None) is False, timeout=3)
    assert time.time() - changed_at < 1.0

    # A bad bootstrap is refused with a reason; the SDK keeps its data.
    status, body = agent.bootstrap({"eventType": "rp_full", "items": [{"envId": "not-a-guid"}]})
    assert status == 400 and "envId" in json.loads(body)["error"]
    assert agent.bootstrap(fake_data_set(), api_key="rp-wrong")[0] == 401
    assert client.variation("returns-true", TESTER, None) is False


def test_sdk_that_connects_before_any_data_retries_and_initialises_after_bootstrap(start_agent, sdk_clients):
    agent = start_agent({"Mode": "manual", "ApiKey": API_KEY})
    assert agent.request("GET", "/health/readiness")[0] == 503
    client = sdk_clients(agent, start_wait=0.5)
    assert not client.initialize
    assert agent.bootstrap(fake_data_set())[0] == 200
    # The SDK was closed with 1011 and reconnects with its own backoff (1-2 s first).
    assert wait_until(lambda: client.initialize, timeout=15)
    assert client.variation("return-10p-true", TESTER, None) is False


def test_insights_from_the_sdk_are_accepted(start_agent, sdk_clients):
    agent = start_agent({"Mode": "offline"})  # embedded demo data set
    demo_server_secret = "Gz6KDEEvKkyKUW0OK38cEQVZ4aW159H0yfCi98Oh2eAQ"
    assert agent.request("POST", "/api/public/insight/track", [], {"Authorization": demo_server_secret})[0] == 200
    # A well-formed secret the agent does not hold (the fake data set's), and none at all.
    assert agent.request("POST", "/api/public/insight/track", [], {"Authorization": SERVER_SECRET})[0] == 401
    assert agent.request("POST", "/api/public/insight/track", [], {})[0] == 401


def test_invalid_configuration_exits_2_naming_each_key_before_binding(tmp_path):
    port = free_port()
    from conftest import AGENT_BIN
    result = subprocess.run([AGENT_BIN, "--port", "99999", "--mode", "sideways", "--log-level", "loud"],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path,
                            env={"Port": str(port), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("configuration error: Port:") for line in lines)
    assert any(line.startswith("configuration error: Mode:") for line in lines)
    assert any(line.startswith("configuration error: LogLevel:") for line in lines)
    result = subprocess.run([AGENT_BIN, "--mode", "manual"], capture_output=True, text=True, timeout=30, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "ApiKey: is required in manual mode" in result.stderr
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"Mode": "manual", "ApiKey": API_KEY, "Prot": 1}))
    result = subprocess.run([AGENT_BIN, "--config", str(config)], capture_output=True, text=True, timeout=30,
                            cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "Prot: unknown key" in result.stderr


def test_config_file_environment_and_option_precedence(tmp_path, start_agent):
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"Mode": "manual", "ApiKey": "rp-from-file"}))
    agent = start_agent({"ApiKey": "rp-from-env"}, args=["--config", str(config)])
    assert agent.request("GET", "/api/public/proxy/status", headers={"Authorization": "rp-from-env"})[0] == 200
    assert agent.request("GET", "/api/public/proxy/status", headers={"Authorization": "rp-from-file"})[0] == 401
    agent2 = start_agent({"ApiKey": "rp-from-env"}, args=["--config", str(config), "--api-key", "rp-from-option"])
    assert agent2.request("GET", "/api/public/proxy/status", headers={"Authorization": "rp-from-option"})[0] == 200


def test_sigterm_closes_sdk_sockets_with_1001_and_exits_0(start_agent):
    agent = start_agent({"Mode": "offline"})
    # A raw WebSocket client stands in for an SDK so the close code can be read; the token is the SDK's own.
    from fbclient.utils import build_token as token
    demo_secret = "Gz6KDEEvKkyKUW0OK38cEQVZ4aW159H0yfCi98Oh2eAQ"
    ws = websocket.create_connection(f"{agent.ws_url}/streaming?type=server&token={token(demo_secret)}", timeout=5)
    ws.send(json.dumps({"messageType": "data-sync", "data": {"timestamp": 0}}))
    first = json.loads(ws.recv())
    assert first["data"]["eventType"] == "full"
    started = time.time()
    agent.proc.send_signal(signal.SIGTERM)
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(data[:2], "big") == 1001
    ws.close()
    assert agent.proc.wait(timeout=10) == 0
    assert time.time() - started < 10


def test_logs_are_one_json_object_per_line(start_agent, sdk_clients):
    agent = start_agent({"Mode": "offline", "LogLevel": "debug"})
    client = sdk_clients(agent, secret="Gz6KDEEvKkyKUW0OK38cEQVZ4aW159H0yfCi98Oh2eAQ")
    assert client.initialize
    agent.stop()
    lines = [line for line in agent.read_stderr().splitlines() if line.strip()]
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"ts", "level", "msg"} <= entry.keys()
    assert any(json.loads(line).get("event") == "listening" for line in lines)
