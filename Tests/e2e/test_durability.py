"""featbit.db end to end: restarts, copying a node's db, and kill -9 in the middle of a stream of upstream patches."""
import json
import random
import shutil
import signal
import sqlite3
import threading
import time

import websocket
from fbclient.utils import build_token

from conftest import API_KEY, SERVER_SECRET, TESTER, wait_until
from test_auto_mode import auto_agent, flag, readiness, status


def test_restart_serves_the_db_at_once_then_syncs_only_what_it_missed(tmp_path, start_simulator, start_agent, sdk_clients):
    db = tmp_path / "featbit.db"
    sim = start_simulator()
    agent = auto_agent(start_agent, sim, DbPath=str(db))
    assert wait_until(lambda: readiness(agent) == (200, "Healthy"), timeout=10)
    assert agent.stop() == 0

    # Upstream down: the restarted agent serves what featbit.db holds, flagged as possibly stale.
    sim.control("POST", "down")
    agent = auto_agent(start_agent, sim, DbPath=str(db))
    assert readiness(agent) == (200, "Degraded")
    assert status(agent)["dataVersion"] == 1674885485421
    client = sdk_clients(agent)
    assert client.initialize
    assert client.variation("return-10p-true", TESTER, None) is False

    changed = flag(sim, "returns-true")
    changed["isEnabled"] = False
    sim.control("PUT", "flags?touch=true", changed)
    full_before = sim.control("GET", "state")["rpFullSent"]
    sim.control("POST", "up")
    assert wait_until(lambda: client.variation("returns-true", TESTER, None) is False, timeout=20)
    assert wait_until(lambda: readiness(agent) == (200, "Healthy"), timeout=5)
    # It sent its stored versions, so the server answered with a patch, not the whole data set.
    state = sim.control("GET", "state")
    assert state["rpFullSent"] == full_before and state["rpPatchSent"] >= 1


def test_a_copied_db_serves_on_another_node_without_any_upstream(tmp_path, start_simulator, start_agent, sdk_clients):
    db = tmp_path / "node1" / "featbit.db"
    db.parent.mkdir()
    sim = start_simulator()
    agent = auto_agent(start_agent, sim, DbPath=str(db))
    assert wait_until(lambda: readiness(agent) == (200, "Healthy"), timeout=10)
    assert agent.stop() == 0
    sim.stop()

    copy = tmp_path / "node2" / "featbit.db"
    copy.parent.mkdir()
    shutil.copy(db, copy)
    other = start_agent({"Mode": "offline", "DbPath": str(copy)})
    assert readiness(other) == (200, "Healthy")
    client = sdk_clients(other)
    assert client.initialize
    assert client.variation("return-10p-true", TESTER, None) is False
    assert client.variation("returns-true", TESTER, None) is True


def latest_version(agent):
    code, body = agent.request("GET", "/api/public/sdk/server/latest-all", headers={"Authorization": SERVER_SECRET})
    assert code == 200
    flags = json.loads(body)["data"]["featureFlags"]
    return {f["key"]: f["updatedAt"] for f in flags}


def test_kill_9_during_a_stream_of_upstream_patches_loses_nothing_acknowledged(tmp_path, start_simulator, start_agent):
    """20 times: kill -9 the agent at a random moment while the simulator streams patches (1,000 in all); every
    change an SDK had received from the agent must be in featbit.db afterwards, and the db must pass integrity_check."""
    rng = random.Random(20261125)
    db = tmp_path / "featbit.db"
    sim = start_simulator()
    target = flag(sim, "returns-true")
    sent = {"count": 0}

    def stream_patches(count):
        for _ in range(count):
            target["isEnabled"] = not target["isEnabled"]
            sim.control("PUT", "flags?touch=true", target)
            sent["count"] += 1
            time.sleep(0.01)

    rounds = 0
    for rounds in range(20):
        agent = auto_agent(start_agent, sim, DbPath=str(db))
        assert wait_until(lambda: readiness(agent)[0] == 200, timeout=10)
        ws = websocket.create_connection(f"{agent.ws_url}/streaming?type=server&token={build_token(SERVER_SECRET)}",
                                         timeout=5)
        ws.send(json.dumps({"messageType": "data-sync", "data": {"timestamp": 0}}))
        # 50 upstream patches per round (1,000 in all); the agent is killed somewhere in the middle of them.
        streamer = threading.Thread(target=stream_patches, args=(50,), daemon=True)
        streamer.start()
        acknowledged = None
        deadline = time.time() + rng.uniform(0.1, 0.6)
        ws.settimeout(0.02)
        while time.time() < deadline:
            try:
                message = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            for f in message["data"]["featureFlags"]:
                if f["key"] == "returns-true":
                    acknowledged = max(acknowledged or "", f["updatedAt"])
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait()
        ws.close()
        streamer.join(timeout=30)

        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # Restart from the db alone (no upstream) and read back what it serves.
        reader = start_agent({"Mode": "offline", "DbPath": str(db)})
        served = latest_version(reader)["returns-true"]
        reader.stop()
        assert acknowledged is not None
        assert served >= acknowledged, f"round {rounds}: SDK saw {acknowledged}, db has {served}"
    assert rounds == 19
    assert sent["count"] == 1000
