"""A webhook receiver that checks every request with the standardwebhooks library (not ingot's
code), for the delivery tests.

Usage: webhook_receiver.py SECRET [SECRET...]. Prints its port on the first line of stdout.
  POST /hook      verified against any of the secrets; unverifiable requests get 400 and count
                  as rejected. While failing (see /control) verified requests get 503 (with an
                  optional Retry-After) and are recorded as attempts only. Otherwise 200 and the
                  request is recorded as accepted.
  GET  /state     {"accepted": [{"id", "timestamp", "signature", "headers", "body"}],
                   "attempts": [webhook-id, ...], "rejected": [reason, ...]}
  POST /control   {"failFirst": n, "down": bool, "secrets": [...], "status": code, "retryAfter": s}
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

lock = threading.Lock()
state = {"accepted": [], "attempts": [], "rejected": []}
control = {"failFirst": 0, "down": False, "secrets": sys.argv[1:], "status": 503, "retryAfter": None}


def verify(body: bytes, headers: dict) -> bool:
    for secret in control["secrets"]:
        try:
            Webhook(secret).verify(body, headers)
            return True
        except WebhookVerificationError:
            continue
    return False


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code: int, payload, extra=None):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            self.answer(200, state)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/control":
            with lock:
                control.update(json.loads(body))
            return self.answer(200, control)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            if not verify(body, headers):
                state["rejected"].append(headers.get("webhook-id", "?"))
                return self.answer(400, {"error": "signature"})
            state["attempts"].append(headers["webhook-id"])
            if control["down"] or control["failFirst"] > 0:
                control["failFirst"] = max(0, control["failFirst"] - 1)
                extra = {"Retry-After": str(control["retryAfter"])} if control["retryAfter"] is not None else None
                return self.answer(control["status"], {"error": "down"}, extra)
            state["accepted"].append({
                "id": headers["webhook-id"],
                "timestamp": headers["webhook-timestamp"],
                "signature": headers["webhook-signature"],
                "headers": headers,
                "body": json.loads(body),
            })
        self.answer(200, {"ok": True})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
