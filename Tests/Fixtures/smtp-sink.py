#!/usr/bin/env python3
"""A minimal SMTP sink for the notification tests (plain SMTP on 127.0.0.1).

  smtp-sink.py --port-file F --log L [--user U --password P]

Speaks EHLO/HELO, AUTH PLAIN (checked against --user/--password when given), MAIL, RCPT,
DATA (undoing dot-stuffing), RSET, NOOP, QUIT. Each message appends a JSON line to L:
{"message_id", "key", "from", "to", "duplicate", "data", "auth"}; a Message-ID seen before
is a duplicate. Reads its earlier log at start, so it deduplicates across restarts.
"""
import argparse
import base64
import json
import os
import re
import socketserver
import threading

args = None
lock = threading.Lock()
seen = set()


class Session(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write((line + "\r\n").encode())

    def handle(self):
        self.reply("220 sink ESMTP ready")
        sender, recipients, auth = None, [], None
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
            elif line.upper().startswith("AUTH PLAIN "):
                parts = base64.b64decode(line[11:]).split(b"\0")
                user, password = parts[1].decode(), parts[2].decode()
                if args.user and (user != args.user or password != args.password):
                    self.reply("535 authentication failed")
                else:
                    auth = user
                    self.reply("235 ok")
            elif verb == "MAIL":
                sender = re.search(r"<(.*)>", line).group(1)
                recipients = []
                self.reply("250 ok")
            elif verb == "RCPT":
                recipients.append(re.search(r"<(.*)>", line).group(1))
                self.reply("250 ok")
            elif verb == "DATA":
                self.reply("354 go ahead")
                lines = []
                while True:
                    data = self.rfile.readline().decode("utf-8", "replace")
                    if data in (".\r\n", ".\n", ""):
                        break
                    lines.append(data[1:] if data.startswith(".") else data)
                text = "".join(lines)
                message_id = re.search(r"^Message-ID: (.*)$", text, re.M | re.I)
                key = re.search(r"^Idempotency-Key: (.*)$", text, re.M | re.I)
                message_id = message_id.group(1).strip() if message_id else None
                with lock:
                    duplicate = message_id in seen
                    seen.add(message_id)
                    with open(args.log, "a") as log:
                        log.write(json.dumps({"message_id": message_id, "key": key.group(1).strip() if key else None,
                                              "from": sender, "to": recipients, "duplicate": duplicate,
                                              "data": text, "auth": auth}) + "\n")
                self.reply("250 queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


def main():
    global args
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    try:
        with open(args.log) as log:
            for line in log:
                seen.add(json.loads(line)["message_id"])
    except FileNotFoundError:
        pass
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", args.port), Session)
    with open(args.port_file + ".tmp", "w") as out:
        out.write(str(server.server_address[1]))
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
