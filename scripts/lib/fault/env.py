"""The fault harness's network and process environment (layer 2 of the fault-test plan, cluster-design.md §4.2).

One run (id `fbx<pid>`, the pid of scripts/fault-suite or scripts/fault-soak) owns:
  - network namespaces `<run>-br` (the bridge `br0`, no uplink), `<run>-sim` (featbit-sim, 10.77.0.100),
    `<run>-cli` (this harness, its observers and the SDK probes, 10.77.0.200) and `<run>-n1` … `<run>-n5`
    (one agent each, 10.77.0.1 … .5); 10.77.x.x exists only inside them;
  - every process it starts (recorded with its start time in `<rundir>/pids`, killed by pid only);
  - private mount namespaces (tmpfs for the disk-full scenario), held by a recorded `sleep` process;
  - nft tables and iptables rules, all inside those namespaces (gone with them).
`Run.cleanup()` undoes all of it and is idempotent; scripts/fault-suite's trap does the same from the recorded
files if this process dies. Every wait here is bounded in time.
"""
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
AGENT_BIN = os.environ.get("FEATBIT_AGENT_BIN", str(ROOT / ".build" / "debug" / "featbit-agent"))
SIM_BIN = os.environ.get("FEATBIT_SIM_BIN", str(Path(AGENT_BIN).parent / "featbit-sim"))
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"

SUBNET = "10.77.0"
SIM_IP = f"{SUBNET}.100"
CLI_IP = f"{SUBNET}.200"
SIM_PORT = 8100
HTTP_PORT = 6100
CLUSTER_PORT = 7100
CLONE_NEWNET = 0x40000000


def node_ip(index):
    return f"{SUBNET}.{index}"


