"""TLS end to end (issue 16): the agent's port over HTTPS/WSS with the real FeatBit Python SDK, certificate rotation
while SDKs stay connected, configuration errors, mutual TLS between mesh peers, and auto mode against a featbit-sim
behind a private CA. Certificates come from a throwaway CA generated into each test's tmp dir (pki.py)."""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import websocket  # websocket-client, installed with fb-python-sdk

from conftest import AGENT_BIN, API_KEY, SERVER_SECRET, TESTER, fake_data_set, free_port, set_enabled, wait_until
from mesh import Mesh, wait_for
from pki import CA


def start_tls_agent(start_agent, ca, cert, key, env=None, timeout=20):
    """An agent whose port speaks TLS; waits until HTTPS answers."""
    settings = {"TlsCertFile": str(cert), "TlsKeyFile": str(key)}
    settings.update(env or {})
    agent = start_agent(settings, wait=False)
    agent.url = f"https://127.0.0.1:{agent.port}"
    agent.ws_url = f"wss://127.0.0.1:{agent.port}"
    agent.ssl_context = ssl.create_default_context(cafile=str(ca.cert))
    return agent.wait_listening(timeout)


def served_common_name(port, ca):
    """The CN of the certificate a new TLS connection to the port is given (verified against `ca`)."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])
            return subject["commonName"]


def open_wss_sdk(agent, ca):
    """A raw server SDK over wss:// that has received its full data set."""
    from fbclient.utils import build_token
    ws = websocket.create_connection(f"{agent.ws_url}/streaming?type=server&token={build_token(SERVER_SECRET)}",
                                     timeout=5, sslopt={"ca_certs": str(ca.cert)})
    ws.send(json.dumps({"messageType": "data-sync", "data": {"timestamp": 0}}))
    message = json.loads(ws.recv())
    assert message["messageType"] == "data-sync" and message["data"]["eventType"] == "full"
    return ws


def wss_sdk_client(agent, ca):
    from fbclient.client import FBClient
    from fbclient.config import Config, HTTPConfig, WebSocketConfig
    config = Config(SERVER_SECRET, event_url=agent.url, streaming_url=agent.ws_url,
                    websocket=WebSocketConfig(sslopt={"ca_certs": str(ca.cert)}),
                    http=HTTPConfig(ca_certs=str(ca.cert)))
    return FBClient(config, start_wait=10)


def offloaded_connections(agent):
    """featbit_agent_tls_connections_offloaded_total: TLS 1.3 connections moved off NIOSSL (TLS13RecordLayer)."""
    status, body = agent.request("GET", "/metrics")
    assert status == 200
    for line in body.splitlines():
        if line.startswith("featbit_agent_tls_connections_offloaded_total"):
            return int(float(line.split()[-1]))
    return 0


def replace_file(source, target):
    """Atomically replaces `target` with a copy of `source` (how a secret volume or an ACME client rotates)."""
    staging = target.with_name(target.name + ".new")
    shutil.copyfile(source, staging)
    os.replace(staging, target)


def test_the_python_sdk_works_over_wss_and_plaintext_on_the_tls_port_is_refused(tmp_path, start_agent):
    ca = CA(tmp_path / "pki")
    cert, key = ca.issue("agent")
    data_file = tmp_path / "dump.json"
    data_file.write_text(json.dumps(fake_data_set()))
    agent = start_tls_agent(start_agent, ca, cert, key, {"Mode": "offline", "DataFile": str(data_file), "ApiKey": API_KEY})
    assert "streaming URL wss://" in open(agent.stdout.name).read()

    client = wss_sdk_client(agent, ca)
    try:
        assert client.initialize
        assert client.variation("returns-true", TESTER, None) is True
        # Quiet for longer than TLSIdlePages' 1 s: the socket (TLS 1.3) has left NIOSSL for the agent's record layer,
        # and the push that follows must still arrive whole.
        time.sleep(2.5)
        assert offloaded_connections(agent) >= 1
        data_file.write_text(json.dumps(fake_data_set(set_enabled("returns-true", False, "2024-06-01T00:00:00.000Z"))))
        assert wait_until(lambda: client.variation("returns-true", TESTER, None) is False, timeout=5)
    finally:
        client.stop()
    assert agent.request("GET", "/api/public/proxy/status", headers={"Authorization": API_KEY})[0] == 200

    # HTTP and ws:// on the TLS port get no answer: the connection is logged and closed, the agent keeps serving.
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{agent.port}/health/liveness", timeout=5).read()
    with pytest.raises((websocket.WebSocketException, ConnectionError, OSError)):
        websocket.create_connection(f"ws://127.0.0.1:{agent.port}/streaming?type=server&token=x", timeout=5)
    # A client that does not trust the agent's CA fails its handshake.
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")
    assert wait_until(lambda: agent.read_stderr().count('"tls-handshake-failed"') >= 2, timeout=5)
    assert agent.request("GET", "/health/liveness") == (200, "Healthy")
    assert agent.proc.poll() is None


