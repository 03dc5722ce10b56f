#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for the local AWS emulator (a test utility; loopback only).

It sits between the worker and moto server and, per service, answers a seeded-random share of
calls with a fault instead of forwarding them:

  throttle    the service's own throttling error (Cognito/DynamoDB/SQS: HTTP 400 JSON `__type`;
              SES v2: HTTP 429 with `x-amzn-ErrorType: TooManyRequestsException`)
  error5xx    HTTP 500 (InternalErrorException / InternalServerError / InternalFailure) or 503
              (ServiceUnavailable), half each
  slow        sleeps `slow_seconds`, then forwards
  drop        closes the connection without answering (the call never reached the service)
  drop_after  forwards, then closes the connection without answering (the call took effect but
              the caller never learns it)

and `down: true` fails every call of the service (`down_mode`: "5xx" (503, default) or "drop").

Services are told apart the way AWS does: `X-Amz-Target` prefix `AWSCognitoIdentityProviderService.`
(cognito), `DynamoDB_20120810.` (dynamodb), `AmazonSQS.` (sqs); SES v2 is REST: a path starting
`/v2/email` (ses). Anything else (moto's own /moto-api) is forwarded untouched.

An account-wide quota on named operations, the way Cognito's and SES's rate quotas work: a
token bucket of `rate` calls per second holding `burst` (default: one second's worth) shared by
every caller; a call beyond it gets the service's throttling error (Cognito:
TooManyRequestsException) and never reaches the emulator. `competitor_rate` adds another
consumer of the same quota that the workers cannot see (the application's own sign-ups): it
takes tokens at that average rate, at random (Poisson) moments, and is counted apart:

  {"quotas": [{"name": "UserCreation", "service": "cognito", "operations": ["AdminCreateUser"],
               "rate": 8, "burst": 8, "competitor_rate": 2.4}]}

`GET /__stats` then has `quotas.<name>`: `allowed`, `throttled` (the workers' calls), the
competitor's `competitor_allowed` / `competitor_throttled`, and `allowed_at` / `competitor_at`
(seconds since the proxy started, of every allowed call).

`"serialize": ["dynamodb:UpdateItem"]` forwards those calls one at a time: moto applies
concurrent updates of one item without a lock (two `ADD`s can both read the old value), where
DynamoDB applies them atomically; the fleet's shared rate budget relies on that.

`"suppressed": {"jane@example.com": "BOUNCE"}` plays the SES account-level suppression list,
which moto lacks: `GetSuppressedDestination` for a listed address is answered the way SES
answers it (200, `SuppressedDestination` with the reason); any other address goes to moto, whose
404 means "not on the list".

Configuration is JSON, e.g.
  {"seed": 7, "services": {"cognito": {"throttle": 0.07, "error5xx": 0.07, "drop": 0.06},
                           "ses": {"down": true}}}
given with --config FILE (re-read whenever the file changes) and/or replaced at run time with
`POST /__faults` (same JSON; a "seed" reseeds the generator). `GET /__faults` shows it,
`GET /__stats` returns counters per service (calls, forwarded, one per fault kind, operations),
`POST /__stats/reset` zeroes them.

Usage:
  python3 scripts/fault_proxy.py --listen 127.0.0.1:0 --upstream http://127.0.0.1:5055 \
      [--config faults.json] [--seed 7]
The first line on stdout is `listening 127.0.0.1:PORT`. Standard library only.
"""

import argparse
import http.client
import ipaddress
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULT_KINDS = ("throttle", "error5xx", "slow", "drop", "drop_after")
SERVICES = ("cognito", "dynamodb", "sqs", "ses")
TARGET_PREFIXES = {
    "AWSCognitoIdentityProviderService.": "cognito",
    "DynamoDB_20120810.": "dynamodb",
    "AmazonSQS.": "sqs",
}
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


def is_loopback_host(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def service_of(path, headers):
    """The service a request is for, or None (forwarded untouched)."""
    target = headers.get("X-Amz-Target", "")
    for prefix, service in TARGET_PREFIXES.items():
        if target.startswith(prefix):
            return service, target[len(prefix):]
    if path.startswith("/v2/email"):
        parts = [p for p in urllib.parse.urlsplit(path).path.split("/") if p]
        # /v2/email/outbound-emails -> outbound-emails; /v2/email/identities/x -> identities
        return "ses", parts[2] if len(parts) > 2 else "email"
    return None, None


def error_response(service, kind, rng, status=None):
    """(status, headers, body) of an injected error in the service's own protocol. For
    "error5xx", `status` picks 500 or 503 (random when None)."""
    if kind == "throttle":
        status = 429 if service == "ses" else 400
        code = {
            "cognito": "TooManyRequestsException",
            "dynamodb": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
            "sqs": "com.amazonaws.sqs#ThrottlingException",
            "ses": "TooManyRequestsException",
        }[service]
        message = "Rate exceeded (injected by fault_proxy)"
    else:
        if status is None:
            status = 503 if rng.random() < 0.5 else 500
        if status == 503:
            code = {
                "cognito": "ServiceUnavailable",
                "dynamodb": "com.amazonaws.dynamodb.v20120810#ServiceUnavailable",
                "sqs": "com.amazonaws.sqs#ServiceUnavailable",
                "ses": "ServiceUnavailable",
            }[service]
        else:
            code = {
                "cognito": "InternalErrorException",
                "dynamodb": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                "sqs": "com.amazonaws.sqs#InternalError",
                "ses": "InternalFailure",
            }[service]
        message = "Injected server error (fault_proxy)"
    short = code.split("#")[-1]
    headers = {"x-amzn-RequestId": "fault-proxy-%08x" % rng.getrandbits(32)}
    if service == "ses":
        headers["Content-Type"] = "application/json"
        headers["x-amzn-ErrorType"] = short
        body = {"message": message}
    else:
        json_version = "1.1" if service == "cognito" else "1.0"
        headers["Content-Type"] = "application/x-amz-json-" + json_version
        headers["x-amzn-ErrorType"] = short
        body = {"__type": code, "message": message}
        if service == "sqs":
            query_code = "RequestThrottled" if kind == "throttle" else short
            side = "Sender" if kind == "throttle" else "Receiver"
            headers["x-amzn-query-error"] = "%s;%s" % (query_code, side)
    return status, headers, json.dumps(body).encode()


class Quota:
    """An account-wide token bucket on some operations of one service, with an optional unseen
    competitor taking tokens too. Guarded by the owning Faults' lock."""

    def __init__(self, spec, started, rng_seed):
        if not isinstance(spec, dict):
            raise ValueError("a quota is an object")
        self.name = str(spec.get("name", "quota"))
        self.service = spec.get("service")
        if self.service not in SERVICES:
            raise ValueError("quota %s: unknown service %r" % (self.name, self.service))
        self.operations = set(spec.get("operations") or [])
        if not self.operations:
            raise ValueError("quota %s: name the operations it covers" % self.name)
        self.rate = float(spec.get("rate", 0))
        if self.rate <= 0:
            raise ValueError("quota %s: rate must be > 0" % self.name)
        self.burst = float(spec.get("burst", self.rate))
        self.competitor_rate = float(spec.get("competitor_rate", 0))
        self.tokens = self.burst
        self.refilled = time.monotonic()
        self.started = started
        self.rng = random.Random(rng_seed)
        self.stats = {"allowed": 0, "throttled": 0, "competitor_allowed": 0,
                      "competitor_throttled": 0, "allowed_at": [], "competitor_at": []}

    def covers(self, service, op):
        return service == self.service and op in self.operations

    def take(self):
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Faults:
    """The configuration, the seeded generator and the counters, behind one lock."""

    def __init__(self, seed, config_path):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.config = {"services": {}}
        self.config_path = config_path
        self.config_mtime = None
        self.stats = {}
        self.started = time.time()
        self.quotas = []
        self.generation = 0
        self.serial = threading.Lock()
        self.reload_if_changed()

    def reload_if_changed(self):
        if not self.config_path:
            return
        try:
            mtime = os.stat(self.config_path).st_mtime_ns
        except OSError:
            return
        if mtime == self.config_mtime:
            return
        self.config_mtime = mtime
        try:
            with open(self.config_path, encoding="utf-8") as f:
                self.set_config(json.load(f))
        except (OSError, ValueError) as e:
            print("fault_proxy: ignoring %s: %s" % (self.config_path, e), file=sys.stderr)

    def set_config(self, config):
        if not isinstance(config, dict) or not isinstance(config.get("services", {}), dict):
            raise ValueError('expected {"services": {...}}')
        for name, rules in config.get("services", {}).items():
            if name not in SERVICES:
                raise ValueError("unknown service %r (known: %s)" % (name, ", ".join(SERVICES)))
            for key in rules:
                if key not in FAULT_KINDS + ("down", "down_mode", "slow_seconds"):
                    raise ValueError("%s: unknown key %r" % (name, key))
            total = sum(float(rules.get(k, 0)) for k in FAULT_KINDS)
            if total > 1.0 + 1e-9:
                raise ValueError("%s: fault shares add up to %.3f > 1" % (name, total))
        specs = config.get("quotas", [])
        if not isinstance(specs, list):
            raise ValueError('"quotas" is a list')
        quotas = [Quota(q, self.started, i + 1) for i, q in enumerate(specs)]
        with self.lock:
            if "seed" in config:
                self.rng = random.Random(config["seed"])
            self.config = {"services": config.get("services", {})}
            self.config.update({k: v for k, v in config.items() if k != "services"})
            self.quotas = quotas
            self.generation += 1
            generation = self.generation
        for q in quotas:
            if q.competitor_rate > 0:
                threading.Thread(target=self.compete, args=(q, generation), daemon=True).start()

    def compete(self, quota, generation):
        """The unseen competitor: takes quota tokens at random moments until reconfigured."""
        while True:
            time.sleep(quota.rng.expovariate(quota.competitor_rate))
            with self.lock:
                if self.generation != generation:
                    return
                if quota.take():
                    quota.stats["competitor_allowed"] += 1
                    quota.stats["competitor_at"].append(round(time.time() - self.started, 3))
                else:
                    quota.stats["competitor_throttled"] += 1

    def admit(self, service, op):
        """False when an account-wide quota covering this call is spent (throttle it)."""
        with self.lock:
            for q in self.quotas:
                if q.covers(service, op):
                    if not q.take():
                        q.stats["throttled"] += 1
                        return False
                    q.stats["allowed"] += 1
                    q.stats["allowed_at"].append(round(time.time() - self.started, 3))
        return True

    def count(self, service, key, op=None):
        with self.lock:
            s = self.stats.setdefault(
                service,
                {"calls": 0, "forwarded": 0, "down": 0, "upstream_errors": 0, "ops": {}},
            )
            s[key] = s.get(key, 0) + 1
            if op is not None and key == "calls":
                s["ops"][op] = s["ops"].get(op, 0) + 1

    def decide(self, service):
        """(fault kind or None, extra): what to do with one call."""
        self.reload_if_changed()
        with self.lock:
            rules = self.config.get("services", {}).get(service, {})
            if rules.get("down"):
                return "down", rules.get("down_mode", "5xx")
            r = self.rng.random()
            edge = 0.0
            for kind in FAULT_KINDS:
                edge += float(rules.get(kind, 0))
                if r < edge:
                    return kind, float(rules.get("slow_seconds", 2.0))
            return None, None

    def snapshot(self):
        with self.lock:
            return {
                "uptime_seconds": round(time.time() - self.started, 3),
                "services": json.loads(json.dumps(self.stats)),
                "quotas": {q.name: json.loads(json.dumps(q.stats)) for q in self.quotas},
            }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault_proxy"

    def log_message(self, format, *args):  # noqa: A002 - quiet unless asked
        if self.server.verbose:
            sys.stderr.write("fault_proxy: " + (format % args) + "\n")

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_raw(self, status, headers, body):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, value):
        self.send_raw(status, {"Content-Type": "application/json"}, json.dumps(value).encode())

    def drop(self):
        """Closes the connection without a response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def control(self, body):
        faults = self.server.faults
        if self.path == "/__stats" and self.command == "GET":
            return self.send_json(200, faults.snapshot())
        if self.path == "/__stats/reset" and self.command == "POST":
            with faults.lock:
                faults.stats = {}
                for q in faults.quotas:
                    q.stats = {k: ([] if isinstance(v, list) else 0) for k, v in q.stats.items()}
            return self.send_json(200, {"ok": True})
        if self.path == "/__faults" and self.command == "GET":
            with faults.lock:
                return self.send_json(200, faults.config)
        if self.path == "/__faults" and self.command == "POST":
            try:
                faults.set_config(json.loads(body or b"{}"))
            except (ValueError, TypeError) as e:
                return self.send_json(400, {"error": str(e)})
            with faults.lock:
                return self.send_json(200, faults.config)
        return self.send_json(404, {"error": "unknown control path"})

    def forward(self, body):
        """(status, headers, body) from the upstream, or None if it could not be reached."""
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP}
            return resp.status, out, data
        except (OSError, http.client.HTTPException) as e:
            self.log_message("upstream error: %s", e)
            return None
        finally:
            conn.close()

    def suppressed_answer(self):
        """SES v2 GetSuppressedDestination's answer for a listed address, else None."""
        prefix = "/v2/email/suppression/addresses/"
        if self.command != "GET" or not self.path.startswith(prefix):
            return None
        address = urllib.parse.unquote(self.path[len(prefix):].split("?")[0]).lower()
        with self.server.faults.lock:
            listed = {k.lower(): v for k, v in self.server.faults.config.get("suppressed", {}).items()}
        if address not in listed:
            return None
        return {"SuppressedDestination": {
            "EmailAddress": address,
            "Reason": listed[address],
            "LastUpdateTime": int(time.time()) - 3600,
            "Attributes": {"MessageId": "0100018c-suppressed", "FeedbackId": "0100018c-feedback"},
        }}

    def handle_any(self):
        body = self.read_body()
        if self.path.startswith("/__"):
            return self.control(body)
        faults = self.server.faults
        service, op = service_of(self.path, self.headers)
        if service is None:
            answer = self.forward(body)
            if answer is None:
                return self.send_json(502, {"error": "upstream unreachable"})
            return self.send_raw(*answer)
        faults.count(service, "calls", op)
        suppressed = self.suppressed_answer()
        if suppressed is not None:
            faults.count(service, "suppressed")
            return self.send_json(200, suppressed)
        if not faults.admit(service, op):
            faults.count(service, "quota_throttled")
            with faults.lock:
                answer = error_response(service, "throttle", faults.rng)
            return self.send_raw(*answer)
        kind, extra = faults.decide(service)
        if kind == "down":
            faults.count(service, "down")
            if extra == "drop":
                return self.drop()
            with faults.lock:
                answer = error_response(service, "error5xx", faults.rng, status=503)
            return self.send_raw(*answer)
        if kind in ("throttle", "error5xx"):
            faults.count(service, kind)
            with faults.lock:
                answer = error_response(service, kind, faults.rng)
            return self.send_raw(*answer)
        if kind == "drop":
            faults.count(service, kind)
            return self.drop()
        if kind == "slow":
            faults.count(service, kind)
            time.sleep(extra)
        with faults.lock:
            serialize = "%s:%s" % (service, op) in faults.config.get("serialize", [])
        if serialize:
            with faults.serial:
                answer = self.forward(body)
        else:
            answer = self.forward(body)
        if answer is None:
            faults.count(service, "upstream_errors")
            return self.send_json(502, {"error": "upstream unreachable"})
        faults.count(service, "forwarded")
        if kind == "drop_after":
            faults.count(service, kind)
            return self.drop()
        return self.send_raw(*answer)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


def parse_hostport(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0", help="loopback host:port (port 0: any free)")
    p.add_argument("--upstream", default=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5055"))
    p.add_argument("--config", help="JSON fault configuration, re-read when it changes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = p.parse_args(argv)

    host, port = parse_hostport(args.listen)
    if not is_loopback_host(host):
        p.error("--listen must be a loopback address, not %r" % host)
    upstream = urllib.parse.urlsplit(args.upstream)
    if upstream.scheme != "http" or not upstream.hostname or not is_loopback_host(upstream.hostname):
        p.error("--upstream must be http:// on a loopback address (the local emulator), not %r" % args.upstream)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.upstream = upstream
    server.verbose = args.verbose
    try:
        server.faults = Faults(args.seed, args.config)
    except ValueError as e:
        p.error("--config: %s" % e)
    bound_host, bound_port = server.server_address[:2]
    print("listening %s:%d" % (bound_host, bound_port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