def sh(*args, check=True, timeout=20, input=None):
    """Runs a command (list), returns CompletedProcess; raises with its output when `check` and it fails."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(map(str, args))}: "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def proc_start_time(pid):
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()[19]


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    except OSError:
        pass
    return out


def exe_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


class Run:
    """Namespaces, processes and rules of one harness run. Create with `Run.create()`; always `cleanup()`."""

    def __init__(self, run_id, rundir, nodes=5):
        self.id = run_id
        self.dir = Path(rundir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pids_file = self.dir / "pids"
        self.netns_file = self.dir / "netns"
        self.max_nodes = nodes
        self.namespaces = []
        self._lock = threading.Lock()
        self._registered = []  # (pid, start time)
        self._cleaned = False
        self.queues = {}  # queue number -> delayer Popen

    # -- names

    def ns(self, name):
        return f"{self.id}-{name}"

    def node_ns(self, index):
        return self.ns(f"n{index}")

    # -- processes

    def register(self, pid):
        start = proc_start_time(pid)
        if start is None:
            return
        with self._lock:
            self._registered.append((pid, start))
            with open(self.pids_file, "a") as f:
                f.write(f"{pid} {start}\n")

    def popen(self, args, **kw):
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen([str(a) for a in args], **kw)
        self.register(proc.pid)
        return proc

    def kill_registered(self):
        with self._lock:
            entries = list(self._registered)
        for pid, start in entries:
            if proc_start_time(pid) == start:  # still the process we started, not a reused pid
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.kill(pid, sig)
                    except OSError:
                        pass

    # -- namespaces and the bridge

    def create(self):
        """Creates br, sim, cli and n1..nN, wires them to br0 and enters `cli` with this thread (call before any
        other thread starts: new threads and children inherit it)."""
        names = ["br", "sim", "cli"] + [f"n{i}" for i in range(1, self.max_nodes + 1)]
        for name in names:
            full = self.ns(name)
            sh("ip", "netns", "add", full)
            self.namespaces.append(full)
            with open(self.netns_file, "a") as f:
                f.write(full + "\n")
        br = self.ns("br")
        sh("ip", "-n", br, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", br, "link", "set", "br0", "up")
        sh("ip", "-n", br, "link", "set", "lo", "up")
        addresses = {"sim": SIM_IP, "cli": CLI_IP}
        addresses.update({f"n{i}": node_ip(i) for i in range(1, self.max_nodes + 1)})
        for name, ip in addresses.items():
            port = self.port_name(name)
            sh("ip", "-n", br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", self.ns(name))
            sh("ip", "-n", br, "link", "set", port, "master", "br0")
            sh("ip", "-n", br, "link", "set", port, "up")
            sh("ip", "-n", self.ns(name), "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", self.ns(name), "link", "set", "eth0", "up")
            sh("ip", "-n", self.ns(name), "link", "set", "lo", "up")
        # Bridged IPv4 goes through iptables (NFQUEUE delays) in the bridge namespace only (per-netns sysctl).
        sh("ip", "netns", "exec", br, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        self.enter("cli")
        return self

    def port_name(self, name):
        return f"p-{name}"

    def enter(self, name):
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.ns(name)}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.ns(name)}")
        finally:
            os.close(fd)

    def exec_in(self, name, *args, check=True, timeout=20):
        return sh("ip", "netns", "exec", self.ns(name), *args, check=check, timeout=timeout)

    # -- nft (drops, one-way drops, resets, random loss)

    def nft(self, name, script):
        """Loads an nft script into namespace `name` (atomically)."""
        return sh("ip", "netns", "exec", self.ns(name), "nft", "-f", "-", input=script)

    def nft_rules(self, name, rules, table="fbx", family="inet"):
        """Replaces table `family fbx` in `name` by one with input/output/forward chains holding `rules`
        (list of (chain, rule text))."""
        hook_chains = {"inet": ["input", "output", "forward"], "ip": ["input", "output", "forward"],
                       "bridge": ["forward"]}[family]
        lines = [f"table {family} {table} {{}}", f"delete table {family} {table}", f"table {family} {table} {{"]
        for chain in hook_chains:
            lines.append(f"  chain c_{chain} {{ type filter hook {chain} priority 0; policy accept;")
            for c, rule in rules:
                if c == chain:
                    lines.append(f"    {rule}")
            lines.append("  }")
        lines.append("}")
        return self.nft(name, "\n".join(lines) + "\n")

    def nft_clear(self, name, table="fbx", family="inet"):
        self.nft(name, f"table {family} {table} {{}}\ndelete table {family} {table}\n")

    def clear_faults(self):
        """Removes every fault: nft tables, iptables rules, tc qdiscs, delayers (all in our namespaces)."""
        for name in ["br", "sim", "cli"] + [f"n{i}" for i in range(1, self.max_nodes + 1)]:
            self.exec_in(name, "nft", "flush", "ruleset", check=False)
            self.exec_in(name, "iptables", "-F", check=False)
            self.exec_in(name, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
        for name in ["sim", "cli"] + [f"n{i}" for i in range(1, self.max_nodes + 1)]:
            sh("ip", "netns", "exec", self.ns("br"), "tc", "qdisc", "del", "dev", self.port_name(name), "root",
               check=False)
        self.stop_delayers()

    # -- NFQUEUE delayer (Appendix B)

    def start_delayer(self, qnum, delay_ms, jitter_ms=0, loss=0.0, max_s=900, log=None, where="br"):
        """A delayer process bound to queue `qnum` in namespace `where` (iptables rules sending packets to it are
        added separately with `queue_rule`)."""
        env = dict(os.environ, DELAYQ_MAX_S=str(max_s))
        if log:
            env["DELAYQ_LOG"] = str(log)
        script = Path(__file__).with_name("delayq.py")
        err = open(self.dir / f"delayq-{qnum}.err", "a")
        proc = self.popen(["ip", "netns", "exec", self.ns(where), sys.executable, script, qnum, delay_ms, jitter_ms,
                           loss], env=env, stdout=err, stderr=err)
        self.queues[qnum] = proc
        deadline = time.monotonic() + 10
        marker = self.dir / f"delayq-{qnum}.err"
        while time.monotonic() < deadline:  # the delayer prints "bound" once it listens on the queue
            if "bound" in marker.read_text(errors="replace").split("delayq-start")[-1]:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"delayer {qnum} exited: {marker.read_text()[-500:]}")
            time.sleep(0.05)
        return proc

    def queue_rule(self, where, rule):
        """`iptables -A <rule…>` in namespace `where`, e.g. ["FORWARD", "-s", …, "-j", "NFQUEUE", …]."""
        return self.exec_in(where, "iptables", "-w", "-A", *rule)

    def stop_delayers(self):
        for qnum, proc in list(self.queues.items()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(3)
            self.queues.pop(qnum, None)

    # -- tc rate limits

    def tbf(self, name, rate="8mbit", burst="16kb", latency="50ms"):
        """tbf on both directions of `name`'s link: its eth0 (egress) and its bridge port (ingress to it)."""
        self.exec_in(name, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", burst,
                     "latency", latency)
        self.exec_in("br", "tc", "qdisc", "replace", "dev", self.port_name(name), "root", "tbf", "rate", rate,
                     "burst", burst, "latency", latency)

    # -- mount namespaces (disk full)

    def tmpfs_holder(self, name, directory, size):
        """A `sleep` in a new private mount namespace (and node namespace `name`) with a tmpfs of `size` mounted
        on `directory`; returns its pid. Agents are started in it with nsenter; it goes when the process dies."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        ready = Path(directory).parent / f".{Path(directory).name}.mounted"
        ready.unlink(missing_ok=True)
        proc = self.popen(["ip", "netns", "exec", self.ns(name), "unshare", "-m", "--propagation", "private", "sh",
                           "-c", f'mount -t tmpfs -o size={size} fbx-tmpfs "$0" && touch "$1" && exec sleep 3600',
                           directory, ready],
                          stdout=subprocess.DEVNULL, stderr=open(self.dir / f"holder-{name}.err", "a"))
        deadline = time.monotonic() + 10
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tmpfs holder for {name} failed: "
                                   f"{(self.dir / f'holder-{name}.err').read_text()[-300:]}")
            time.sleep(0.05)
        ready.unlink(missing_ok=True)
        return proc

    def in_mount_ns(self, holder_pid, *args, check=True, timeout=30):
        return sh("nsenter", "-t", holder_pid, "-m", "--", *args, check=check, timeout=timeout)

    # -- teardown

    def cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        self.stop_delayers()
        self.kill_registered()
        time.sleep(0.2)
        for full in reversed(self.namespaces):
            sh("ip", "netns", "del", full, check=False)
        for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(self.id + "-"):
                sh("ip", "netns", "del", name, check=False)


def status_line(obj):
    print(json.dumps(obj, separators=(", ", ": ")), flush=True)
