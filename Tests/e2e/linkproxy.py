"""A TCP link proxy for one directed mesh link, for the cluster end-to-end tests and benchmarks.

Each agent dials its own outbound connection to every peer and sends all its messages on it, so the proxy that node
A's `Peers` entry for B points at (and that forwards to B's real cluster address) carries only A's messages to B:
cutting or stalling the A->B proxy alone is a one-way fault, cutting both A->B and B->A a symmetric one.

Modes (set at any time with `set_mode`):
- ``pass``: forward both ways.
- ``cut``: every open connection is closed with RST on both sides; new connections are accepted and reset at once
  (the dialer sees its connection reset, as when the peer's host answers with RST).
- ``stall`` (alias ``blackhole``): connections stay open, nothing is read or forwarded; new connections are accepted
  and held without dialling the target. The sender's data waits in the kernel buffers (it fills up, as on a link that
  has gone silent); back in ``pass``, the held bytes are forwarded in order.

Bounded: one listener thread plus one thread per accepted connection; every blocking call has a short timeout, and
``close()`` stops and joins them all. Counters: ``bytes_forwarded`` (from the dialer to the target, i.e. the link's
direction) and ``bytes_returned`` (target -> dialer), ``connections_accepted``.
"""
import selectors
import socket
import struct
import threading
import time

MODES = ("pass", "cut", "stall")
_POLL = 0.05


def _reset(sock):
    """Close with RST (SO_LINGER on, timeout 0)."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _close(sock):
    if sock is None:
        return
    try:
        sock.close()
    except OSError:
        pass


class LinkProxy:
    def __init__(self, target_host, target_port, listen_host="127.0.0.1", listen_port=0, name=None):
        self.target = (target_host, target_port)
        self.name = name or f"->{target_host}:{target_port}"
        self._mode = "pass"
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._threads = []
        self._conns = {}  # accepted socket -> the mode generation its thread last acted on
        self._generation = 0
        self.bytes_forwarded = 0
        self.bytes_returned = 0
        self.connections_accepted = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, listen_port))
        self._listener.listen(64)
        self._listener.settimeout(_POLL)
        self.host, self.port = self._listener.getsockname()[:2]
        self._start(self._accept_loop, "accept")

    # -- control ---------------------------------------------------------------------------------------------------

    @property
    def mode(self):
        return self._mode

    def set_mode(self, mode, timeout=2.0):
        """Switch modes; returns once every open connection has taken the new mode in (bounded by `timeout`), so
        that nothing more is forwarded after a cut or stall returns."""
        if mode == "blackhole":
            mode = "stall"
        if mode not in MODES:
            raise ValueError(f"unknown link mode {mode!r}")
        with self._lock:
            self._mode = mode
            self._generation += 1
            generation = self._generation
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(seen >= generation for seen in self._conns.values()):
                    return
            time.sleep(0.005)

    def open_connections(self):
        with self._lock:
            return len(self._conns)

    def close(self, timeout=5.0):
        """Stop accepting, close every connection, join every thread (bounded)."""
        self._closed.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        _close(self._listener)
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"link proxy {self.name}: threads still running after close: {alive}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- internals -------------------------------------------------------------------------------------------------

    def _start(self, target, label, *args):
        t = threading.Thread(target=target, args=args, name=f"linkproxy{self.name}:{label}", daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _accept_loop(self):
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._closed.is_set():
                    return
                time.sleep(_POLL)
                continue
            self.connections_accepted += 1
            if self._mode == "cut":
                _reset(client)
                continue
            self._start(self._serve, f"conn{self.connections_accepted}", client)

    def _serve(self, client):
        upstream = None
        conn = client
        with self._lock:
            self._conns[conn] = self._generation
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Held until the link passes (a connection accepted while stalled is not dialled through yet).
            while self._take_mode(conn) == "stall" and not self._closed.is_set():
                time.sleep(_POLL / 5)
            if self._closed.is_set() or self._mode == "cut":
                _reset(client)
                client = None
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                # The target refused (its process is gone): the dialer sees its connection reset.
                _reset(client)
                client = None
                return
            self._pump(client, upstream)
        finally:
            with self._lock:
                self._conns.pop(conn, None)
            # _pump leaves both sockets to be closed here (FIN unless a reset was already done).
            _close(client)
            _close(upstream)

    def _pump(self, client, upstream):
        client.settimeout(_POLL)
        upstream.settimeout(_POLL)
        pending = {client: b"", upstream: b""}  # bytes read from the key, not yet written to the other side
        other = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ)
            sel.register(upstream, selectors.EVENT_READ)
            while True:
                if self._closed.is_set():
                    return
                mode = self._take_mode(client)  # this whole iteration acts on it
                if mode == "cut":
                    _reset(client)
                    _reset(upstream)
                    return
                if mode == "stall":
                    time.sleep(_POLL / 5)
                    continue
                # Flush what an earlier write could not take yet.
                for src in (client, upstream):
                    if pending[src]:
                        try:
                            n = other[src].send(pending[src])
                        except socket.timeout:
                            n = 0
                        except OSError:
                            _reset(client)
                            _reset(upstream)
                            return
                        self._count(src is client, n)
                        pending[src] = pending[src][n:]
                events = sel.select(timeout=_POLL / 5)
                for key, _ in events:
                    src = key.fileobj
                    if pending[src]:
                        continue  # back-pressure: do not read more from this side until its bytes are written
                    try:
                        data = src.recv(65536)
                    except socket.timeout:
                        continue
                    except OSError:
                        _reset(client)
                        _reset(upstream)
                        return
                    if not data:
                        return  # EOF from one side: close both (FIN), the protocol needs no half-close
                    pending[src] = data
                    try:
                        n = other[src].send(data)
                    except socket.timeout:
                        n = 0
                    except OSError:
                        _reset(client)
                        _reset(upstream)
                        return
                    self._count(src is client, n)
                    pending[src] = data[n:]

    def _take_mode(self, conn):
        """The current mode, recording that `conn`'s thread acts on it from now on."""
        with self._lock:
            mode = self._mode
            if conn in self._conns:
                self._conns[conn] = self._generation
        return mode

    def _count(self, forward, n):
        if not n:
            return
        with self._lock:
            if forward:
                self.bytes_forwarded += n
            else:
                self.bytes_returned += n
