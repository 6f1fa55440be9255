"""End-to-end harness: runs the built featbit-agent binary on 127.0.0.1 and a free port, and the real FeatBit
Python SDK (fb-python-sdk from PyPI) against it. Every process started here is stopped by its fixture."""
import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "fixtures"
AGENT_BIN = os.environ.get("FEATBIT_AGENT_BIN", str(ROOT / ".build" / "debug" / "featbit-agent"))

ENV_ID = "226b9bf8-4af3-4ffa-9b01-162270e4cd40"
SERVER_SECRET = "E0ZC__zC8EeQoxEDF-iR9g-JtrIvNK-k-bARYicOTNQA"
CLIENT_SECRET = "0kqduqWZkESt2VSgsd9tEQ-JtrIvNK-k-bARYicOTNQA"
API_KEY = "rp-MDcwNTEzNDExNzQ3MQtXO7IPcN6U-z5fAktj18CQ"
TESTER = {"key": "3db19c81-e149-4b97-8a0d-79d34531fe59", "name": "tester",
          "email": "tester@featbit.com", "role": "qa", "location": "127.0.0.1"}


def secret_leaks(text, extra=()):
    """The secrets that appear in `text` (an agent's logs): SDK secrets (or their key half, the first 22 characters;
    the rest is the environment id, which is public), the ApiKey, and any `extra` (a ClusterSecret). Every e2e run
    checks every agent's stdout and stderr with this when the agent is stopped."""
    found = []
    for secret in (SERVER_SECRET, CLIENT_SECRET):
        if secret in text or secret[:22] in text:
            found.append(secret)
    for secret in (API_KEY, API_KEY[3:], *extra):
        if secret and secret in text:
            found.append(secret)
    return found


_handed_out = set()
_port_lock = threading.Lock()


def free_port():
    """A free 127.0.0.1 port below the kernel's ephemeral range, never handed out twice by this process.

    A port is chosen before the process that listens on it starts; one from the ephemeral range (what binding port 0
    gives) can meanwhile become the source port of any outbound connection — a mesh node dialing a peer, an SDK, a
    link proxy — and the listener then fails to bind."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    with _port_lock:
        for _ in range(1000):
            port = rng.randrange(max(1024, low - 12000), low)
            if port in _handed_out:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_data_set(edit=None):
    """FeatBit's fake data set in the bootstrap/backup format, optionally edited."""
    flags = json.loads((FIXTURES / "featbit-fake-data" / "flags.json").read_text())
    segments = json.loads((FIXTURES / "featbit-fake-data" / "segments.json").read_text())
    if edit:
        edit(flags, segments)
    secrets = [
        {"type": "server", "projectKey": "webapp", "envId": ENV_ID, "envKey": "dev", "value": SERVER_SECRET},
        {"type": "client", "projectKey": "webapp", "envId": ENV_ID, "envKey": "dev", "value": CLIENT_SECRET},
    ]
    return {"eventType": "rp_full", "items": [{"envId": ENV_ID, "secrets": secrets, "featureFlags": flags, "segments": segments}]}


def set_enabled(key, enabled, updated_at):
    """An edit for fake_data_set: the flag `key` switched on or off at a new version."""
    def edit(flags, _segments):
        for flag in flags:
            if flag["key"] == key:
                flag["isEnabled"] = enabled
                flag["updatedAt"] = updated_at
    return edit


