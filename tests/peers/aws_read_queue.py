"""Reads every message waiting in an SQS queue (signed with the given key) and prints them as one
JSON array of message bodies."""
import json
import sys

import boto3


def main(endpoint, region, key_id, secret, queue_url):
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=region,
                       aws_access_key_id=key_id, aws_secret_access_key=secret)
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        msgs = got.get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    print(json.dumps(bodies), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])
