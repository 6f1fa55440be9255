"""OpenFeature through the agent's OFREP endpoints, end to end with real clients from PyPI: the OpenFeature SDK
(openfeature-sdk) with the generic OFREP provider (openfeature-provider-ofrep) evaluates every flag of a generated
data set (flaggen.py, the differential test's generator) for every generated user, and each result must equal what
the real FeatBit Python SDK (fb-python-sdk) evaluates locally for the same user: value, variant (= variation id) and
the OFREP reason FeatBit's evaluation step maps to. The bulk endpoint must agree with the single-flag one. Error
cases must reach the OpenFeature client as the right OpenFeature error codes, and every served evaluation must reach
FeatBit as a flag-usage insight under each InsightsMode.

Seeds are fixed so CI is deterministic; FEATBIT_OFREP_SEEDS="1,2" runs other seeds."""
import json
import os
import random
import time
import urllib.error
import urllib.request

import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from conftest import API_KEY, CLIENT_SECRET, SERVER_SECRET, TESTER, fake_data_set, wait_until
from flaggen import Generator, secret_for
from test_auto_mode import auto_agent, insights_received

SEEDS = [int(s) for s in os.environ.get("FEATBIT_OFREP_SEEDS", "20240611,7").split(",") if s.strip()]
MIN_PAIRS = 2000


# -- helpers -------------------------------------------------------------------------------------------------------

def ofrep_client(agent, secret, domain=None, header="bearer"):
    """An OpenFeature client bound to a fresh OFREP provider pointed at the agent."""
    headers = {"bearer": {"Authorization": f"Bearer {secret}"}, "api-key": {"X-API-Key": secret},
               "bare": {"Authorization": secret}}[header]
    domain = domain or f"ofrep-{agent.port}-{header}-{secret[:6]}"
    api.set_provider(OFREPProvider(agent.url, headers_factory=lambda: dict(headers), timeout=10), domain)
    return api.get_client(domain)


def post(agent, path, body, headers):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(agent.url + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def typed(text):
    """A user attribute as an OpenFeature context would carry it: booleans and numbers typed when their JSON text is
    exactly the string FeatBit sees (so "007", "-0", "12.50" stay strings), everything else a string."""
    if text in ("true", "false"):
        return text == "true"
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, (int, float)) and not isinstance(value, bool) and json.dumps(value) == text:
        return value
    return text


