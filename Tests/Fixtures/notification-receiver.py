#!/usr/bin/env python3
"""A webhook receiver for the notification tests: accepts POSTs on 127.0.0.1, keeps each
notification once by its idempotency key and counts the copies it dropped.

  notification-receiver.py --port N (0: any) --port-file F --log L [--delay-first S]

Every request appends one JSON line to L: {"key", "body_key", "path", "duplicate", "body"}.
The keys seen before are read back from L at start, so the receiver deduplicates across
its own restarts too. --delay-first S holds the answer to the first request for S seconds
(the test kills the daemon meanwhile: sent, but never marked delivered).
"""
import argparse
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
lock = threading.Lock()
seen = set()
delayed = False


def body_key(body):
    """The idempotency key as the body carries it: a field (generic) or in the text."""
    if isinstance(body, dict):
        if "idempotency_key" in body:
            return body["idempotency_key"]
        text = body.get("text") or body.get("content") or ""
        match = re.search(r"idempotency key: (\S+)", text)
        return match.group(1) if match else None
    return None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global delayed
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        key = self.headers.get("Idempotency-Key")
        with lock:
            duplicate = key in seen
            seen.add(key)
            with open(args.log, "a") as log:
                log.write(json.dumps({"key": key, "body_key": body_key(body), "path": self.path,
                                      "duplicate": duplicate, "body": body}) + "\n")
            hold = args.delay_first > 0 and not delayed
            delayed = True
        if hold:
            time.sleep(args.delay_first)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_):
        pass


def main():
    global args
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--delay-first", type=float, default=0)
    args = parser.parse_args()
    try:
        with open(args.log) as log:
            for line in log:
                seen.add(json.loads(line)["key"])
    except FileNotFoundError:
        pass
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    with open(args.port_file + ".tmp", "w") as out:
        out.write(str(server.server_address[1]))
    import os
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
