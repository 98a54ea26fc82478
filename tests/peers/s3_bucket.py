"""Makes an S3 bucket in a moto server, for the Litestream replication test.

Usage: s3_bucket.py ENDPOINT REGION BUCKET
"""
import sys

import boto3

endpoint, region, bucket = sys.argv[1:4]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name=region,
    aws_access_key_id="replica-test",
    aws_secret_access_key="replica-test",
)
s3.create_bucket(Bucket=bucket)
