"""Dealing connections to worker processes: the next connection goes to the least-loaded worker.

With ``python -m serving --workers N`` the supervisor owns the listening socket. It accepts
each connection and hands its file descriptor to the worker holding the fewest open
connections (over a Unix socket pair, ``SCM_RIGHTS``); each worker reports every connection it
closes. A worker serves the connections it is dealt with uvicorn's own HTTP protocol, so
everything after the accept is plain uvicorn.

Why not ``SO_REUSEPORT``: the kernel then hashes each connection to a worker, and a few
long-lived keep-alive connections (an integration engine's connection pool, the benchmark's
clients) are spread by chance. With 8 connections and 2 workers, a 6/2 split or worse has
probability 0.29, and the worker holding 6 sets the tail latency of all of them. Dealing
gives 4/4 every time.
"""
from __future__ import annotations

import asyncio
import logging
import selectors
import socket
from typing import Callable

import uvicorn

log = logging.getLogger("serving")

_CLOSED = b"-"  # one byte per closed connection, worker -> supervisor


class ConnectionDealer:
    """Supervisor side: accept connections and deal them to workers, fewest open first.

    Parameters
    ----------
    listener : socket.socket
        Bound and listening; set non-blocking here.
    channels : list of socket.socket
        One ``AF_UNIX`` socket per worker (the supervisor's end of a socket pair).
    """

    def __init__(self, listener: socket.socket, channels: list[socket.socket]):
        if not channels:
            raise ValueError("channels: at least one worker is needed")
        self.listener = listener
        self.listener.setblocking(False)
        self.channels = list(channels)
        self.open = [0] * len(channels)  # connections dealt to each worker and not yet closed
        self.alive = [True] * len(channels)
        self._next = 0  # ties go round the workers
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        for i, channel in enumerate(self.channels):
            self._selector.register(channel, selectors.EVENT_READ, i)

    def step(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds; deal every pending connection, count every reported close."""
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                self._deal_pending()
            else:
                self._count_closed(key.data)

    def serve(self, running: Callable[[], bool], poll_seconds: float = 0.2) -> None:
        """Deal connections while ``running()`` (checked at least every ``poll_seconds``)."""
        while running():
            self.step(poll_seconds)

    def replace(self, worker: int, channel: socket.socket) -> None:
        """Deal to a new worker process in place of worker ``worker`` (which has gone)."""
        old = self.channels[worker]
        try:
            self._selector.unregister(old)
        except (KeyError, ValueError):
            pass  # already unregistered when its end was seen to close
        old.close()
        self.channels[worker] = channel
        self.open[worker] = 0
        self.alive[worker] = True
        self._selector.register(channel, selectors.EVENT_READ, worker)

    def close(self) -> None:
        self._selector.close()
        self.listener.close()
        for channel in self.channels:
            channel.close()

    def _deal_pending(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            with connection:  # the worker gets its own copy of the descriptor; this one is closed
                while (worker := self._least_loaded()) is not None:
                    try:
                        socket.send_fds(self.channels[worker], [b"c"], [connection.fileno()])
                    except OSError as exc:
                        log.error("worker %d took no connection (%s): no longer dealt to", worker, exc)
                        self.alive[worker] = False
                        continue
                    self.open[worker] += 1
                    break
                # no worker left: the connection is closed (the supervisor is stopping)

    def _least_loaded(self) -> int | None:
        """The live worker with the fewest open connections; on a tie, the first after the last one dealt to."""
        n = len(self.channels)
        live = [i for i in ((self._next + k) % n for k in range(n)) if self.alive[i]]
        if not live:
            return None
        worker = min(live, key=self.open.__getitem__)  # min keeps the first of equals
        self._next = (worker + 1) % n
        return worker

    def _count_closed(self, worker: int) -> None:
        try:
            data = self.channels[worker].recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the worker has gone
            self.alive[worker] = False
            self._selector.unregister(self.channels[worker])
            return
        self.open[worker] = max(0, self.open[worker] - data.count(_CLOSED))


class DealtServer(uvicorn.Server):
    """Worker side: a uvicorn server that serves the connections a :class:`ConnectionDealer`
    hands it instead of listening itself.

    Parameters
    ----------
    config : uvicorn.Config
    channel : socket.socket
        The worker's end of its socket pair with the supervisor.
    """

    def __init__(self, config: uvicorn.Config, channel: socket.socket):
        super().__init__(config)
        self.channel = channel
        self._adopting: set[asyncio.Task] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # no listening socket of its own
        asyncio.get_running_loop().add_reader(self.channel.fileno(), self._receive)
        log.info("worker ready: serving the connections the supervisor deals it")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().remove_reader(self.channel.fileno())
        await super().shutdown(sockets=[])
        for task in list(self._adopting):
            task.cancel()

    def _receive(self) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(self.channel, 1024, 64)
        except (BlockingIOError, InterruptedError):
            return
        if not message and not fds:  # the supervisor has gone: stop like on SIGTERM
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
            self.should_exit = True
            return
        for fd in fds:
            task = asyncio.get_running_loop().create_task(self._adopt(socket.socket(fileno=fd)))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    async def _adopt(self, connection: socket.socket) -> None:
        """Serve one dealt connection with uvicorn's HTTP protocol; report its close exactly once."""
        reported = False

        def report_closed() -> None:
            nonlocal reported
            if not reported:
                reported = True
                try:
                    self.channel.send(_CLOSED)
                except OSError:
                    pass  # the supervisor has gone; nothing to count for

        def protocol() -> asyncio.Protocol:
            http = self.config.http_protocol_class(  # type: ignore[call-arg]
                config=self.config, server_state=self.server_state, app_state=self.lifespan.state)
            lost = http.connection_lost

            def connection_lost(exc: Exception | None) -> None:
                try:
                    lost(exc)
                finally:
                    report_closed()

            http.connection_lost = connection_lost  # type: ignore[method-assign]
            return http

        connection.setblocking(False)
        try:
            await asyncio.get_running_loop().connect_accepted_socket(protocol, connection, ssl=self.config.ssl)
        except Exception as exc:  # noqa: BLE001 -- e.g. a failed TLS handshake: that client's problem only
            log.info("dealt connection not served: %s", exc)
            connection.close()
            report_closed()
