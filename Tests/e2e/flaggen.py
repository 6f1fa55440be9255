"""Seeded generator of one FeatBit environment (flags, segments, users) for the differential test
(test_differential.py): the agent's .NET-faithful evaluator over the client WebSocket against the Python SDK's local
evaluator. Everything is drawn from one random.Random(seed), so a seed reproduces the data set exactly.

The data set exercises every operator of spec §5.3, segment in/not-in (§5.3.1), individual targets, disabled flags,
percentage rollouts over 1-4 variations with every kind of dispatch key (§5.4) and exptRollout/includedInExpt variety
(§5.5). Where the agent (.NET semantics) and the Python SDK are known to differ, the generator never produces the
input, so every generated flag x user pair must agree. Each divergence and how it is designed out:

Spec §8 (and §5.2-5.4):
  §8.3  archived flags: the agent answers "flag archived" (null variation), Python drops them -> no flag is archived,
        and no segment is archived either (Python ignores archived segments, .NET does not check isArchived, §5.3.1).
  §8.4  absent attributes: .NET reads "" where Python reads None -> every user carries every custom attribute any
        condition or dispatch key references (USER_ATTRIBUTES), and conditions only use those names, `keyId` or `name`.
  §8.5  rollout interval boundaries (.NET closed, Python half-open) -> cut points are 4-decimal numbers in
        [0.01, 0.99] that are not multiples of 2^-31; a bucket is always |n| / 2^31, so it never equals a cut.
  §8.6  numeric parsing (culture, thousands separators, exponents, Infinity, 5-decimal rounding in Python) -> numbers
        are integers (up to 14 digits) or have at most 2 decimals, in plain spellings both parsers read alike
        ("-12.5", "+5", ".5", "5.", "007", "-0"); the non-numbers used ("n/a", "", "-", "12abc", "1.2.3", "abc") are
        rejected by both. Never '_', ',', exponents, 'inf'/'nan', surrounding spaces.
  §8.7  regex dialects -> patterns use only literals, '.', '^', '$', '[a-z]'-style classes, '\\d', '+', '*', '?',
        '{n}' and '(a|b)', identical in .NET, ICU and Python `re`; no pattern is invalid.
  §5.3.1 missing segments: .NET throws, Python says "not a member" -> every referenced segment id exists.
  §5.4  .NET treats [0, hi] with 1 - hi < 1e-5 as "everyone", Python only [0, 1] exactly -> upper bounds are either
        exactly 1 or <= 0.99.

Found by reading python-sdk fbclient/evaluator.py and common_types.py (not listed in spec §8):
  a. A rule (or the fallthrough) whose rollout ranges miss the bucket: .NET returns an empty variation with the
     rule's reason; Python falls through to the *next stage* (the default rule) or fails -> every rollout covers
     [0, 1] completely (contiguous ranges; extra zero-width [0, 0] "no one" entries are allowed in front).
  b. A whitespace-only dispatchKey: .NET treats it as blank (keyId), Python as an attribute name ("") -> dispatch
     keys are null, "", "keyId", "name" or a custom attribute name.
  c. Property-name aliases: Python maps `key`/`keyid`/`name` in any letter case to the built-ins and drops custom
     attributes with those names; .NET only knows exactly `keyId` and `name` -> custom attribute names never equal
     those case-insensitively, and conditions/dispatch keys spell the built-ins exactly `keyId`/`name`; no blank
     property names.
  d. .NET's StartsWith/EndsWith are culture-sensitive (ignorable code points, canonical equivalence) -> strings
     are printable ASCII without control characters or soft hyphens, except the `nick` attribute (h).
  e. Segment conditions inside segment rules (.NET: plain operators only; Python would recurse) -> segment rules
     use plain operators only; segment conditions carry op null (Python keys on a falsy op).
  f. Lists that are not JSON arrays of strings (.NET throws, Python substring-tests a JSON string) -> IsOneOf /
     NotOneOf / segment values are always JSON arrays of strings.
  g. Duplicate custom attribute names (.NET takes the first, Python keeps the last) and non-string values
     (.NET rejects the user) -> unique names, string values only.
  h. Non-ASCII text: .NET ordinal operators compare UTF-16 code units, Python code points; both agree for
     Equal/Contains/IsOneOf and their negations, and both hash UTF-8 for dispatch. .NET regex '.' would see an
     astral character as two units, StartsWith/EndsWith are culture-sensitive -> `nick` (precomposed and decomposed
     accents, CJK, an emoji) is only used by those ordinal operators and as a dispatch key.
"""
import base64
import datetime
import json
import random
import uuid

