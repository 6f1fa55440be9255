"""scripts/soak-tls: WSS sockets and HTTPS keep-alive clients that keep going quiet for 0.05-1.8 s, either side of
TLSIdlePages' 250 ms (a TLS 1.3 connection leaves NIOSSL for TLS13RecordLayer) and 1 s (a TLS 1.2 connection's
buffer pages go), against an agent with TlsCertFile while its DataFile changes. A quarter of the clients speak TLS 1.2
(they stay with NIOSSL). Every byte that comes back must make sense."""
import http.client
import json
import random
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))
import websocket  # noqa: E402
from conftest import SERVER_SECRET, Agent, fake_data_set, set_enabled  # noqa: E402
from fbclient.utils import build_token  # noqa: E402
from pki import CA  # noqa: E402

SOCKETS, HTTP_CLIENTS, CHANGE_EVERY = 40, 20, 4.0
FLAG = "returns-true"
QUIET = (0.05, 1.8)


def tls_context(ca, index):
    """TLS 1.3 for three clients in four, TLS 1.2 for the fourth."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    if index % 4 == 3:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def main(seconds):
    work = Path(tempfile.mkdtemp(prefix="soak-tls-"))
    ca = CA(work / "pki")
    cert, key = ca.issue("agent")
    data_file = work / "dump.json"
    data_file.write_text(json.dumps(fake_data_set()))
    agent = Agent(work, {"Mode": "offline", "DataFile": str(data_file), "TlsCertFile": str(cert),
                         "TlsKeyFile": str(key), "LogLevel": "warning"})
    agent.url = f"https://127.0.0.1:{agent.port}"
    agent.ssl_context = ssl.create_default_context(cafile=str(ca.cert))
    agent.wait_listening()
    state = {"enabled": True, "changes": 0}
    counts = {"pongs": 0, "pushes": 0, "https": 0}
    failures = []
    lock = threading.Lock()
    stop = threading.Event()

    def fail(text):
        with lock:
            failures.append(text)
        stop.set()

    def wss(index):
        try:
            ws = websocket.create_connection(
                f"wss://127.0.0.1:{agent.port}/streaming?type=server&token={build_token(SERVER_SECRET)}",
                timeout=10, sslopt={"context": tls_context(ca, index)})
            ws.send(json.dumps({"messageType": "data-sync", "data": {"timestamp": 0}}))
            first = json.loads(ws.recv())
            if first["data"].get("eventType") != "full":
                return fail(f"socket {index}: first answer {first['data'].get('eventType')}")
            while not stop.is_set():
                time.sleep(random.uniform(*QUIET))
                ws.send(json.dumps({"messageType": "ping", "data": {}}))
                while True:  # pushes may come before the pong
                    message = json.loads(ws.recv())
                    if message["messageType"] == "pong":
                        with lock:
                            counts["pongs"] += 1
                        break
                    if message["messageType"] != "data-sync" or message["data"].get("eventType") != "patch":
                        return fail(f"socket {index}: unexpected {str(message)[:120]}")
                    if not any(f["key"] == FLAG for f in message["data"]["featureFlags"]):
                        return fail(f"socket {index}: a push without {FLAG}")
                    with lock:
                        counts["pushes"] += 1
            ws.close()
        except Exception as error:  # noqa: BLE001 - any error is the soak's finding
            fail(f"socket {index}: {type(error).__name__}: {error}")

    def https(index):
        try:
            connection = http.client.HTTPSConnection("127.0.0.1", agent.port, context=tls_context(ca, index), timeout=10)
            while not stop.is_set():
                time.sleep(random.uniform(*QUIET))
                connection.request("GET", "/api/public/sdk/server/latest-all", headers={"Authorization": SERVER_SECRET})
                response = connection.getresponse()
                body = json.loads(response.read())
                if response.status != 200 or body["messageType"] != "data-sync":
                    return fail(f"client {index}: {response.status} {str(body)[:120]}")
                if not any(f["key"] == FLAG for f in body["data"]["featureFlags"]):
                    return fail(f"client {index}: an answer without {FLAG}")
                with lock:
                    counts["https"] += 1
        except Exception as error:  # noqa: BLE001
            fail(f"client {index}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=wss, args=(i,)) for i in range(SOCKETS)]
    threads += [threading.Thread(target=https, args=(i,)) for i in range(HTTP_CLIENTS)]
    for thread in threads:
        thread.start()
    end = time.time() + seconds
    while time.time() < end and not stop.is_set():
        time.sleep(CHANGE_EVERY)
        state["enabled"] = not state["enabled"]
        state["changes"] += 1
        stamp = f"2030-01-01T00:{state['changes'] // 60:02d}:{state['changes'] % 60:02d}.000Z"
        data_file.write_text(json.dumps(fake_data_set(set_enabled(FLAG, state["enabled"], stamp))))
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    rss = next((int(line.split()[1]) for line in open(f"/proc/{agent.proc.pid}/status") if line.startswith("VmRSS")), 0)
    metrics = agent.request("GET", "/metrics")[1]
    offloaded = next((int(float(line.split()[-1])) for line in metrics.splitlines()
                      if line.startswith("featbit_agent_tls_connections_offloaded_total")), 0)
    agent.stop()
    expected_pushes = SOCKETS * max(0, state["changes"] - 1)
    print(json.dumps({"seconds": seconds, "wss_sockets": SOCKETS, "https_clients": HTTP_CLIENTS,
                      "data_file_changes": state["changes"], **counts, "pushes_expected_at_least": expected_pushes,
                      "tls_connections_offloaded": offloaded, "agent_rss_kib": rss, "failures": failures[:5]}))
    if not failures and counts["pushes"] < expected_pushes:
        failures.append(f"{counts['pushes']} pushes, expected at least {expected_pushes}")
        print(failures[-1])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60))
