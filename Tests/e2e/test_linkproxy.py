"""The cluster tests' TCP link proxy on its own: an echo server behind it, in every mode (a few seconds)."""
import socket
import threading
import time

import pytest

from linkproxy import LinkProxy


class EchoServer:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.closed = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _echo(self, conn):
        conn.settimeout(0.05)
        with conn:
            while not self.closed.is_set():
                try:
                    data = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def close(self):
        self.closed.set()
        for t in list(self.threads):
            t.join(2)
        self.sock.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo):
    p = LinkProxy("127.0.0.1", echo.port, name="test")
    yield p
    p.close()


def connect(p):
    s = socket.create_connection(("127.0.0.1", p.port), timeout=2)
    s.settimeout(2)
    return s


def recv_exactly(s, n, timeout=2.0):
    s.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError(data)
        data += chunk
    return data


def assert_silent(s, seconds=0.4):
    """Nothing arrives and the connection stays open (no EOF, no reset)."""
    s.settimeout(seconds)
    with pytest.raises(socket.timeout):
        s.recv(1)


def assert_reset(s):
    s.settimeout(2)
    with pytest.raises((ConnectionResetError, BrokenPipeError, EOFError)):
        s.sendall(b"x")
        if not s.recv(1):
            raise EOFError()


def proxy_threads():
    return [t for t in threading.enumerate() if t.name.startswith("linkproxy")]


def test_pass_forwards_both_ways_and_counts(proxy):
    s = connect(proxy)
    payload = bytes(range(256)) * 1024  # 256 KiB: more than one socket buffer
    threading.Thread(target=s.sendall, args=(payload,), daemon=True).start()
    assert recv_exactly(s, len(payload), timeout=5) == payload
    s.close()
    time.sleep(0.2)
    assert proxy.bytes_forwarded == len(payload) and proxy.bytes_returned == len(payload)
    assert proxy.connections_accepted == 1


def test_stall_holds_data_and_connections_then_delivers_in_order(proxy):
    s = connect(proxy)
    s.sendall(b"before")
    assert recv_exactly(s, 6) == b"before"
    proxy.set_mode("stall")
    s.sendall(b"held")
    assert_silent(s)
    late = connect(proxy)  # accepted, not dialled through
    late.sendall(b"late")
    assert_silent(late)
    assert proxy.open_connections() == 2
    proxy.set_mode("pass")
    assert recv_exactly(s, 4) == b"held"
    assert recv_exactly(late, 4) == b"late"
    s.close()
    late.close()


def test_blackhole_is_stall(proxy):
    proxy.set_mode("blackhole")
    assert proxy.mode == "stall"
    with pytest.raises(ValueError):
        proxy.set_mode("nonsense")


def test_cut_resets_open_connections_and_new_ones_then_heals(proxy):
    s = connect(proxy)
    s.sendall(b"ping")
    assert recv_exactly(s, 4) == b"ping"
    proxy.set_mode("cut")
    time.sleep(0.2)
    assert_reset(s)
    s.close()
    try:
        fresh = connect(proxy)  # the listener accepts, then resets at once (the connect itself may see it)
    except ConnectionResetError:
        pass
    else:
        assert_reset(fresh)
        fresh.close()
    proxy.set_mode("pass")
    again = connect(proxy)
    again.sendall(b"back")
    assert recv_exactly(again, 4) == b"back"
    again.close()


def test_cut_of_a_stalled_link_resets_held_connections(proxy):
    proxy.set_mode("stall")
    s = connect(proxy)
    s.sendall(b"held")
    assert_silent(s, 0.2)
    proxy.set_mode("cut")
    time.sleep(0.2)
    assert_reset(s)
    s.close()


def test_one_way_stall_with_two_proxies(echo):
    # Two directed links to the same target: stalling one leaves the other flowing.
    with LinkProxy("127.0.0.1", echo.port, name="a->b") as ab, LinkProxy("127.0.0.1", echo.port, name="b->a") as ba:
        sa, sb = connect(ab), connect(ba)
        ab.set_mode("stall")
        sa.sendall(b"a")
        sb.sendall(b"b")
        assert recv_exactly(sb, 1) == b"b"
        assert_silent(sa, 0.3)
        ab.set_mode("pass")
        assert recv_exactly(sa, 1) == b"a"
        sa.close()
        sb.close()


def test_target_down_resets_the_dialer():
    with socket.socket() as tmp:
        tmp.bind(("127.0.0.1", 0))
        dead_port = tmp.getsockname()[1]
    with LinkProxy("127.0.0.1", dead_port, name="dead") as p:
        try:
            s = connect(p)
        except ConnectionResetError:
            return
        assert_reset(s)
        s.close()


def test_peer_eof_is_passed_on(echo, proxy):
    s = connect(proxy)
    s.sendall(b"x")
    assert recv_exactly(s, 1) == b"x"
    echo.closed.set()  # the echo handler returns and closes its socket: FIN
    s.settimeout(2)
    assert s.recv(1) == b""
    s.close()


def test_close_joins_every_thread_even_with_held_connections(echo):
    before = len(proxy_threads())
    p = LinkProxy("127.0.0.1", echo.port, name="closing")
    open_socks = [connect(p) for _ in range(3)]
    open_socks[0].sendall(b"x")
    recv_exactly(open_socks[0], 1)
    p.set_mode("stall")
    open_socks.append(connect(p))
    time.sleep(0.2)
    assert len(proxy_threads()) >= before + 4
    started = time.monotonic()
    p.close()
    assert time.monotonic() - started < 2
    assert len(proxy_threads()) == before
    for s in open_socks:
        s.close()