# Custom attributes every user carries (see §8.4 above), with the value pools they are drawn from.
BOOL_TEXTS = ["true", "false", "TRUE", "False", "tRuE", "FALSE", "yes", "no", "1", "0", ""]
NUMBER_TEXTS_EXTRA = ["n/a", "", "12abc", "1.2.3", "abc", "-", "7"]
USER_ATTRIBUTES = {
    "country": ["us", "cn", "jp", "de", "fr", "US", "Cn", "es", ""],
    "plan": ["free", "pro", "enterprise", "pro-trial", "Free", "team", "pro.annual"],
    "email": None,       # generated: local@domain
    "age": None,         # integer text 0..99
    "score": None,       # <= 2 decimals, possibly negative, or a non-number both parsers reject
    "version": ["1.2.3", "10", "2.0", "9.9", "1.10.0", "3", "beta-4"],
    "beta": BOOL_TEXTS,
    "isMember": BOOL_TEXTS,
    "device": ["ios-17", "android-14", "web", "ios-16.4", "desktop-linux", "Android-13", "webview"],
    "team": ["alpha", "beta", "gamma", "Alpha", "alpha-2", "delta_x", "omega", "alphabet"],
    "orgId": None,       # org-<n>, a custom dispatch key
    # Non-ASCII, with canonically equivalent precomposed/decomposed pairs and an astral character: compared
    # ordinally by both evaluators (code units / code points), so only ordinal operators use it (d, h).
    "nick": ["zo\u00eb", "zoe\u0308", "caf\u00e9", "cafe\u0301", "\u4e2d\u6587\u540d", "\u745e\u514b",
             "\u03a9mega", "na\u00efve", "smile\U0001f600", "plain"],
}
ORDINAL_OPS = ["Equal", "NotEqual", "Contains", "NotContain", "IsOneOf", "NotOneOf"]
NUMERIC_ATTRIBUTES = ["age", "score", "version"]
BOOLEAN_ATTRIBUTES = ["beta", "isMember"]
STRING_ATTRIBUTES = ["country", "plan", "email", "device", "team", "orgId", "keyId", "name", "version"]
DISPATCH_KEYS = [None, "", "keyId", "name", "orgId", "email", "country", "team", "nick"]

FIRST_NAMES = ["alice", "bob", "Carol", "dave", "Eve", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar",
               "peggy", "trent", "victor", "walter", "Zoe", "bob-2", "alice.smith", "O'Brien"]
DOMAINS = ["featbit.com", "example.org", "mail.example.com", "corp.io", "FeatBit.com"]

NUMERIC_OPS = ["LessThan", "LessEqualThan", "BiggerThan", "BiggerEqualThan"]
STRING_OPS = ["Equal", "NotEqual", "Contains", "NotContain", "StartsWith", "EndsWith", "MatchRegex", "NotMatchRegex",
              "IsOneOf", "NotOneOf"]
BOOL_OPS = ["IsTrue", "IsFalse"]
ALL_PLAIN_OPS = NUMERIC_OPS + STRING_OPS + BOOL_OPS
IN_SEGMENT = "User is in segment"
NOT_IN_SEGMENT = "User is not in segment"

# Regexes in the common subset of .NET, ICU and Python `re` (§8.7); each used unanchored, like Regex.IsMatch.
REGEXES = [r"^a", r"a$", r"^[a-c]", r"\d+", r"^\d{2}$", r"@featbit\.com$", r"ios-1[67]", r"(us|cn)", r"^pro",
           r"a.p", r"^[A-Z]", r"[0-9]\.[0-9]", r"e+", r"^.{5}$", r"x?y?z", r"^(alpha|beta)$", r"_", r"-1?4$",
           r"org-[0-4]$", r"^$"]