def featbit_text(value):
    """The documented string form of an OFREP attribute (OFREPContext): what the FeatBit SDK user gets."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return value


def splits(rollout):
    """More than one variation reachable by some bucket (OFREP reason SPLIT): FlagRule.splitsUsers."""
    reachable = None
    for entry in rollout["variations"]:
        lo, hi = entry["rollout"]
        if (lo == 0 and hi == 0) or hi < lo:
            continue
        if reachable is not None and reachable != entry["id"]:
            return True
        reachable = entry["id"]
        if lo == 0 and 1 - hi < 1e-5:
            return False
    return False


def expected_reason(flag, python_reason, match_reason):
    """The OFREP reason for FeatBit's evaluation step (the Python SDK's reason says which step; the agent's
    metadata.matchReason names the rule, whose rollout says TARGETING_MATCH or SPLIT)."""
    if python_reason == "flag off":
        return "DISABLED"
    if python_reason == "target match":
        return "TARGETING_MATCH"
    if python_reason == "rule match":
        rule = next(r for r in flag["rules"] if r["name"] == match_reason)
        return "SPLIT" if splits(rule) else "TARGETING_MATCH"
    assert python_reason == "fall through all rules", python_reason
    if splits(flag["fallthrough"]):
        return "SPLIT"
    return "STATIC" if not flag["targetUsers"] and not flag["rules"] else "DEFAULT"


def details(client, reference, key, context):
    """The typed OpenFeature call for the value the FeatBit SDK returned."""
    if isinstance(reference, bool):
        return client.get_boolean_details(key, not reference, context)
    if isinstance(reference, int):
        return client.get_integer_details(key, -987654321, context)
    if isinstance(reference, float):
        return client.get_float_details(key, -9876.54321, context)
    if isinstance(reference, (dict, list)):
        return client.get_object_details(key, {"default": True}, context)
    return client.get_string_details(key, "\u0000default", context)


def typed_attribute_flag(env_id):
    """A flag whose rules read attributes the OFREP context carries typed (a number, a boolean, an object), so the
    documented string forms are what rules compare."""
    variations = [{"id": f"ta-{i}", "name": f"v{i}", "value": v} for i, v in enumerate(["young", "member", "meta", "other"])]
    def rule(name, conditions, variation):
        return {"id": name, "name": name, "dispatchKey": None, "includedInExpt": False, "conditions": conditions,
                "variations": [{"id": variation, "rollout": [0, 1], "exptRollout": 1}]}
    return {
        "id": "typed-attribute-flag", "envId": env_id, "name": "typed", "description": "", "key": "ofrep-typed-attributes",
        "variationType": "string", "variations": variations, "targetUsers": [],
        "rules": [
            rule("meta exact", [{"property": "meta", "op": "Equal", "value": '{"plan":"pro","tier":2}'}], "ta-2"),
            rule("young", [{"property": "age", "op": "LessThan", "value": "30"},
                           {"property": "age", "op": "IsOneOf", "value": json.dumps([str(n) for n in range(0, 30, 3)])}], "ta-0"),
            rule("member", [{"property": "isMember", "op": "IsTrue", "value": "IsTrue"}], "ta-1"),
        ],
        "isEnabled": True, "disabledVariationId": "ta-3",
        "fallthrough": {"dispatchKey": None, "includedInExpt": False,
                        "variations": [{"id": "ta-3", "rollout": [0, 1], "exptRollout": 1}]},
        "exptIncludeAllTargets": False, "tags": [], "updatedAt": "2030-01-01T00:00:00.000Z", "isArchived": False,
    }


# -- the differential test -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_ofrep_clients_get_what_the_featbit_python_sdk_evaluates(seed, start_agent, sdk_clients):
    started = time.time()
    data = Generator(seed).generate()
    env_id, flags, segments, users = data["envId"], data["flags"], data["segments"], data["users"]
    flags.append(typed_attribute_flag(env_id))
    rng = random.Random(seed)
    server_secret, client_secret = secret_for(env_id, rng), secret_for(env_id, rng)
    secrets = [{"type": "server", "projectKey": "ofrep", "envId": env_id, "envKey": "test", "value": server_secret},
               {"type": "client", "projectKey": "ofrep", "envId": env_id, "envKey": "test", "value": client_secret}]
    data_set = {"eventType": "rp_full",
                "items": [{"envId": env_id, "secrets": secrets, "featureFlags": flags, "segments": segments}]}
    agent = start_agent({"Mode": "manual", "ApiKey": API_KEY, "ForwardEvents": "false"})
    status, body = agent.bootstrap(data_set)
    assert status == 200, f"seed {seed}: bootstrap refused: {body}"

    featbit = sdk_clients(agent, secret=server_secret)
    assert featbit.initialize, f"seed {seed}: the Python SDK did not initialise"
    openfeature = ofrep_client(agent, server_secret, header=rng.choice(["bearer", "api-key", "bare"]))

    compared, mismatches, reasons = 0, [], {}
    for n, user in enumerate(users):
        attributes = {name: typed(text) for name, text in user["props"].items()}
        if n % 2:
            attributes["meta"] = {"tier": 2, "plan": "pro"} if n % 4 == 1 else {"tier": n, "tags": ["a", "\u00e9"]}
        context = EvaluationContext(targeting_key=user["keyId"], attributes={"name": user["name"], **attributes})
        featbit_user = {"key": user["keyId"], "name": user["name"],
                        **{name: featbit_text(value) for name, value in attributes.items()}}
        by_key = {}
        for flag in flags:
            reference = featbit.variation_detail(flag["key"], featbit_user, None)
            got = details(openfeature, reference.variation, flag["key"], context)
            by_key[flag["key"]] = got
            reason = expected_reason(flag, reference.reason, (got.flag_metadata or {}).get("matchReason"))
            same = (got.error_code is None and got.value == reference.variation
                    and type(got.value) is type(reference.variation)
                    and got.variant == reference.variation_id and got.reason == reason
                    and got.flag_metadata.get("flagId") == flag["id"] and got.flag_metadata.get("envId") == env_id)
            compared += 1
            reasons[reason] = reasons.get(reason, 0) + 1
            if not same:
                mismatches.append((flag, featbit_user, context, got, reference, reason))
        # The bulk endpoint (what web providers call) gives this user the same results.
        code, headers, text = post(agent, "/ofrep/v1/evaluate/flags",
                                   {"context": {"targetingKey": user["keyId"], "name": user["name"], **attributes}},
                                   {"Authorization": f"Bearer {client_secret}"})
        assert code == 200 and headers.get("ETag"), f"seed {seed}: bulk answered {code}: {text}"
        bulk = {entry["key"]: entry for entry in json.loads(text)["flags"]}
        assert set(bulk) == set(by_key), f"seed {seed}: bulk has {len(bulk)} of {len(by_key)} flags"
        for key, got in by_key.items():
            entry = bulk[key]
            assert (entry["value"], entry["variant"], entry["reason"]) == (got.value, got.variant, got.reason), \
                f"seed {seed}: bulk and single differ for {key}: {entry} vs {got}"

    def describe(flag, featbit_user, context, got, reference, reason):
        return (f"flag: {json.dumps(flag)}\nuser: {json.dumps(featbit_user)}\n"
                f"ofrep: value={got.value!r} variant={got.variant} reason={got.reason} error={got.error_code} "
                f"{got.error_message} metadata={got.flag_metadata}\n"
                f"featbit: variation={reference.variation!r} id={reference.variation_id} reason={reference.reason!r} "
                f"-> expected {reason}")

    assert not mismatches, (f"seed {seed}: {len(mismatches)} of {compared} flag x user pairs differ; first ones:\n"
                            + "\n\n".join(describe(*m) for m in mismatches[:5]))
    assert compared >= MIN_PAIRS, f"seed {seed}: only {compared} pairs compared"
    for reason in ("DISABLED", "TARGETING_MATCH", "SPLIT", "DEFAULT"):
        assert reasons.get(reason, 0) >= 20, f"seed {seed}: reason {reason} seen only {reasons.get(reason, 0)} times"
    print(f"seed {seed}: {compared} OFREP evaluations agree with fb-python-sdk ({reasons}) in {time.time() - started:.1f} s")


def test_ofrep_typed_attributes_reach_rules_in_their_documented_string_form(start_agent):
    data = fake_data_set(lambda flags, segments: flags.append(typed_attribute_flag(flags[0]["envId"])))
    agent = start_agent({"Mode": "manual", "ApiKey": API_KEY, "ForwardEvents": "false"})
    assert agent.bootstrap(data)[0] == 200
    client = ofrep_client(agent, SERVER_SECRET)
    def value(**attributes):
        return client.get_string_value("ofrep-typed-attributes", "?", EvaluationContext("u-1", attributes))
    assert value(meta={"tier": 2, "plan": "pro"}) == "meta"
    assert value(meta={"tier": 3, "plan": "pro"}) == "other"
    assert value(age=27) == "young" and value(age=27.0) == "young" and value(age="27") == "young"
    assert value(age=28) == "other"  # not one of 0, 3, …, 27
    assert value(isMember=True) == "member" and value(isMember="TRUE") == "member" and value(isMember=False) == "other"


# -- errors --------------------------------------------------------------------------------------------------------

def test_ofrep_errors_reach_the_openfeature_client_as_openfeature_error_codes(start_agent):
    def edit(flags, segments):
        gap = json.loads(json.dumps(next(f for f in flags if f["key"] == "returns-true")))
        gap.update({"id": "gap-flag-id", "key": "gap", "fallthrough": {
            "dispatchKey": None, "includedInExpt": False,
            "variations": [{"id": gap["variations"][0]["id"], "rollout": [0, 0], "exptRollout": 1}]}})
        flags.append(gap)
        archived = json.loads(json.dumps(gap))
        archived.update({"id": "archived-flag-id", "key": "archived", "isArchived": True})
        flags.append(archived)
    agent = start_agent({"Mode": "manual", "ApiKey": API_KEY, "ForwardEvents": "false"})
    assert agent.bootstrap(fake_data_set(edit))[0] == 200
    client = ofrep_client(agent, SERVER_SECRET)
    user = EvaluationContext(TESTER["key"], {"name": TESTER["name"]})

    ok = client.get_boolean_details("returns-true", False, user)
    assert (ok.value, ok.reason, ok.error_code) == (True, Reason.STATIC, None)

    def check(result, code, default):
        assert result.error_code == code, (result.error_code, result.error_message)
        assert result.value == default and result.reason == Reason.ERROR and result.error_message

    check(client.get_boolean_details("no-such-flag", False, user), ErrorCode.FLAG_NOT_FOUND, False)
    check(client.get_boolean_details("archived", False, user), ErrorCode.FLAG_NOT_FOUND, False)
    check(client.get_boolean_details("returns-true", False, EvaluationContext(None, {"name": "x"})),
          ErrorCode.TARGETING_KEY_MISSING, False)
    check(client.get_boolean_details("returns-true", False, None), ErrorCode.TARGETING_KEY_MISSING, False)
    check(client.get_boolean_details("returns-true", False, EvaluationContext("   ")), ErrorCode.TARGETING_KEY_MISSING, False)
    check(client.get_boolean_details("returns-true", False, EvaluationContext(12345)), ErrorCode.INVALID_CONTEXT, False)
    check(client.get_string_details("returns-true", "x", user), ErrorCode.TYPE_MISMATCH, "x")
    check(client.get_boolean_details("gap", False, user), ErrorCode.GENERAL, False)
    for wrong in ("wrong-secret", API_KEY, "XXXXXXXXXXXXXXXXXXXXXX" + SERVER_SECRET[22:]):
        check(ofrep_client(agent, wrong).get_boolean_details("returns-true", False, user), ErrorCode.GENERAL, False)

    # What the provider cannot send: malformed bodies, straight over HTTP.
    auth = {"Authorization": f"Bearer {SERVER_SECRET}"}
    for body, code in [(b"{", "PARSE_ERROR"), (b"[1]", "PARSE_ERROR"), (b'{"context": 5}', "INVALID_CONTEXT")]:
        status, _, text = post(agent, "/ofrep/v1/evaluate/flags/returns-true", body, auth)
        assert status == 400 and json.loads(text)["errorCode"] == code and json.loads(text)["errorDetails"]
        status, _, text = post(agent, "/ofrep/v1/evaluate/flags", body, auth)
        assert status == 400 and json.loads(text)["errorCode"] == code and json.loads(text)["errorDetails"]
    assert post(agent, "/ofrep/v1/evaluate/flags/returns-true", b"{}", {})[0] == 401
    # The agent is still well.
    assert client.get_boolean_value("returns-true", False, user) is True


# -- bulk: ETag / If-None-Match --------------------------------------------------------------------------------------

def test_ofrep_bulk_answers_304_until_something_this_context_sees_changes(start_agent):
    agent = start_agent({"Mode": "manual", "ApiKey": API_KEY, "ForwardEvents": "false"})
    assert agent.bootstrap(fake_data_set())[0] == 200
    auth = {"Authorization": f"Bearer {CLIENT_SECRET}"}
    context = {"context": {"targetingKey": TESTER["key"], "name": "tester"}}
    code, headers, text = post(agent, "/ofrep/v1/evaluate/flags", context, auth)
    assert code == 200 and len(json.loads(text)["flags"]) == 5
    etag = headers["ETag"]
    code, headers, text = post(agent, "/ofrep/v1/evaluate/flags", context, {**auth, "If-None-Match": etag})
    assert (code, text, headers["ETag"]) == (304, "", etag)
    other = {"context": {"targetingKey": "someone-else"}}
    assert post(agent, "/ofrep/v1/evaluate/flags", other, {**auth, "If-None-Match": etag})[0] == 200

    def disable(flags, segments):
        for f in flags:
            if f["key"] == "returns-true":
                f["isEnabled"], f["updatedAt"] = False, "2030-01-01T00:00:00.000Z"
    assert agent.bootstrap(fake_data_set(disable))[0] == 200
    code, headers, text = post(agent, "/ofrep/v1/evaluate/flags", context, {**auth, "If-None-Match": etag})
    assert code == 200 and headers["ETag"] != etag
    assert next(f for f in json.loads(text)["flags"] if f["key"] == "returns-true")["reason"] == "DISABLED"

    # A flag removed without any newer timestamp (same data version): still a new tag.
    new_etag = headers["ETag"]
    assert agent.bootstrap(fake_data_set(lambda flags, segments: (disable(flags, segments), flags.pop(0))))[0] == 200
    code, headers, text = post(agent, "/ofrep/v1/evaluate/flags", context, {**auth, "If-None-Match": new_etag})
    assert code == 200 and headers["ETag"] != new_etag and len(json.loads(text)["flags"]) == 4


# -- insights under every InsightsMode -----------------------------------------------------------------------------

def evaluate_for_insights(agent):
    client = ofrep_client(agent, SERVER_SECRET)
    for i in range(3):
        context = EvaluationContext(f"ofrep-user-{i}", {"name": f"OFREP User {i}", "plan": "pro",
                                                        "email": f"ofrep{i}@example.com"})
        assert client.get_boolean_value("returns-true", False, context) is True
    code, _, _ = post(agent, "/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "ofrep-web-user", "plan": "pro"}},
                      {"X-API-Key": CLIENT_SECRET})
    assert code == 200


def test_ofrep_evaluations_are_forwarded_as_insights(start_simulator, start_agent):
    sim = start_simulator()
    agent = auto_agent(start_agent, sim)
    assert wait_until(lambda: agent.request("GET", "/health/readiness") == (200, "Healthy"), timeout=10)
    evaluate_for_insights(agent)
    assert wait_until(lambda: "ofrep-web-user" in json.dumps(insights_received(sim)), timeout=10)
    text = json.dumps(insights_received(sim))
    assert "ofrep-user-1" in text and "ofrep1@example.com" in text and "returns-true" in text
    # Each under the secret the evaluation was made with, as FeatBit attributes insights to environments by it.
    by_secret = {}
    for record in insights_received(sim):
        for insight in record["body"]:
            by_secret.setdefault(record["authorization"], set()).add(insight["user"]["keyId"])
    assert {"ofrep-user-0", "ofrep-user-1", "ofrep-user-2"} <= by_secret.get(SERVER_SECRET, set())
    assert "ofrep-web-user" in by_secret.get(CLIENT_SECRET, set())


def test_ofrep_insights_anonymize(start_simulator, start_agent):
    sim = start_simulator()
    agent = auto_agent(start_agent, sim, InsightsMode="anonymize", InsightsAllowProperties="plan")
    assert wait_until(lambda: agent.request("GET", "/health/readiness") == (200, "Healthy"), timeout=10)
    evaluate_for_insights(agent)
    assert wait_until(lambda: json.dumps(insights_received(sim)).count("returns-true") >= 4, timeout=10)
    text = json.dumps(insights_received(sim))
    assert "ofrep-user-1" not in text and "OFREP User" not in text and "example.com" not in text
    assert "ofrep-web-user" not in text
    assert "pro" in text and "returns-true" in text


def test_ofrep_insights_drop(start_simulator, start_agent):
    sim = start_simulator()
    agent = auto_agent(start_agent, sim, InsightsMode="drop")
    assert wait_until(lambda: agent.request("GET", "/health/readiness") == (200, "Healthy"), timeout=10)
    evaluate_for_insights(agent)
    time.sleep(2.5)
    assert insights_received(sim) == []


def test_ofrep_insights_local_stay_on_the_machine(tmp_path, start_simulator, start_agent):
    import sqlite3
    db = tmp_path / "featbit.db"
    sim = start_simulator()
    agent = auto_agent(start_agent, sim, InsightsMode="local", DbPath=str(db))
    assert wait_until(lambda: agent.request("GET", "/health/readiness") == (200, "Healthy"), timeout=10)
    evaluate_for_insights(agent)

    def kept():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            table = next(t for t in tables if "insight" in t)
            return [bytes(r[0]).decode() if isinstance(r[0], bytes) else r[0]
                    for r in conn.execute(f"SELECT body FROM {table}")]

    assert wait_until(lambda: any("ofrep-user-1" in body for body in kept()), timeout=10)
    assert wait_until(lambda: any("ofrep-web-user" in body for body in kept()), timeout=10)
    time.sleep(1.5)
    assert insights_received(sim) == []


# -- every node of a mesh --------------------------------------------------------------------------------------------

def test_ofrep_every_mesh_node_answers_alike_with_the_same_etag(tmp_path):
    from mesh import Mesh, wait_for
    mesh = Mesh(tmp_path / "mesh", 3).start()
    try:
        mesh.wait_for_single_leader(15)
        mesh.wait_converged(15)
        context = {"context": {"targetingKey": TESTER["key"], "name": "tester", "country": "us"}}
        auth = {"Authorization": f"Bearer {CLIENT_SECRET}"}

        def answers():
            out = {}
            for node in mesh.nodes:
                code, headers, text = post(node, "/ofrep/v1/evaluate/flags", context, auth)
                single = post(node, "/ofrep/v1/evaluate/flags/return-10p-true", context, auth)
                assert code == 200 and single[0] == 200, (node.id, code, text, single)
                out[node.id] = (headers["ETag"], json.loads(text), json.loads(single[2]))
            return out

        before = answers()
        assert len({json.dumps(a, sort_keys=True) for a in before.values()}) == 1, before
        etag = next(iter(before.values()))[0]
        for node in mesh.nodes:  # the tag of one node holds on every other
            assert post(node, "/ofrep/v1/evaluate/flags", context, {**auth, "If-None-Match": etag})[0] == 304

        change = mesh.change_flag("returns-true")
        wait_for(lambda: all(post(n, "/ofrep/v1/evaluate/flags", context, {**auth, "If-None-Match": etag})[0] == 200
                             for n in mesh.nodes), 10, message="the change to reach every node's OFREP answers")
        after = answers()
        assert len({json.dumps(a, sort_keys=True) for a in after.values()}) == 1, after
        flag = next(f for f in next(iter(after.values()))[1]["flags"] if f["key"] == "returns-true")
        assert flag["reason"] == ("DISABLED" if not change.enabled else "STATIC")
    finally:
        mesh.close()