def openssl_session(agent, ca, options, steps, timeout=20):
    """Runs `openssl s_client` against the agent with `options`; `steps` are (stdin line, seconds to wait after).
    Answers everything it printed (with -msg: every TLS message in and out)."""
    proc = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{agent.port}", "-CAfile", str(ca.cert),
                             "-crlf", "-msg", *options],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)
        for line, wait in steps:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            time.sleep(wait)
        proc.stdin.close()  # s_client then sends close_notify and ends
        proc.wait(timeout=timeout)
        return proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


LIVENESS = "GET /health/liveness HTTP/1.1\nHost: agent"


def test_quiet_tls13_connections_leave_niossl_with_every_cipher_suite_and_key_update(tmp_path, start_agent):
    """Another TLS stack (OpenSSL's s_client) against the agent's own TLS 1.3 record layer: each of the three TLS 1.3
    suites, a KeyUpdate both ways once the connection has left NIOSSL, and the connections that must stay with
    NIOSSL (TLS 1.2; a KeyUpdate before the quiet time)."""
    ca = CA(tmp_path / "pki")
    cert, key = ca.issue("agent")
    data_file = tmp_path / "dump.json"
    data_file.write_text(json.dumps(fake_data_set()))
    agent = start_tls_agent(start_agent, ca, cert, key, {"Mode": "offline", "DataFile": str(data_file)})
    before = offloaded_connections(agent)
    for suite in ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]:
        out = openssl_session(agent, ca, ["-ciphersuites", suite], [
            (LIVENESS + "\n", 2.5),      # answered by NIOSSL, then quiet: the connection leaves it
            (LIVENESS + "\n", 0.5),      # answered by TLS13RecordLayer
            ("K", 0.5),                  # KeyUpdate, update_requested: the agent must answer with its own
            (LIVENESS + "\n", 0.5),
            ("k", 0.5),                  # KeyUpdate, not requested
            (LIVENESS + "\n", 0.5),
        ])
        assert f"Cipher is {suite}" in out, out
        assert out.count("Healthy") == 4, out
        assert "<<< TLS 1.3, Handshake [length 0005], KeyUpdate" in out, "the agent answered the requested KeyUpdate"
        assert "alert" not in out.lower() or "close_notify" in out.lower(), out
        after = offloaded_connections(agent)
        assert after == before + 1, f"{suite}: the connection left NIOSSL"
        before = after

    # TLS 1.2 and a connection that updated its keys before the quiet time stay with NIOSSL, and work as ever.
    out = openssl_session(agent, ca, ["-tls1_2"], [(LIVENESS + "\n", 2.5), (LIVENESS + "\n", 0.5)])
    assert "New, TLSv1.2" in out and out.count("Healthy") == 2, out
    # (The KeyUpdate is the client's first record after the handshake: a connection never leaves NIOSSL before the
    # client's first application record, so this one cannot have left before it.)
    out = openssl_session(agent, ca, [], [("K", 0.3), (LIVENESS + "\n", 2.5), (LIVENESS + "\n", 0.5)])
    assert "<<< TLS 1.3, Handshake [length 0005], KeyUpdate" in out and out.count("Healthy") == 2, out
    assert offloaded_connections(agent) == before
    assert agent.proc.poll() is None


