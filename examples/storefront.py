#!/usr/bin/python3
"""storefront.py: the shop front of storefront.c, in Python, from proto/strata.proto alone.

    protoc --python_out=/tmp/strata-py -I proto proto/strata.proto
    PYTHONPATH=/tmp/strata-py /usr/bin/python3 examples/storefront.py [API-ENDPOINT [USER [ITEM [QUERY]]]]

No Strata library: the wire format is the public contract (proto/strata.proto), so
any language with ZeroMQ and protobuf is a client. Every message is multipart,
"STRATA1", a message type, one protobuf payload, on a DEALER socket connected to the
broker's api endpoint (a ROUTER). Each request carries a request_id that the broker
echoes in its Recommendations (or in an Error's ref), which is how several requests
in flight on one socket find their replies. The generated strata_pb2 module is made
at run time (see above) and never committed. Debian's python3-zmq and
python3-protobuf: run it with /usr/bin/python3.

Prints what storefront.c prints: `== LABEL: model version V, SOURCE, from WORKER` and
`  RANK  ITEM  SCORE  TITLE` per item, or `== LABEL: error: TEXT`.
"""
import sys
import time

import zmq

import strata_pb2 as pb

PROTOCOL = b"STRATA1"
REPLY_TYPES = {"RECOMMEND": "RECOMMEND_REPLY", "SIMILAR": "SIMILAR_REPLY", "SEARCH": "SEARCH_REPLY"}


class Failed(Exception):
    pass


class Client:
    """Requests on one DEALER; replies matched to requests by request_id."""

    def __init__(self, endpoint, timeout_ms=5000):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.timeout_ms = timeout_ms
        self.next_id = 0
        self.pending = {}   # request_id -> (message type, deadline), in send order
        self.done = {}      # request_id -> Recommendations or Failed, not yet taken

    def send(self, kind, request):
        self.next_id += 1
        request.request_id = "py-%d" % self.next_id
        self.sock.send_multipart([PROTOCOL, kind.encode(), request.SerializeToString()])
        self.pending[request.request_id] = (kind, time.monotonic() + self.timeout_ms / 1000)
        return request.request_id

    def _read(self, wait_ms):
        """Reads one message (if one comes within wait_ms) into self.done."""
        if not self.sock.poll(max(wait_ms, 0)):
            return
        frames = self.sock.recv_multipart()
        if len(frames) != 3 or frames[0] != PROTOCOL:
            return   # not the protocol: nothing to match it to
        kind, payload = frames[1].decode(), frames[2]
        if kind == "ERROR":
            err = pb.Error()
            err.ParseFromString(payload)
            # An Error without a ref was sent before the broker read the request:
            # those come in the order the requests did, so it is the oldest's.
            rid = err.ref or next(iter(self.pending), None)
            answer = Failed("%s: %s" % (pb.ErrorCode.Name(err.code), err.message))
        else:
            answer = pb.Recommendations()
            answer.ParseFromString(payload)
            rid = answer.request_id
        if rid in self.pending:   # otherwise late: its request timed out
            expected = REPLY_TYPES[self.pending.pop(rid)[0]]
            if kind not in ("ERROR", expected):
                answer = Failed("a %s answered a request expecting %s" % (kind, expected))
            self.done[rid] = answer

    def _expire(self):
        now = time.monotonic()
        for rid, (kind, deadline) in list(self.pending.items()):
            if deadline <= now:
                del self.pending[rid]
                self.done[rid] = Failed("no answer within %d ms" % self.timeout_ms)

    def recv(self):
        """The next completed request as (request_id, answer), or None when none is left."""
        while not self.done and self.pending:
            nearest = min(deadline for _, deadline in self.pending.values())
            self._read(int((nearest - time.monotonic()) * 1000) + 1)
            self._expire()
        if not self.done:
            return None
        rid = next(iter(self.done))
        return rid, self.done.pop(rid)

    def ask(self, kind, request):
        """One request and its answer; other replies that come meanwhile are kept."""
        rid = self.send(kind, request)
        while rid not in self.done:
            self._read(self.timeout_ms)
            self._expire()
        return self.done.pop(rid)


def show(label, answer):
    if isinstance(answer, Failed):
        print("== %s: error: %s" % (label, answer))
        return 1
    print("== %s: model version %d, %s, from %s" % (label, answer.model_version, answer.source, answer.worker))
    for rank, item in enumerate(answer.items, 1):
        print("  %2d  %-12s %8.4f  %s" % (rank, item.item, item.score, item.title))
    return 0


def main(argv):
    if len(argv) > 5 or (len(argv) > 1 and argv[1].startswith("-")):
        print("usage: storefront.py [API-ENDPOINT [USER [ITEM [QUERY]]]]", file=sys.stderr)
        return 2
    endpoint = argv[1] if len(argv) > 1 else "tcp://127.0.0.1:7703"
    user = argv[2] if len(argv) > 2 else "u1"
    item = argv[3] if len(argv) > 3 else "A1"
    query = argv[4] if len(argv) > 4 else "running shoe"
    client = Client(endpoint)
    failed = 0

    # One at a time: the visitor's front page, the product page, the search box.
    failed += show("recommend for %s" % user, client.ask("RECOMMEND", pb.Recommend(user=user, k=5)))
    failed += show("similar to %s" % item, client.ask("SIMILAR", pb.Similar(item=item, k=5)))
    failed += show('search "%s" for %s' % (query, user),
                   client.ask("SEARCH", pb.Search(query=query, user=user, k=5)))

    # All at once on the one socket, each reply shown as it comes, found by request_id.
    # A new visitor who just viewed the item (not yet stored) is answered from that.
    visitor = pb.Recommend(user="a-new-visitor", k=3, filters=pb.Filters(exclude=[item]),
                           recent=[pb.RecentEvent(item=item, type=pb.VIEW)])
    labels = {
        client.send("RECOMMEND", pb.Recommend(user=user, k=5)): "in flight: recommend for %s" % user,
        client.send("SIMILAR", pb.Similar(item=item, k=5)): "in flight: similar to %s" % item,
        client.send("SEARCH", pb.Search(query=query, k=3)): 'in flight: search "%s"' % query,
        client.send("RECOMMEND", visitor): "in flight: recommend for a new visitor who viewed %s" % item,
    }
    print("-- %d requests in flight on one connection" % len(client.pending))
    while True:
        got = client.recv()
        if got is None:
            break
        failed += show(labels[got[0]], got[1])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