class Agent:
    def __init__(self, tmp_path, env=None, args=None):
        self.port = free_port()
        self.stdout = open(tmp_path / f"agent-{self.port}.out", "w+")
        self.stderr = open(tmp_path / f"agent-{self.port}.err", "w+")
        full_env = {k: v for k, v in os.environ.items() if k not in ("Mode", "ApiKey", "DataFile", "DbPath", "Port")}
        full_env.update({"Port": str(self.port), "BindAddress": "127.0.0.1", "DbPath": "none"})
        full_env.update(env or {})
        self.proc = subprocess.Popen([AGENT_BIN] + (args or []), env=full_env, stdout=self.stdout, stderr=self.stderr,
                                     cwd=tmp_path)
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        # An ssl.SSLContext trusting the agent's certificate, once the agent serves TLS (test_tls.start_tls_agent).
        self.ssl_context = None

    def wait_listening(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}: {self.read_stderr()}")
            try:
                urllib.request.urlopen(self.url + "/health/liveness", timeout=1, context=self.ssl_context).read()
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        raise AssertionError("agent did not start listening")

    def request(self, method, path, body=None, headers=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.ssl_context) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def bootstrap(self, data_set, api_key=API_KEY):
        return self.request("POST", "/api/public/proxy/bootstrap", data_set,
                            {"Authorization": api_key, "Content-Type": "application/json"})

    def read_stderr(self):
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def start_agent(tmp_path):
    agents = []

    def start(env=None, args=None, wait=True):
        agent = Agent(tmp_path, env, args)
        agents.append(agent)
        return agent.wait_listening() if wait else agent

    yield start
    for agent in agents:
        agent.stop(signal.SIGKILL if agent.proc.poll() is None else signal.SIGTERM)
    for agent in agents:
        agent.stdout.flush()
        agent.stdout.seek(0)
        leaks = secret_leaks(agent.read_stderr() + agent.stdout.read())
        assert not leaks, f"an agent logged a secret: {leaks}"


@pytest.fixture
def sdk_clients():
    from fbclient.client import FBClient
    from fbclient.config import Config
    clients = []

    def make(agent, secret=SERVER_SECRET, start_wait=10):
        client = FBClient(Config(secret, event_url=agent.url, streaming_url=agent.ws_url), start_wait=start_wait)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.stop()


def wait_until(predicate, timeout=5.0, interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


SIM_BIN = os.environ.get("FEATBIT_SIM_BIN", str(pathlib.Path(AGENT_BIN).parent / "featbit-sim"))


class Simulator:
    """The in-repo FeatBit evaluation-server simulator (featbit-sim) on 127.0.0.1 and a free port."""

    def __init__(self, tmp_path, data_set, api_key=API_KEY, tls=None):
        """`tls`: (certificate file, key file, CA file) to serve HTTPS and WSS only, trusted through that CA."""
        data_file = tmp_path / f"sim-data-{time.time_ns()}.json"
        data_file.write_text(json.dumps(data_set))
        self.stderr = open(tmp_path / f"sim-{time.time_ns()}.err", "w+")
        tls_args = ["--tls-cert-file", str(tls[0]), "--tls-key-file", str(tls[1])] if tls else []
        self.proc = subprocess.Popen([SIM_BIN, "--host", "127.0.0.1", "--port", "0", "--data-file", str(data_file),
                                      "--api-key", api_key, *tls_args], stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True)
        deadline = time.time() + 20
        self.port = None
        while time.time() < deadline and self.port is None:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "listening on port" in line:
                self.port = int(line.strip().rsplit(" ", 1)[1])
        if self.port is None:
            self.proc.kill()
            raise AssertionError("featbit-sim did not start")
        secure = "s" if tls else ""
        self.url = f"http{secure}://127.0.0.1:{self.port}"
        # TLS needs a host name (SNI): the test certificate names localhost besides 127.0.0.1.
        self.ws_url = f"wss://localhost:{self.port}" if tls else f"ws://127.0.0.1:{self.port}"
        self.ssl_context = None
        if tls:
            import ssl
            self.ssl_context = ssl.create_default_context(cafile=str(tls[2]))

    def control(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + "/control/" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30, context=self.ssl_context) as resp:
            text = resp.read().decode()
            return json.loads(text) if text else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_simulator(tmp_path):
    sims = []

    def start(data_set=None, api_key=API_KEY, tls=None):
        sim = Simulator(tmp_path, data_set or fake_data_set(), api_key, tls)
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.stop()