def start_rotatable_tls_agent(tmp_path, start_agent, ca, first):
    """An offline agent serving `first` (cert, key) from copies in tmp_path/live, which a test then replaces:
    (agent, live cert path, live key path, data file)."""
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "tls.crt", live / "tls.key"
    shutil.copyfile(first[0], cert)
    shutil.copyfile(first[1], key)
    data_file = tmp_path / "dump.json"
    data_file.write_text(json.dumps(fake_data_set()))
    agent = start_tls_agent(start_agent, ca, cert, key, {"Mode": "offline", "DataFile": str(data_file)})
    return agent, cert, key, data_file


def test_certificate_rotation_reaches_new_connections_and_keeps_open_sockets(tmp_path, start_agent):
    ca = CA(tmp_path / "pki")
    first, second, third = ca.issue("agent-first"), ca.issue("agent-second"), ca.issue("agent-third")
    agent, cert, key, data_file = start_rotatable_tls_agent(tmp_path, start_agent, ca, first)
    assert served_common_name(agent.port, ca) == "agent-first"
    old_socket = open_wss_sdk(agent, ca)
    client = wss_sdk_client(agent, ca)
    try:
        assert client.initialize and client.variation("returns-true", TESTER, None) is True

        replace_file(second[1], key)
        replace_file(second[0], cert)
        assert wait_until(lambda: served_common_name(agent.port, ca) == "agent-second", timeout=15)
        assert '"tls-reloaded"' in agent.read_stderr()

        # The sockets opened under the first certificate are still up and still get pushes.
        data_file.write_text(json.dumps(fake_data_set(set_enabled("returns-true", False, "2024-06-01T00:00:00.000Z"))))
        old_socket.settimeout(5)
        push = json.loads(old_socket.recv())
        assert push["messageType"] == "data-sync" and push["data"]["eventType"] == "patch"
        assert any(f["key"] == "returns-true" and f["isEnabled"] is False for f in push["data"]["featureFlags"])
        assert wait_until(lambda: client.variation("returns-true", TESTER, None) is False, timeout=5)

        # A broken rotation (a certificate whose key is not there) is rejected: new connections keep the second.
        replace_file(third[0], cert)
        assert wait_until(lambda: '"tls-reload-rejected"' in agent.read_stderr(), timeout=15)
        assert served_common_name(agent.port, ca) == "agent-second"
        # ...until the matching key arrives.
        replace_file(third[1], key)
        assert wait_until(lambda: served_common_name(agent.port, ca) == "agent-third", timeout=15)
        old_socket.send(json.dumps({"messageType": "ping", "data": {}}))
        assert json.loads(old_socket.recv())["messageType"] == "pong"
    finally:
        old_socket.close()
        client.stop()


def test_sighup_checks_the_tls_files_at_once_and_never_stops_the_agent(tmp_path, start_agent):
    ca = CA(tmp_path / "pki")
    first, second = ca.issue("agent-first"), ca.issue("agent-second")
    agent, cert, key, _ = start_rotatable_tls_agent(tmp_path, start_agent, ca, first)
    sdk = open_wss_sdk(agent, ca)
    try:
        # Unchanged files: the signal is logged and so is the check (only a SIGHUP logs an unchanged check).
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: '"tls-unchanged"' in agent.read_stderr(), timeout=5)
        assert '"reload-requested"' in agent.read_stderr()
        # A rotation followed by SIGHUP (what `systemctl reload` does): new connections get the new certificate.
        replace_file(second[1], key)
        replace_file(second[0], cert)
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: served_common_name(agent.port, ca) == "agent-second", timeout=5)
        assert agent.read_stderr().count('"reload-requested"') == 2
        # The open SDK socket and the process are untouched.
        sdk.settimeout(5)
        sdk.send(json.dumps({"messageType": "ping", "data": {}}))
        assert json.loads(sdk.recv())["messageType"] == "pong"
        assert agent.proc.poll() is None
    finally:
        sdk.close()


def test_sighup_does_not_stop_an_agent_without_tls(start_agent):
    agent = start_agent({"Mode": "manual", "ApiKey": API_KEY})
    for count in range(1, 4):  # one at a time: signals sent together may arrive as one
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: agent.read_stderr().count('"reload-requested"') == count, timeout=5)
    assert "no TLS files to check" in agent.read_stderr()
    assert agent.request("GET", "/health/liveness") == (200, "Healthy")
    assert agent.proc.poll() is None


