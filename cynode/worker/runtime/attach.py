"""Reading a container's output from the Docker attach stream, stdout and stderr kept apart.

The stream is attached before the container starts, so nothing printed early is lost, and it ends when the container
exits, so nothing printed late is lost either.  Without a TTY the engine multiplexes both streams into frames:
an 8-byte header (stream id 1 = stdout, 2 = stderr; bytes 4-7 the payload size, big-endian) then the payload.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from cynode.worker.output import BoundedCapture

READ_SIZE = 64 * 1024


class StreamDemux:
    """Routes frame payloads to the stdout / stderr captures; frames may be split across reads anywhere."""

    def __init__(self, stdout: BoundedCapture, stderr: BoundedCapture) -> None:
        self.stdout, self.stderr = stdout, stderr
        self._header = bytearray()
        self._remaining = 0  # payload bytes of the current frame still to come
        self._target: BoundedCapture | None = None

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._remaining:
                part, view = view[: self._remaining], view[self._remaining:]
                self._remaining -= len(part)
                if self._target is not None:
                    self._target.feed(part)
                continue
            need = 8 - len(self._header)
            self._header += view[:need]
            view = view[need:]
            if len(self._header) == 8:
                stream = self._header[0]
                self._remaining = int.from_bytes(self._header[4:8], "big")
                self._target = self.stdout if stream == 1 else self.stderr if stream == 2 else None
                self._header.clear()


class AttachReader(threading.Thread):
    """Pumps one attach socket into a StreamDemux until EOF, then sets `done` and `wake`."""

    def __init__(self, sock: Any, demux: StreamDemux, wake: threading.Event) -> None:
        super().__init__(daemon=True, name="sandbox-output")
        self._io = sock
        self._raw: socket.socket = getattr(sock, "_sock", sock)  # docker-py hands out a SocketIO around the socket
        self.demux = demux
        self.done = threading.Event()
        self._wake = wake

    def run(self) -> None:
        try:
            while data := self._raw.recv(READ_SIZE):
                self.demux.feed(data)
        except OSError:
            pass  # the socket was shut down by abort(), or the engine went away: keep what arrived
        finally:
            self.done.set()
            self._wake.set()
            self.close()

    def abort(self) -> None:
        """Unblock a reader whose stream never ends (an engine that misbehaves)."""
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        for closable in (self._io, self._raw):
            with contextlib.suppress(OSError):
                closable.close()
