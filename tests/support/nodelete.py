"""A fault injector in front of a real S3 server: a loopback HTTP proxy that forwards every request to
``rclone serve s3`` except deletions, which it refuses as S3 does for a credential without
``s3:DeleteObject`` or an object under Object Lock (403 AccessDenied).

``rclone serve s3`` has no bucket policies or object locks of its own, so this proxy is the one part
of the write-only tests that is not the real thing; everything behind it is.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.support.servers import free_port

_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
)


class NoDeleteProxy:
    """``http://127.0.0.1:<port>`` forwards to the S3 server on *upstream_port*; DELETE (and the
    multi-object ``POST ?delete``) get 403 AccessDenied. :attr:`refused` counts the refusals."""

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self.refused: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
                if self.command == "DELETE" or (self.command == "POST" and "delete" in query):
                    proxy.refused.append(f"{self.command} {self.path}")
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_DENIED)))
                    self.end_headers()
                    self.wfile.write(_DENIED)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
                headers["Content-Length"] = str(len(body))  # the Host header stays: it is signed
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    reply = upstream.getresponse()
                    data = reply.read()
                finally:
                    upstream.close()
                self.send_response(reply.status, reply.reason)
                for k, v in reply.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                # a HEAD's length is the object's (it has no body here)
                length = reply.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def config(self, remote_name: str, access_key: str, secret_key: str) -> str:
        """An rclone.conf section for the S3 server as seen through this proxy."""
        return (
            f"[{remote_name}]\ntype = s3\nprovider = Rclone\nendpoint = http://127.0.0.1:{self.port}\n"
            f"access_key_id = {access_key}\nsecret_access_key = {secret_key}\n"
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
