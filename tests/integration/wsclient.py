"""A small WebSocket client for Consilium's /ws (core/net/PROTOCOL.md).

On python3-websocket (Debian's `websocket` module, run by /usr/bin/python3):

    import wsclient
    c = wsclient.connect("ws://127.0.0.1:%d/ws" % port, token)   # or via="header"
    hello = c.recv_json()                      # {"type":"hello",...}
    c.send_json({"op": "subscribe", "slides": ["S"], "req": 1})
    reply = c.wait(lambda m: m.get("req") == 1)
    events = c.collect(lambda m: m.get("type") == "event", count=3)
    c.close()

recv_json() answers server pings by itself, returns None on timeout and
raises Closed (with .code, the server's close code) when the server closes.
"""
import json
import ssl
import struct
import time

import websocket


class Closed(Exception):
    """The server closed the connection; .code is its close code (None: no close frame)."""

    def __init__(self, code, reason=""):
        super().__init__("closed with %s %s" % (code, reason))
        self.code = code
        self.reason = reason


class Client:
    def __init__(self, ws):
        self.ws = ws
        self.close_code = None
        self.closed = False
        self.pings = 0  # server pings seen (answered)

    def send_json(self, obj):
        self.ws.send(json.dumps(obj))

    def send_text(self, text):
        self.ws.send(text)

    def send_binary(self, data):
        self.ws.send(data, opcode=websocket.ABNF.OPCODE_BINARY)

    def recv_frame(self, timeout=5.0):
        """One data frame as (opcode, bytes), or None on timeout. Raises Closed."""
        if self.closed:
            raise Closed(self.close_code)
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                return None
            self.ws.settimeout(left)
            try:
                op, frame = self.ws.recv_data_frame(control_frame=True)
            except websocket.WebSocketTimeoutException:
                return None
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                self.closed = True
                raise Closed(self.close_code)
            if op == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data or b""
                self.close_code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                reason = data[2:].decode(errors="replace")
                self.closed = True
                try:
                    self.ws.send_close()
                    self.ws.shutdown()
                except Exception:
                    pass
                raise Closed(self.close_code, reason)
            if op == websocket.ABNF.OPCODE_PING:
                self.pings += 1
                continue
            if op == websocket.ABNF.OPCODE_PONG:
                continue
            return op, frame.data

    def recv_json(self, timeout=5.0):
        """The next JSON message (a dict), or None on timeout. Raises Closed."""
        f = self.recv_frame(timeout)
        if f is None:
            return None
        data = f[1]
        return json.loads(data.decode() if isinstance(data, bytes) else data)

    def wait(self, pred, timeout=5.0):
        """The first message for which pred(msg) is true (others are dropped), or None."""
        deadline = time.time() + timeout
        while True:
            m = self.recv_json(max(0.0, deadline - time.time()))
            if m is None:
                return None
            if pred(m):
                return m

    def collect(self, pred=lambda m: True, count=None, timeout=5.0, until=None):
        """Messages matching pred, until `count` of them arrived, until(msg) is
        true for one (included), or the timeout; the list so far is returned."""
        out = []
        deadline = time.time() + timeout
        while count is None or len(out) < count:
            left = deadline - time.time()
            if left <= 0:
                break
            m = self.recv_json(left)
            if m is None:
                break
            if pred(m):
                out.append(m)
            if until is not None and until(m):
                break
        return out

    def wait_closed(self, timeout=5.0):
        """Read until the server closes; returns its close code, or 'timeout'."""
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                self.recv_frame(max(0.01, deadline - time.time()))
        except Closed as e:
            return e.code
        return "timeout"

    def close(self, code=1000):
        if not self.closed:
            try:
                self.ws.close(status=code, timeout=2)
            except Exception:
                pass
        self.closed = True
        try:
            self.ws.shutdown()
        except Exception:
            pass


def connect(url, token, via="query", timeout=10.0, headers=None):
    """Open url (ws:// or wss://; a wss certificate is not verified) with the
    token as ?access_token= (via="query") or Authorization (via="header")."""
    h = list(headers or [])
    if token is not None and via == "header":
        h.append("Authorization: Bearer " + token)
    elif token is not None:
        url += ("&" if "?" in url else "?") + "access_token=" + token
    sslopt = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    ws = websocket.create_connection(url, header=h, timeout=timeout, sslopt=sslopt,
                                     enable_multithread=True)
    return Client(ws)
