"""A tiny TCP app for the real-Envoy tests: it greets each connection with its name.

A server-first protocol (like a database's greeting), so a client learns which upstream
answered by reading, without sending anything first.
"""
from __future__ import annotations

import socket
import socketserver
import threading


class _NameHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(self.server.app_name.encode() + b"\n")
        self.request.recv(64)  # hold the connection until the client is done


class TcpNameServer(socketserver.ThreadingTCPServer):
    """A TCP app on ``host:port`` that sends ``name`` and a newline to every connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, host: str, port: int):
        super().__init__((host, port), _NameHandler)
        self.app_name = name
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


def tcp_greeting(host: str, port: int, timeout: float = 5) -> str:
    """Connect, read the greeting, close: the name of the app that answered (or "empty")."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        data = conn.recv(64)
    return data.decode().strip() or "empty"
