"""The baseline for `hub pull`'s speed: a plain Python grpcio client.

It does what a hub's client does at the least: pulls a room's whole outbox
from the beginning, checks every event comes in seq order, acknowledges each
batch, and prints one line, `EVENTS SECONDS`, timed from the call to the last
event. Stubs are not generated: the two methods are called by name, with the
message classes that `protoc --python_out` made from the project's proto in
the directory given.

    python3 pull_baseline.py GENERATED_DIR HOST:PORT
"""

import sys
import time

import grpc


def main():
    generated, address = sys.argv[1], sys.argv[2]
    sys.path.insert(0, generated)
    from classroom.hub.v1 import sync_pb2

    channel = grpc.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    pull = channel.unary_stream(
        "/classroom.hub.v1.SyncService/Pull",
        request_serializer=sync_pb2.PullRequest.SerializeToString,
        response_deserializer=sync_pb2.PullResponse.FromString,
    )
    ack = channel.unary_unary(
        "/classroom.hub.v1.SyncService/Ack",
        request_serializer=sync_pb2.AckRequest.SerializeToString,
        response_deserializer=sync_pb2.AckResponse.FromString,
    )
    started = time.perf_counter()
    last, count = 0, 0
    for response in pull(sync_pb2.PullRequest(after_seq=0, follow=False)):
        if response.WhichOneof("message") != "batch":
            continue
        batch = response.batch
        for event in batch.events:
            if event.seq <= last:
                sys.exit(f"seq {event.seq} after {last}: out of order")
            last = event.seq
        count += len(batch.events)
        ack(sync_pb2.AckRequest(seq=last, outbox_identity=batch.outbox_identity))
    print(count, time.perf_counter() - started)


if __name__ == "__main__":
    main()