VARIATION_VALUES = {
    "boolean": [["true", "false"]],
    "string": [["red", "green", "blue", "yellow"], ["on", "off", "beta", "control"], ["A", "B", "C", "D"],
               ["", "x", "long value with spaces", "tab-free"]],
    "number": [["0", "1", "42", "-3.5"], ["10", "20", "30", "40"], ["1.25", "2", "100", "-1"]],
    "json": [['{"a":1}', '{"a":2,"b":[1,2]}', '[1,2,3]', '{"color":"red"}'],
             ['{"enabled":true}', '{"enabled":false}', '{"limit":10}', '{}']],
}


class Generator:
    def __init__(self, seed, n_flags=40, n_segments=8, n_users=64):
        self.seed = seed
        self.rng = random.Random(seed)
        self.n_flags, self.n_segments, self.n_users = n_flags, n_segments, n_users
        self.env_id = self.uuid()
        self.updated_ms = 1_700_000_000_000 + self.rng.randrange(10 ** 9)

    # -- primitives -------------------------------------------------------------------------------------------------

    def uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def updated_at(self):
        self.updated_ms += self.rng.randrange(1, 10 ** 6)
        ms = self.updated_ms
        seconds, millis = divmod(ms, 1000)
        stamp = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{stamp}.{millis:03d}Z"

    def number_text(self):
        r = self.rng.random()
        if r < 0.45:
            return str(self.rng.randint(-50, 150))
        if r < 0.85:
            return f"{self.rng.randint(-5000, 15000) / 100:.{self.rng.choice([1, 2])}f}"
        if r < 0.9:  # other spellings .NET double.TryParse and Python float() both read the same way
            return self.rng.choice(["+5", ".5", "-.25", "5.", "007", "-0", "12345678901234", "+0.01"])
        return self.rng.choice(NUMBER_TEXTS_EXTRA)

    # -- users ------------------------------------------------------------------------------------------------------

    def user(self, i):
        rng = self.rng
        key_id = self.uuid() if rng.random() < 0.5 else f"user-{i}"
        name = rng.choice(FIRST_NAMES) + ("" if rng.random() < 0.5 else str(rng.randint(1, 99)))
        local = rng.choice(FIRST_NAMES).lower().replace("'", "") + str(rng.randint(0, 9))
        props = {
            "country": rng.choice(USER_ATTRIBUTES["country"]),
            "plan": rng.choice(USER_ATTRIBUTES["plan"]),
            "email": f"{local}@{rng.choice(DOMAINS)}",
            "age": str(rng.randint(0, 99)),
            "score": self.number_text(),
            "version": rng.choice(USER_ATTRIBUTES["version"]),
            "beta": rng.choice(BOOL_TEXTS),
            "isMember": rng.choice(BOOL_TEXTS),
            "device": rng.choice(USER_ATTRIBUTES["device"]),
            "team": rng.choice(USER_ATTRIBUTES["team"]),
            "orgId": f"org-{rng.randint(0, 9)}",
            "nick": rng.choice(USER_ATTRIBUTES["nick"]),
        }
        order = list(props)
        rng.shuffle(order)  # customizedProperties order does not matter: names are unique (g)
        return {"keyId": key_id, "name": name, "props": {k: props[k] for k in order}}

    @staticmethod
    def attr(user, prop):
        if prop == "keyId":
            return user["keyId"]
        if prop == "name":
            return user["name"]
        return user["props"][prop]

    # -- conditions -------------------------------------------------------------------------------------------------

    def plain_condition(self, users, op=None):
        rng = self.rng
        op = op or rng.choice(ALL_PLAIN_OPS)
        sample = rng.choice(users)
        if op in NUMERIC_OPS:
            prop = rng.choice(NUMERIC_ATTRIBUTES)
            seen = self.attr(sample, prop)
            value = seen if rng.random() < 0.6 else self.number_text()
            if rng.random() < 0.05:
                value = rng.choice(["abc", "1.2.3"])  # unparseable rule value: never matches in either
        elif op in BOOL_OPS:
            prop = rng.choice(BOOLEAN_ATTRIBUTES)
            value = op  # FeatBit stores "IsTrue"/"IsFalse"; unused
        else:
            prop = rng.choice(STRING_ATTRIBUTES + (["nick"] * 3 if op in ORDINAL_OPS else []))
            seen = self.attr(sample, prop)
            if op in ("Equal", "NotEqual"):
                value = seen if rng.random() < 0.7 else rng.choice([seen.upper(), seen + "x", "us"])
            elif op in ("Contains", "NotContain"):
                value = self.substring(seen) if rng.random() < 0.8 else rng.choice(["zz", "@", "-", "a"])
            elif op == "StartsWith":
                value = seen[:rng.randint(1, max(1, len(seen)))] if seen and rng.random() < 0.8 else rng.choice(["a", "us", "ios"])
            elif op == "EndsWith":
                value = seen[-rng.randint(1, max(1, len(seen))):] if seen and rng.random() < 0.8 else rng.choice([".com", "4", "a"])
            elif op in ("MatchRegex", "NotMatchRegex"):
                value = rng.choice(REGEXES)
            else:  # IsOneOf / NotOneOf
                pool = [self.attr(u, prop) for u in rng.sample(users, rng.randint(1, 6))]
                if rng.random() < 0.3:
                    pool.append("not-a-value")
                if rng.random() < 0.05:
                    pool = []
                value = json.dumps(pool)
        return {"property": prop, "op": op, "value": value}

    def substring(self, text):
        if not text:
            return "a"
        start = self.rng.randrange(len(text))
        return text[start:start + self.rng.randint(1, 4)]

    def segment_condition(self, segments):
        rng = self.rng
        prop = rng.choice([IN_SEGMENT, NOT_IN_SEGMENT])
        ids = [s["id"] for s in rng.sample(segments, rng.randint(1, 3))] if rng.random() > 0.05 else []
        return {"property": prop, "op": None, "value": json.dumps(ids)}

    # -- segments ---------------------------------------------------------------------------------------------------

    def segment(self, i, users):
        rng = self.rng
        keys = [u["keyId"] for u in users]
        included = rng.sample(keys, rng.randint(0, 6))
        excluded = rng.sample(keys, rng.randint(0, 4)) + ([included[0]] if included and rng.random() < 0.5 else [])
        rules = []
        for r in range(rng.randint(0, 2)):
            conditions = [self.plain_condition(users) for _ in range(rng.randint(1, 2))]
            rules.append({"id": self.uuid(), "name": f"Rule {r + 1}", "conditions": conditions})
        return {"id": self.uuid(), "envId": self.env_id, "name": f"segment-{i}", "description": "generated",
                "included": included, "excluded": excluded, "rules": rules, "updatedAt": self.updated_at(),
                "isArchived": False}

    # -- flags ------------------------------------------------------------------------------------------------------

    def rollout(self, variations, dispatch_key=None):
        """A rollout covering [0, 1] completely (a), over 1-4 of the flag's variations."""
        rng = self.rng
        ids = [v["id"] for v in variations]
        count = rng.choice([1, 1, 2, 2, 3, 4])
        chosen = [rng.choice(ids) for _ in range(count)]  # repeats allowed: two ranges may pick one variation
        cuts = set()
        while len(cuts) < count - 1:
            cut = round(rng.uniform(0.01, 0.99), 4)
            if not (cut * 2 ** 31).is_integer():  # a bucket (n / 2^31) can never sit exactly on it (§8.5)
                cuts.add(cut)
        cuts = sorted(cuts)
        bounds = [0.0] + cuts + [1.0]
        entries = []
        if rng.random() < 0.1:
            entries.append({"id": rng.choice(ids), "rollout": [0, 0], "exptRollout": 0})  # "no one"
        for n in range(len(bounds) - 1):
            lo, hi = bounds[n], bounds[n + 1]
            entries.append({"id": chosen[n % len(chosen)], "rollout": [lo if n else 0, hi if n < len(bounds) - 2 else 1],
                            "exptRollout": rng.choice([0, 0.2, 0.5, 1, 1])})
        return {"dispatchKey": dispatch_key, "includedInExpt": rng.random() < 0.5, "variations": entries}

    def flag(self, i, users, segments):
        rng = self.rng
        vtype = rng.choice(["boolean", "string", "number", "json"])
        values = rng.choice(VARIATION_VALUES[vtype])
        n = 2 if vtype == "boolean" else rng.randint(2, 4)
        variations = [{"id": self.uuid(), "name": f"v{j}", "value": values[j]} for j in range(n)]
        ids = [v["id"] for v in variations]
        key = f"flag-{i:02d}-{vtype}"
        targets = []
        for _ in range(rng.choice([0, 0, 1, 2])):
            keys = [u["keyId"] for u in rng.sample(users, rng.randint(1, 4))] + (["ghost-user"] if rng.random() < 0.3 else [])
            targets.append({"keyIds": keys, "variationId": rng.choice(ids)})
        rules = []
        for r in range(rng.choice([0, 1, 2, 2, 3, 3, 4])):
            conditions = []
            # an empty condition list matches everyone (both evaluators); rare, as it shadows later rules
            for _ in range(0 if r and rng.random() < 0.05 else rng.choice([1, 1, 1, 2, 2, 3])):
                if rng.random() < 0.25:
                    conditions.append(self.segment_condition(segments))
                else:
                    conditions.append(self.plain_condition(users))
            rule = self.rollout(variations, rng.choice(DISPATCH_KEYS))
            rules.append({"id": self.uuid(), "name": f"Rule {r + 1}", "conditions": conditions, **rule})
        return {
            "id": self.uuid(), "envId": self.env_id, "name": f"generated flag {i}", "description": "", "key": key,
            "variationType": vtype, "variations": variations, "targetUsers": targets, "rules": rules,
            "isEnabled": rng.random() > 0.15, "disabledVariationId": rng.choice(ids),
            "fallthrough": self.rollout(variations, rng.choice(DISPATCH_KEYS)),
            "exptIncludeAllTargets": rng.random() < 0.3, "tags": [], "updatedAt": self.updated_at(),
            "isArchived": False,
        }

    # -- the environment --------------------------------------------------------------------------------------------

    def generate(self):
        users = [self.user(i) for i in range(self.n_users)]
        segments = [self.segment(i, users) for i in range(self.n_segments)]
        flags = [self.flag(i, users, segments) for i in range(self.n_flags)]
        # Make sure every operator appears at least once, whatever the seed: one extra rule per operator, appended to
        # round-robin flags at a random position among their rules.
        enabled = [f for f in flags if f["isEnabled"]]
        for n, op in enumerate(ALL_PLAIN_OPS + [IN_SEGMENT, NOT_IN_SEGMENT]):
            flag = enabled[n % len(enabled)]
            if op in (IN_SEGMENT, NOT_IN_SEGMENT):
                condition = {"property": op, "op": None, "value": json.dumps([self.rng.choice(segments)["id"]])}
            else:
                condition = self.plain_condition(users, op)
            rule = self.rollout(flag["variations"], self.rng.choice(DISPATCH_KEYS))
            position = self.rng.randint(0, len(flag["rules"]))
            flag["rules"].insert(position, {"id": self.uuid(), "name": f"Rule op {op}", "conditions": [condition],
                                            **rule})
        return {"envId": self.env_id, "flags": flags, "segments": segments, "users": users}


def wire_user(user):
    """The end-user object a client SDK sends in its data-sync request (spec §4.3)."""
    return {"keyId": user["keyId"], "name": user["name"],
            "customizedProperties": [{"name": k, "value": v} for k, v in user["props"].items()]}


def python_user(user):
    """The dict the Python SDK's variation() takes: `key`, `name` and custom attributes as keyword values."""
    return {"key": user["keyId"], "name": user["name"], **user["props"]}


def encode_guid(guid):
    """FeatBit GuidHelper.Encode (spec §1.1): .NET byte order, Base64, '/'->'_', '+'->'-', 22 chars."""
    return base64.b64encode(uuid.UUID(guid).bytes_le).decode().replace("/", "_").replace("+", "-")[:22]


def secret_for(env_id, rng):
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    return "".join(rng.choice(alphabet) for _ in range(22)) + encode_guid(env_id)
