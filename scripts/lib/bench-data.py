"""Writes the benchmark data sets: FeatBit's fake data set as a bootstrap body (initial.json), bodies that each
change one flag (change-N.json), and one changed flag alone (flag-N.json, for the simulator's control API)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1])
fixtures = pathlib.Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "featbit-fake-data"
env = "226b9bf8-4af3-4ffa-9b01-162270e4cd40"
secrets = [
    {"type": "server", "projectKey": "webapp", "envId": env, "envKey": "dev", "value": "E0ZC__zC8EeQoxEDF-iR9g-JtrIvNK-k-bARYicOTNQA"},
    {"type": "client", "projectKey": "webapp", "envId": env, "envKey": "dev", "value": "0kqduqWZkESt2VSgsd9tEQ-JtrIvNK-k-bARYicOTNQA"},
]
flags = json.loads((fixtures / "flags.json").read_text())
segments = json.loads((fixtures / "segments.json").read_text())


def body():
    return {"eventType": "rp_full", "items": [{"envId": env, "secrets": secrets, "featureFlags": flags, "segments": segments}]}


(root / "initial.json").write_text(json.dumps(body()))
for i in range(20):
    flags[0]["updatedAt"] = f"2030-01-01T00:00:{i:02d}.000Z"
    flags[0]["isEnabled"] = i % 2 == 0
    (root / f"change-{i}.json").write_text(json.dumps(body()))
    (root / f"flag-{i}.json").write_text(json.dumps(flags[0]))
