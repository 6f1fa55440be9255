"""NFQUEUE delayer (cluster-design.md Appendix B; replaces netem, which this kernel lacks).

Holds each queued packet for DELAY ms (± JITTER ms, uniform), optionally drops a fraction, then accepts it.
usage: python delayq.py QUEUE_NUM DELAY_MS [JITTER_MS] [LOSS_FRACTION]
Stops after DELAYQ_MAX_S seconds (default 60) or on SIGTERM, releasing every held packet. With DELAYQ_LOG=path it
also appends one line per TCP packet carrying data: "mono_s src sport dst dport payload_bytes" (for heartbeat
inter-arrival figures).
"""
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time

from netfilterqueue import NetfilterQueue

qnum = int(sys.argv[1])
delay = float(sys.argv[2]) / 1000
jitter = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.0
loss = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
log_path = os.environ.get("DELAYQ_LOG")
log = open(log_path, "a", buffering=1 << 16) if log_path else None
heap, seq = [], 0
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)


def note(pkt, now):
    data = pkt.get_payload()
    if len(data) < 20 or data[9] != 6:
        return
    ihl = (data[0] & 0x0F) * 4
    total = struct.unpack("!H", data[2:4])[0]
    sport, dport = struct.unpack("!HH", data[ihl:ihl + 4])
    doff = (data[ihl + 12] >> 4) * 4
    payload = total - ihl - doff
    if payload > 0:
        log.write(f"{now:.6f} {socket.inet_ntoa(data[12:16])} {sport} {socket.inet_ntoa(data[16:20])} {dport} "
                  f"{payload}\n")


def cb(pkt):
    global seq
    now = time.monotonic()
    if log is not None:
        note(pkt, now)
    if loss and random.random() < loss:
        pkt.drop()
        return
    seq += 1
    hold = max(0.0, delay + random.uniform(-jitter, jitter))
    heapq.heappush(heap, (now + hold, seq, pkt))


nfq = NetfilterQueue()
nfq.bind(qnum, cb, max_len=4096)
fd = nfq.get_fd()
print(f"delayq-start queue {qnum} delay {delay * 1000:.0f} ms jitter {jitter * 1000:.0f} ms loss {loss}: bound",
      file=sys.stderr, flush=True)
end = time.monotonic() + float(os.environ.get("DELAYQ_MAX_S", "60"))
while time.monotonic() < end and not stop:
    now = time.monotonic()
    while heap and heap[0][0] <= now:
        heapq.heappop(heap)[2].accept()  # verdicts may be issued after the callback returned
    timeout = max(0.0, min(0.05, heap[0][0] - now)) if heap else 0.05
    try:
        if select.select([fd], [], [], timeout)[0]:
            nfq.run(block=False)
    except InterruptedError:
        pass
for _, _, p in heap:
    p.accept()
nfq.unbind()
if log is not None:
    log.close()
print(f"delayq-stop queue {qnum}", file=sys.stderr, flush=True)
