"""Writes every email the local stack received to .local/mail/ so a person can open it:
SES mail from moto's state (GET /moto-api/data.json, ses.RawMessage) and SMTP mail from the
sink's directory. Prints one line per mail: recipient, subject, and the .html/.txt/.eml paths.
Usage: python3 scripts/export_mail.py [--endpoint URL] [--smtp-dir DIR] [--out DIR] [--json]"""
import argparse
import email
import email.policy
import json
import os
import re
import sys
import urllib.request


def parts(raw):
    msg = email.message_from_string(raw, policy=email.policy.default)
    html = msg.get_body(preferencelist=("html",))
    text = msg.get_body(preferencelist=("plain",))
    return (
        str(msg.get("To", "")),
        str(msg.get("Subject", "")),
        html.get_content() if html else "",
        text.get_content() if text else "",
        str(msg.get("X-Invite-Id", "")),
    )


def ses_messages(endpoint):
    try:
        with urllib.request.urlopen(endpoint.rstrip("/") + "/moto-api/data.json", timeout=10) as r:
            data = json.load(r)
    except OSError as e:
        print(f"export_mail: cannot read moto state at {endpoint}: {e}", file=sys.stderr)
        return []
    return [("ses", m.get("raw_data", "")) for m in data.get("ses", {}).get("RawMessage", [])]


def smtp_messages(directory):
    if not directory or not os.path.isdir(directory):
        return []
    out = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".eml"):
            with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as f:
                out.append(("smtp", f.read()))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5055"))
    p.add_argument("--smtp-dir", default=os.environ.get("INVITE_TEST_MAIL_DIR", ""))
    p.add_argument("--out", default=".local/mail")
    p.add_argument("--json", action="store_true")
    p.add_argument("--to", default="", help="comma-separated recipients to keep (default: all)")
    a = p.parse_args()
    keep = {t.strip().lower() for t in a.to.split(",") if t.strip()}
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for i, (transport, raw) in enumerate(ses_messages(a.endpoint) + smtp_messages(a.smtp_dir), start=1):
        to, subject, html, text, invite_id = parts(raw)
        if keep and to.strip().lower() not in keep:
            continue
        stem = os.path.join(a.out, f"{i:03d}-{re.sub(r'[^A-Za-z0-9@._-]', '_', to)[:80]}")
        for ext, content in ((".eml", raw), (".html", html), (".txt", text)):
            with open(stem + ext, "w", encoding="utf-8") as f:
                f.write(content)
        rows.append({"transport": transport, "to": to, "subject": subject, "invite_id": invite_id,
                     "html": os.path.abspath(stem + ".html"), "text": stem + ".txt", "eml": stem + ".eml"})
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no email was sent")
        return
    print(f"{'TO':<34} {'SUBJECT':<52} OPEN")
    for r in rows:
        print(f"{r['to'][:34]:<34} {r['subject'][:52]:<52} file://{r['html']}")


if __name__ == "__main__":
    main()
