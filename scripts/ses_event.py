"""Publish an SES sending event about one invitation to the feedback topic, the way an SES
configuration set's event destination does, for the demo on the local stack (moto does not
publish sending events itself).

The document has the shape AWS documents for event publishing ("Examples of event data that
Amazon SES publishes to Amazon SNS"), with the message tags invite-worker puts on its mail, so
the worker finds the invite. moto's SNS delivers it to the subscribed feedback queue in an SNS
envelope, as AWS does.

Usage (the stack's Python has boto3):
  python scripts/ses_event.py --topic-name NAME --kind bounce|delivery|complaint \
      --email jane@example.com --invite-id UUID [--generation 1]
"""

import argparse
import datetime
import json
import os
import uuid

import boto3


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def document(kind, email, invite_id, generation):
    message_id = "0100018c-%s" % uuid.uuid4()
    mail = {
        "timestamp": now(),
        "source": "Acme Cloud <no-reply@example.com>",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [email],
        "tags": {
            "ses:configuration-set": ["invite-worker"],
            "invite_id": [invite_id],
            "invite_generation": [str(generation)],
            "mail_kind": ["invite"],
        },
    }
    if kind == "bounce":
        return {"eventType": "Bounce", "mail": mail, "bounce": {
            "bounceType": "Permanent", "bounceSubType": "General", "timestamp": now(),
            "feedbackId": "0100018c-%s" % uuid.uuid4(),
            "bouncedRecipients": [{"emailAddress": email, "action": "failed", "status": "5.1.1",
                                   "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}}
    if kind == "delivery":
        return {"eventType": "Delivery", "mail": mail, "delivery": {
            "timestamp": now(), "processingTimeMillis": 412, "recipients": [email],
            "smtpResponse": "250 2.0.0 OK", "reportingMTA": "a8-52.smtp-out.amazonses.com"}}
    if kind == "complaint":
        return {"eventType": "Complaint", "mail": mail, "complaint": {
            "timestamp": now(), "feedbackId": "0100018c-%s" % uuid.uuid4(),
            "complaintFeedbackType": "abuse", "complainedRecipients": [{"emailAddress": email}]}}
    raise SystemExit("unknown kind %r (bounce, delivery, complaint)" % kind)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--topic-name", required=True)
    p.add_argument("--kind", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--invite-id", required=True)
    p.add_argument("--generation", type=int, default=1)
    a = p.parse_args()
    sns = boto3.client(
        "sns",
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
    )
    arns = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    arn = next((t for t in arns if t.endswith(":" + a.topic_name)), None)
    if arn is None:
        raise SystemExit("no SNS topic named %s (run invite-worker bootstrap)" % a.topic_name)
    doc = document(a.kind, a.email, a.invite_id, a.generation)
    sns.publish(TopicArn=arn, Message=json.dumps(doc))
    print("published an SES %s event for %s" % (doc["eventType"], a.email))


if __name__ == "__main__":
    main()
