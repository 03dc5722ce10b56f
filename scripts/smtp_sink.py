"""A local SMTP sink for tests and the demo: accepts every message on loopback and writes each
one, as received, to <dir>/<n>-<recipient>.eml. Not a relay; it delivers nowhere.

Rejection mode, to play a relay that refuses mail for a while: while a file named
reject-<domain> exists in <dir>, every recipient at <domain> is refused with
"550 5.7.1" (a permanent failure). Create the file to start refusing, remove it to stop; other
domains are not affected, so tests sharing the sink use a domain of their own."""
import argparse
import asyncio
import itertools
import os
import re

from aiosmtpd.controller import Controller

counter = itertools.count(1)


class Sink:
    def __init__(self, directory):
        self.directory = directory

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = re.sub(r"[^a-z0-9.-]", "_", address.rpartition("@")[2].lower())
        if os.path.exists(os.path.join(self.directory, f"reject-{domain}")):
            return f"550 5.7.1 <{address}>: relay refuses mail for {domain} (reject-{domain} is set)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rcpt = re.sub(r"[^A-Za-z0-9@._+-]", "_", envelope.rcpt_tos[0] if envelope.rcpt_tos else "unknown")
        name = f"{os.getpid()}-{next(counter):06d}-{rcpt}.eml"
        path = os.path.join(self.directory, name)
        with open(path + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.replace(path + ".tmp", path)
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=2525)
    p.add_argument("--dir", required=True)
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    c = Controller(Sink(a.dir), hostname="127.0.0.1", port=a.port)
    c.start()
    try:
        asyncio.get_event_loop().run_forever()
    finally:
        c.stop()


if __name__ == "__main__":
    main()
