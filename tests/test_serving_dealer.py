"""serving.dealer.ConnectionDealer on real sockets: who gets the next connection.

(The end-to-end check, two real workers holding 4 and 4 keep-alive connections, is in
tests/test_serving_workers.py.)
"""
from __future__ import annotations

import socket

import pytest

from serving.dealer import ConnectionDealer


@pytest.fixture()
def dealer():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    pairs = [socket.socketpair() for _ in range(3)]
    d = ConnectionDealer(listener, [mine for mine, _ in pairs])
    workers = [theirs for _, theirs in pairs]
    clients: list[socket.socket] = []

    def connect(n: int) -> list[int]:
        """Open ``n`` connections, deal them; which worker got each."""
        got = []
        for _ in range(n):
            clients.append(socket.create_connection(listener.getsockname()))
            d.step(2)
            for i, w in enumerate(workers):
                if w.fileno() < 0:  # closed by the test
                    continue
                w.setblocking(False)
                try:
                    _, fds, _, _ = socket.recv_fds(w, 16, 4)
                except BlockingIOError:
                    continue
                for fd in fds:
                    socket.socket(fileno=fd).close()
                    got.append(i)
        return got

    yield d, workers, connect
    for c in clients:
        c.close()
    for w in workers:
        w.close()
    d.close()


def test_connections_go_round_the_workers_when_loads_are_equal(dealer):
    d, _, connect = dealer
    assert connect(7) == [0, 1, 2, 0, 1, 2, 0]
    assert d.open == [3, 2, 2]


def test_the_least_loaded_worker_gets_the_next_connection(dealer):
    d, workers, connect = dealer
    connect(6)
    workers[1].send(b"--")  # worker 1 closed two connections
    d.step(2)
    assert d.open == [2, 0, 2]
    assert connect(3) == [1, 1, 2]  # then equal loads: the turn after the last one dealt to


def test_a_worker_that_has_gone_is_dealt_nothing(dealer):
    d, workers, connect = dealer
    workers[0].close()  # its channel ends: the worker process has exited
    d.step(2)
    assert d.alive == [False, True, True]
    assert connect(4) == [1, 2, 1, 2]


def test_a_dealer_needs_a_worker():
    with socket.socket() as listener, pytest.raises(ValueError, match="channels"):
        ConnectionDealer(listener, [])
