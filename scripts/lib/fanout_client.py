"""Load client for scripts/bench-fanout: behaves like N FeatBit server SDKs on /streaming.

Each connection upgrades with a real SDK token, sends data-sync {"timestamp": 0}, reads the full answer and stays
idle. Then one change is triggered over HTTP (a bootstrap to the agent, or a flag change at featbit-sim) and every connection records when its push arrives. Prints one JSON line.
Raw asyncio sockets keep the client cheap enough that it is not what is measured."""
import asyncio
import base64
import json
import os
import struct
import sys
import time
import urllib.request

from fbclient.utils import build_token


def ws_frame(text):
    payload = text.encode()
    mask = os.urandom(4)
    header = bytes([0x81])
    n = len(payload)
    if n < 126:
        header += bytes([0x80 | n])
    elif n < 65536:
        header += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        header += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frame(reader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


class Connection:
    def __init__(self):
        self.reader = None
        self.writer = None
        self.push_at = None


async def connect(host, port, secret, conn, sem):
    async with sem:
        for attempt in range(20):
            try:
                reader, writer = await asyncio.open_connection(host, port)
                break
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
        else:
            raise RuntimeError("cannot connect")
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET /streaming?type=server&token={build_token(secret)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(head.decode(errors="replace"))
        writer.write(ws_frame(json.dumps({"messageType": "data-sync", "data": {"timestamp": 0}})))
        opcode, payload = await read_frame(reader)
        assert opcode == 1 and b'"full"' in payload, payload[:200]
        conn.reader, conn.writer = reader, writer


async def await_push(conn):
    opcode, payload = await read_frame(conn.reader)
    conn.push_at = time.perf_counter()
    assert opcode == 1 and b'"patch"' in payload, payload[:200]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def run(host, port, secret, n, pid, method, trigger_url, auth, change_body_path):
    before = rss_kib(pid)
    conns = [Connection() for _ in range(n)]
    sem = asyncio.Semaphore(200)
    t_connect = time.perf_counter()
    await asyncio.gather(*(connect(host, port, secret, c, sem) for c in conns))
    connect_seconds = time.perf_counter() - t_connect
    await asyncio.sleep(2.0)  # let the agent settle (receive buffers shrink, allocations return)
    after = rss_kib(pid)
    waiters = [asyncio.ensure_future(await_push(c)) for c in conns]
    await asyncio.sleep(0.2)
    body = open(change_body_path, "rb").read()
    request = urllib.request.Request(trigger_url, data=body, method=method,
                                     headers={"Authorization": auth, "Content-Type": "application/json"})
    t0 = time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(None, lambda: urllib.request.urlopen(request, timeout=30).read())
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=60)
    latencies = [(c.push_at - t0) * 1000 for c in conns]
    for c in conns:
        c.writer.close()
    print(json.dumps({
        "connections": n,
        "connect_seconds": round(connect_seconds, 2),
        "agent_rss_before_kib": before, "agent_rss_after_kib": after,
        "rss_per_connection_kib": round((after - before) / n, 2),
        "push_p50_ms": round(pct(latencies, 50), 1), "push_p99_ms": round(pct(latencies, 99), 1),
        "push_max_ms": round(max(latencies), 1),
    }), flush=True)


if __name__ == "__main__":
    host, port, secret, n, pid, method, trigger_url, auth, change_body = sys.argv[1:10]
    asyncio.run(run(host, int(port), secret, int(n), int(pid), method, trigger_url, auth, change_body))
