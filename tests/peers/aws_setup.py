"""Prepares a moto server for the EventBridge test: an IAM user with an access key allowed to do
everything, an event bus, an SQS queue and a rule that sends every event from ingot to it.

Run against a moto server whose INITIAL_NO_AUTH_ACTION_COUNT equals SETUP_ACTIONS, so these calls
are the last unauthenticated ones and everything after them must be signed with a valid key.
Prints one JSON line: {"accessKeyId", "secretAccessKey", "queueUrl", "eventBusName"}.
"""
import json
import sys

import boto3

# The number of AWS actions below; the test starts moto with exactly this many free actions.
SETUP_ACTIONS = 8


def main(endpoint: str, region: str) -> None:
    kw = dict(endpoint_url=endpoint, region_name=region,
              aws_access_key_id="AKIASETUPSETUPSETUP0", aws_secret_access_key="setup")
    iam = boto3.client("iam", **kw)
    iam.create_user(UserName="ingot")                                          # 1
    iam.put_user_policy(UserName="ingot", PolicyName="all", PolicyDocument=json.dumps({  # 2
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="ingot")["AccessKey"]                 # 3
    sqs = boto3.client("sqs", **kw)
    queue_url = sqs.create_queue(QueueName="ingot-errors")["QueueUrl"]         # 4
    arn = sqs.get_queue_attributes(QueueUrl=queue_url,                         # 5
                                   AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events", **kw)
    events.create_event_bus(Name="ingot-bus")                                  # 6
    events.put_rule(Name="ingot-errors", EventBusName="ingot-bus",             # 7
                    EventPattern=json.dumps({"source": ["ingot.embedded"]}))
    events.put_targets(Rule="ingot-errors", EventBusName="ingot-bus",          # 8
                       Targets=[{"Id": "queue", "Arn": arn}])
    print(json.dumps({"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"],
                      "queueUrl": queue_url, "eventBusName": "ingot-bus"}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--actions"]:
        print(SETUP_ACTIONS)
    else:
        main(sys.argv[1], sys.argv[2])
