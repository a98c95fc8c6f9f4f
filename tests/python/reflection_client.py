#!/usr/bin/env python3
"""An independent gRPC client for snaprelay: no .proto files, no generated code.

It discovers the control service through server reflection only, builds message classes from
the descriptors the server sends, and calls grpc.health.v1 Check and snaprelay.v1 GetStats.
Prints one JSON object with what it found; exits non-zero on any failure.

Usage: reflection_client.py HOST:PORT
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "snaprelay.v1.Control"


def main() -> int:
    target = sys.argv[1]
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=10)

    health = health_pb2_grpc.HealthStub(channel)
    overall = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    control_health = health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)

    database = ProtoReflectionDescriptorDatabase(channel)
    services = list(database.get_services())
    if SERVICE not in services:
        print(f"reflection does not list {SERVICE}: {services}", file=sys.stderr)
        return 1
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName(SERVICE)
    method = service.methods_by_name["GetStats"]
    request_class = GetMessageClass(method.input_type)
    response_class = GetMessageClass(method.output_type)
    get_stats = channel.unary_unary(
        f"/{SERVICE}/GetStats",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    stats = get_stats(request_class(), timeout=5)

    print(
        json.dumps(
            {
                "services": services,
                "methods": sorted(service.methods_by_name),
                "health": health_pb2.HealthCheckResponse.ServingStatus.Name(overall.status),
                "control_health": health_pb2.HealthCheckResponse.ServingStatus.Name(
                    control_health.status
                ),
                "stats": json_format.MessageToDict(stats, preserving_proto_field_name=True),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
