"""A minimal HTTP/1.1 client on one keep-alive connection, shared by the benchmarks.

http.client parses every answer's headers with the `email` package: ~100 us of client CPU a
call, more than a tarn write costs the server. Under 8 client processes on this project's
2-core machines that made the clients, not the server, the bottleneck. This client sends a
request in one `sendall` and reads the answer by its Content-Length (or chunks), so what is
timed is the server and the loopback round trip. Every server, tarn or not, gets the same one.
"""

import socket


class StaleConnection(ConnectionError):
    """The server had closed the connection before the request was sent."""


class KeepAliveClient:
    def __init__(self, host, port, timeout=120):
        self.address = (host, port)
        self.timeout = timeout
        self.socket = None
        self.pending = b""

    @staticmethod
    def request(method, path, headers, body=b""):
        """The bytes of one request."""
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        if body or method != "GET":
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def exchange(self, request):
        """Sends `request` (bytes from `request`), returns (status, body). A connection the
        server closed while idle (no byte of an answer came back) is opened again once."""
        if self.socket is None:
            self._connect()
        try:
            self.socket.sendall(request)
            return self._answer()
        except (StaleConnection, BrokenPipeError):
            self._connect()
            self.socket.sendall(request)
            return self._answer()

    def _connect(self):
        self.close()
        self.socket = socket.create_connection(self.address, timeout=self.timeout)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def _answer(self):
        data = self.pending
        while (end := data.find(b"\r\n\r\n")) < 0:
            try:
                data += self._receive()
            except ConnectionError as err:
                if data:
                    raise
                raise StaleConnection() from err
        head, data = data[:end].decode("latin-1"), data[end + 4:]
        status = int(head[9:12])
        headers = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(data) < length:
                data += self._receive()
            body, self.pending = data[:length], data[length:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body, self.pending = self._chunked(data)
        else:
            raise RuntimeError(f"an answer with neither Content-Length nor chunks: {head!r}")
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def _chunked(self, data):
        body = b""
        while True:
            while (end := data.find(b"\r\n")) < 0:
                data += self._receive()
            size = int(data[:end].split(b";")[0], 16)
            data = data[end + 2:]
            while len(data) < size + 2:
                data += self._receive()
            body, data = body + data[:size], data[size + 2:]
            if size == 0:
                # No trailers are expected: the empty line after the last chunk was read.
                return body, data

    def _receive(self):
        chunk = self.socket.recv(1 << 20)
        if not chunk:
            self.close()
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self):
        if self.socket is not None:
            self.socket.close()
            self.socket = None