def run_check(tmp_path, env, args=("--check-config",)):
    full_env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    full_env.update({"DbPath": "none", "Port": str(free_port()), "BindAddress": "127.0.0.1"})
    full_env.update({k: str(v) for k, v in env.items()})
    return subprocess.run([AGENT_BIN, *args], env=full_env, cwd=tmp_path, capture_output=True, text=True, timeout=30)


def test_missing_unreadable_or_mismatched_tls_files_exit_2_naming_the_key(tmp_path):
    ca = CA(tmp_path / "pki")
    (cert, key), (other_cert, other_key) = ca.issue("agent"), ca.issue("other")
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    directory = tmp_path / "a-directory"
    directory.mkdir()
    mesh = {"Peers": "n2@127.0.0.1:7102", "ClusterAddress": "127.0.0.1:7101", "ClusterSecret": "mesh-secret-123",
            "NodeId": "n1", "DbPath": str(tmp_path / "n1.db"),
            "ClusterTlsCertFile": cert, "ClusterTlsKeyFile": key, "ClusterTlsCaFile": ca.cert}
    cases = [
        ({"TlsCertFile": tmp_path / "missing.pem", "TlsKeyFile": key}, "TlsCertFile: ", "does not exist"),
        ({"TlsCertFile": cert, "TlsKeyFile": directory}, "TlsKeyFile: ", "cannot be read"),
        ({"TlsCertFile": cert, "TlsKeyFile": other_key}, "TlsKeyFile: ", "does not match the certificate"),
        ({"TlsCertFile": not_pem, "TlsKeyFile": key}, "TlsCertFile: ", "is not a PEM certificate file"),
        ({"TlsCertFile": cert}, "TlsKeyFile: ", "is required with TlsCertFile"),
        (dict(mesh, ClusterTlsCaFile=not_pem), "ClusterTlsCaFile: ", "is not a PEM certificate file"),
        (dict(mesh, ClusterTlsKeyFile=other_key), "ClusterTlsKeyFile: ", "does not match"),
        ({k: v for k, v in mesh.items() if k != "ClusterTlsCaFile"}, "ClusterTlsCaFile: ", "is required"),
        ({"UpstreamCaFile": tmp_path / "missing-ca.pem"}, "UpstreamCaFile: ", "does not exist"),
    ]
    for env, key_name, reason in cases:
        result = run_check(tmp_path, env)
        assert result.returncode == 2, (env, result.stdout, result.stderr)
        line = next((l for l in result.stderr.splitlines() if key_name in l), "")
        assert reason in line, (env, result.stderr)
    # A good pair passes, and --check-config says TLS is on.
    result = run_check(tmp_path, {"TlsCertFile": cert, "TlsKeyFile": key})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tls"] is True
    # Without --check-config the agent exits 2 before binding anything.
    result = run_check(tmp_path, {"TlsCertFile": cert, "TlsKeyFile": other_key}, args=("--tls-cert-file", str(cert)))
    assert result.returncode == 2 and "TlsKeyFile: " in result.stderr


