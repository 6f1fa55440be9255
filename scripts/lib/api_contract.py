"""scripts/api-contract: the agent against docs/openapi.yaml with schemathesis (see that script)."""
import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API_KEY = "rp-api-contract"
# The demo data set's secrets (Sources/AgentCore/Model/DemoDataSet.swift), bootstrapped from the fuzz seed copy of it.
DATA_SET = os.path.join(ROOT, "Fuzz/seeds/data-set/demo")
SERVER_SECRET = "Gz6KDEEvKkyKUW0OK38cEQVZ4aW159H0yfCi98Oh2eAQ"
CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "ignored_auth",
])
# Each group runs with the credential its routes take; the admin group runs last, since its bootstraps replace the
# data set the SDK groups need.
GROUPS = [
    ("SDK endpoints", r"^/api/public/(sdk|featureflag|insight)/", f"Authorization: {SERVER_SECRET}"),
    ("OFREP", r"^/ofrep/", f"Authorization: Bearer {SERVER_SECRET}"),
    ("open endpoints", r"^/(health|metrics|ui|openapi|streaming)", None),
    ("admin API", r"^/api/(public/)?proxy/", f"Authorization: {API_KEY}"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=10) as answer:
        return answer.status, answer.read()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=int(os.environ.get("API_CONTRACT_EXAMPLES", "30")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("API_CONTRACT_SEED", "1")))
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    os.makedirs(os.path.join(ROOT, ".test-output"), exist_ok=True)
    log_path = os.path.join(ROOT, ".test-output", "api-contract-agent.log")
    with open(log_path, "wb") as log:
        agent = subprocess.Popen(
            [os.environ["FEATBIT_AGENT_BIN"], "--mode", "manual", "--api-key", API_KEY, "--bind", "127.0.0.1",
             "--port", str(port), "--db", "none", "--log-level", "warning",
             # schemathesis sends many requests without the key (negative cases, ignored_auth): with the limit on,
             # every admin request after the tenth would be 429 and nothing else of the admin API would be checked.
             "--admin-auth-failure-limit", "0"],
            stdout=log, stderr=subprocess.STDOUT)
    failed = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request(f"{base}/health/liveness")
                break
            except OSError:
                if agent.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"api-contract: the agent did not start (see {log_path})")
                time.sleep(0.1)
        with open(DATA_SET, "rb") as f:
            status, _ = request(f"{base}/api/public/proxy/bootstrap", f.read(),
                                {"Authorization": API_KEY, "Content-Type": "application/json"})
        assert status == 200, status
        schema = os.path.join(ROOT, "docs/openapi.yaml")
        for name, paths, header in GROUPS:
            print(f"-- {name}", flush=True)
            command = [os.path.join(ROOT, ".venv/bin/schemathesis"), "run", schema, "--url", base,
                       "--include-path-regex", paths, "--checks", CHECKS, "--max-examples", str(args.examples),
                       "--seed", str(args.seed), "--request-timeout", "10", "--no-color", "--suppress-health-check", "all"]
            if header:
                command += ["--header", header]
            if subprocess.run(command, cwd=ROOT).returncode != 0:
                failed.append(name)
        if agent.poll() is not None:
            failed.append(f"the agent exited with {agent.returncode}")
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
    if failed:
        sys.exit(f"api-contract: failed: {', '.join(failed)} (agent log: {log_path})")
    print("api-contract: every answer matched docs/openapi.yaml")


if __name__ == "__main__":
    main()
