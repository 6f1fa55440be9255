# Sourced by scripts/fault-suite and scripts/fault-soak: privilege check, installs, the venv, and the cleanup trap.
# Expects: NAME (fault-suite|fault-soak), SKIP_COUNT; defines RUN_ID, RUN_DIR, PY, fault_cleanup.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
REPO="$PWD"
RUN_ID="fbx$$"
RUN_DIR="/tmp/$RUN_ID"
export FBX_RUN_ID="$RUN_ID" FBX_RUN_DIR="$RUN_DIR"

# Everything this run created: processes by recorded pid (checked against their start time), namespaces by the
# recorded names and the run-id prefix (their nft/iptables rules, qdiscs and tmpfs mounts go with them).
fault_cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "${HARNESS_PID:-}" ] && kill -0 "$HARNESS_PID" 2>/dev/null; then
    kill -TERM "$HARNESS_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$HARNESS_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$HARNESS_PID" 2>/dev/null
  fi
  if [ -f "$RUN_DIR/pids" ]; then
    while read -r pid start; do
      [ -n "$pid" ] || continue
      if [ -r "/proc/$pid/stat" ]; then
        now=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $20}')
        if [ "$now" = "$start" ]; then kill -CONT "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null; fi
      fi
    done < "$RUN_DIR/pids"
  fi
  local names=""
  [ -f "$RUN_DIR/netns" ] && names=$(cat "$RUN_DIR/netns")
  names="$names $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${RUN_ID}-" || true)"
  for ns in $names; do ip netns del "$ns" 2>/dev/null || true; done
  exit "$rc"
}
trap fault_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

if ! ip netns add "${RUN_ID}-probe" 2>/tmp/"${RUN_ID}".netns.err; then
  echo "$NAME: SKIPPED: cannot create network namespaces ($(head -c 200 /tmp/"${RUN_ID}".netns.err)); layer 2 needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
  rm -f /tmp/"${RUN_ID}".netns.err
  echo "0 passed, 0 failed, $SKIP_COUNT skipped"
  exit 0
fi
ip netns del "${RUN_ID}-probe"
rm -f /tmp/"${RUN_ID}".netns.err

need=""
command -v nft >/dev/null || need="$need nftables"
command -v iptables >/dev/null || need="$need iptables"
command -v ping >/dev/null || need="$need iputils-ping"
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || need="$need faketime"
[ -e /usr/include/libnetfilter_queue/libnetfilter_queue.h ] || need="$need libnetfilter-queue-dev"
command -v gcc >/dev/null || need="$need gcc"
command -v openssl >/dev/null || need="$need openssl"  # the mesh CA of --mesh-tls
if [ -n "$need" ]; then
  echo "# installing:$need"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null \
    || { echo "$NAME: apt-get install$need failed"; exit 2; }
fi

VENV="$REPO/.venv-fault"
if ! "$VENV/bin/python" -c 'import netfilterqueue, fbclient, websocket, pytest' 2>/dev/null; then
  echo "# creating $VENV (netfilterqueue, fb-python-sdk, pytest)"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || { echo "$NAME: python3 -m venv failed"; exit 2; }
  "$VENV/bin/pip" install -q --disable-pip-version-check netfilterqueue 'fb-python-sdk>=1.2' pytest \
    || { echo "$NAME: pip install failed"; exit 2; }
fi
PY="$VENV/bin/python"
mkdir -p "$RUN_DIR"

# Runs the harness in the background so the trap can act on INT/TERM while it runs.
run_harness() {
  PYTHONPATH="$REPO/scripts/lib" PYTHONUNBUFFERED=1 "$PY" -m fault "$@" &
  HARNESS_PID=$!
  wait "$HARNESS_PID"
  local rc=$?
  HARNESS_PID=""
  return $rc
}
