#!/usr/bin/env python3
"""cynode-inference-shim: a loopback TCP port that forwards every connection byte-for-byte to a Unix socket.

It runs in a network-less container whose network namespace the sandbox joins (worker.md §7.3), so
`OLLAMA_BASE_URL=http://localhost:11434` inside the job reaches only the job's inference-proxy socket.  It speaks no
HTTP and answers nothing itself: when the socket is missing the client's connection is simply closed.
Baked into the sandbox image as /usr/local/bin/cynode-inference-shim; stdlib only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close so the other side sees the end of the request (or response)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _serve_one(upstream: str, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        up_r, up_w = await asyncio.open_unix_connection(upstream)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
    finally:
        for w in (up_w, client_w):
            w.close()
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()


async def serve(host: str, port: int, upstream: str) -> None:
    server = await asyncio.start_server(lambda r, w: _serve_one(upstream, r, w), host, port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cynode-inference-shim", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:11434", help="host:port to listen on (loopback)")
    parser.add_argument("--upstream", default="/run/cynode/inference-proxy.sock", help="Unix socket to forward to")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not port.isdigit():
        print(f"cynode-inference-shim: invalid --listen {args.listen!r}", file=sys.stderr)
        return 2
    asyncio.run(serve(host or "127.0.0.1", int(port), args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
