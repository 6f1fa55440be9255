"""Entry of the layer-2 fault harness (run by scripts/fault-suite and scripts/fault-soak, as root).

  python -m fault suite [--only 1,4,9] [--keep]
  python -m fault soak [--duration SECONDS] [--only 13,19-1,19-4,19-9,19-13] [--profile wan|lan]

Prints one JSON line of figures per scenario, then `N passed, N failed`; exits 1 if any failed."""
import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from fault.env import AGENT_BIN, SIM_BIN, Run


def main():
    ap = argparse.ArgumentParser(prog="fault")
    ap.add_argument("what", choices=["suite", "soak"])
    ap.add_argument("--only", default="", help="comma list of scenario ids")
    ap.add_argument("--duration", type=float, default=600, help="soak: seconds of scenario 13 (default 600)")
    ap.add_argument("--profile", default="wan", help="soak: timing profile of scenario 13 (default wan)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs) even when all pass")
    ap.add_argument("--mesh-tls", action="store_true", help="mutual TLS on every mesh link (ClusterTls*)")
    args = ap.parse_args()
    if args.mesh_tls:
        os.environ["FAULT_MESH_TLS"] = "1"  # read when fault.cluster is imported (by the scenarios, below)

    run_id = os.environ.get("FBX_RUN_ID") or f"fbx{os.getpid()}"
    rundir = Path(os.environ.get("FBX_RUN_DIR") or f"/tmp/{run_id}")
    for path in (AGENT_BIN, SIM_BIN):
        if not os.access(path, os.X_OK):
            print(f"fault-{args.what}: {path} is missing; build it first (swift build)", flush=True)
            return 2
    run = Run(run_id, rundir, nodes=5)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    passed = failed = 0
    t_all = time.monotonic()
    try:
        run.create()
        links = "mutual TLS" if args.mesh_tls else "plaintext"
        print(f"# run {run_id}: namespaces {run_id}-{{br,sim,cli,n1..n5}}, mesh links {links}, logs in {rundir}",
              flush=True)
        if args.what == "suite":
            from fault.scenarios import SCENARIOS, run_one
            baseline = {}
            table = SCENARIOS
            def run_entry(sid, name, fn, limit):
                return run_one(run, rundir, sid, name, fn, limit, baseline)
        else:
            from fault.soak import SOAKS, run_soak
            table = SOAKS
            def run_entry(sid, name, fn, limit):
                return run_soak(run, rundir, sid, name, fn, limit, args)
        only = {s.strip() for s in args.only.split(",") if s.strip()}
        for sid, name, fn, limit in table:
            if only and str(sid) not in only:
                continue
            line = run_entry(sid, name, fn, limit)
            print(json.dumps(line), flush=True)
            if line["result"] == "pass":
                passed += 1
            else:
                failed += 1
    except KeyboardInterrupt as e:
        print(f"# interrupted ({e}); cleaning up", flush=True)
        failed += 1
    except Exception as e:
        import traceback
        traceback.print_exc()
        print(f"# harness error ({type(e).__name__}: {e}); cleaning up", flush=True)
        failed += 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the cleanup short
        run.cleanup()
    print(f"# total {time.monotonic() - t_all:.0f} s; logs: {rundir}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    if failed == 0 and not args.keep:
        shutil.rmtree(rundir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