def test_a_mesh_with_mutual_tls_never_admits_a_node_with_a_certificate_from_another_ca(tmp_path):
    trusted, foreign = CA(tmp_path / "pki", "cluster"), CA(tmp_path / "pki", "foreign")
    mesh = Mesh(tmp_path / "mesh", n=3, mode="manual", proxies=False, profile="lan")

    def tls_args(ca, node):
        cert, key = ca.issue(node.id)
        return ["--cluster-tls-cert-file", str(cert), "--cluster-tls-key-file", str(key),
                "--cluster-tls-ca-file", str(trusted.cert)]
    try:
        for node in mesh.nodes:
            node.extra_args = tls_args(trusted, node)
        mesh.start()
        n1, n2, n3 = mesh.nodes
        leader, _ = mesh.wait_quorum_leader(10 * mesh.E)
        assert leader.bootstrap(fake_data_set())[0] == 200
        for node in mesh.nodes:
            mesh.wait_caught_up(node, timeout=10)

        # n3 comes back with a certificate from another CA; it still knows the ClusterSecret and its node id, and it
        # trusts the cluster CA. Neither side completes a TLS handshake: it never rejoins.
        assert n3.terminate()[0] == 0
        n3.extra_args = tls_args(foreign, n3)
        n3.restart()
        rest = [n1, n2]
        leader, _ = mesh.wait_quorum_leader(10 * mesh.E, exclude=[n3])
        assert leader in rest
        edited = fake_data_set(set_enabled("returns-true", False, "2030-01-01T00:00:00.000Z"))
        assert leader.bootstrap(edited)[0] == 200
        version = (leader.status() or {}).get("dataVersion")
        for node in rest:
            wait_for(lambda: (node.status() or {}).get("dataVersion") == version, 10,
                     message=f"{node.id} to get the change over the TLS peer link")
        time.sleep(3 * mesh.E)
        c3 = n3.status()["cluster"]
        assert not c3.get("leaderId") and c3["role"] != "leader", c3
        assert not any(p["reachable"] for p in c3["peers"]), c3
        assert n3.status()["dataVersion"] != version
        for node in rest:
            peers = {p["nodeId"]: p for p in node.cluster()["peers"]}
            assert peers["n3"]["reachable"] is False, peers
        assert n1.log_events("mesh-tls-refused") or n2.log_events("mesh-tls-refused"), \
            "the nodes did not log refusing n3's certificate"
        assert n3.log_events("mesh-tls-refused"), "n3 did not log its failed handshakes"

        # Plaintext on a TLS peer port is refused and logged too.
        before = len(n1.log_events("mesh-tls-refused"))
        with socket.create_connection(("127.0.0.1", n1.cluster_port), timeout=5) as raw:
            raw.sendall(b"plaintext that is not a TLS ClientHello\r\n\r\n")
            raw.settimeout(5)
            try:
                while raw.recv(4096):
                    pass
            except (ConnectionError, socket.timeout):
                pass
        wait_for(lambda: len(n1.log_events("mesh-tls-refused")) > before, 5, message="the plaintext peer to be logged")
    except Exception:
        mesh.dump()
        raise
    finally:
        mesh.close()


def test_auto_mode_syncs_from_a_tls_featbit_server_trusted_through_upstream_ca_file(tmp_path, start_simulator,
                                                                                   start_agent, sdk_clients):
    ca = CA(tmp_path / "pki", "private")
    cert, key = ca.issue("featbit")
    sim = start_simulator(tls=(cert, key, ca.cert))
    assert sim.ws_url.startswith("wss://")
    agent = start_agent({"Mode": "auto", "StreamingUri": sim.ws_url, "ApiKey": API_KEY, "AgentId": "tls-agent",
                         "UpstreamCaFile": str(ca.cert)})

    def status(a):
        code, body = a.request("GET", "/api/public/proxy/status", headers={"Authorization": API_KEY})
        assert code == 200
        return json.loads(body)
    assert wait_until(lambda: status(agent)["syncState"] == "Stable", timeout=15), agent.read_stderr()
    client = sdk_clients(agent)
    assert client.initialize and client.variation("returns-true", TESTER, None) is True
    data = sim.control("GET", "data")
    changed = next(f for item in data["items"] for f in item["featureFlags"] if f["key"] == "returns-true")
    changed["isEnabled"] = False
    sim.control("PUT", "flags?touch=true", changed)
    assert wait_until(lambda: client.variation("returns-true", TESTER, None) is False, timeout=5)
    # Registration went over https:// with the same trust.
    assert wait_until(lambda: any(s.get("agentId") == "tls-agent" for s in sim.control("GET", "agent-status")),
                      timeout=15)
    assert "upstreamTls" not in status(agent).get("problems", {})

    # Without UpstreamCaFile the private certificate is not trusted: logged with its reason, shown in the status.
    untrusting = start_agent({"Mode": "auto", "StreamingUri": sim.ws_url, "ApiKey": API_KEY, "AgentId": "no-ca"})
    assert wait_until(lambda: "upstreamTls" in status(untrusting).get("problems", {}), timeout=15), untrusting.read_stderr()
    problem = status(untrusting).get("problems", {})["upstreamTls"]
    print("upstream TLS problem shown:", problem)
    assert "UpstreamCaFile" in problem and "CERTIFICATE_VERIFY_FAILED" in problem, problem
    assert status(untrusting)["syncState"] != "Stable"
    assert '"upstream-tls-failed"' in untrusting.read_stderr()
