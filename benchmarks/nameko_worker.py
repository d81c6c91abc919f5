"""nameko's side of the RPC benchmark; runs in its own venv (nameko needs eventlet, which patches the interpreter).

``python nameko_worker.py serve NAME AMQP_URI`` runs an echo service and prints ``READY``;
``python nameko_worker.py load NAME AMQP_URI CALLERS DURATION WARMUP`` runs that many
green threads, each with its own standalone RPC proxy, calling back to back, and
prints one JSON line in the shape of ``_harness.Load``.
"""

import eventlet

eventlet.monkey_patch()

import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

SMALL = {"name": "bench", "id": 12345, "tags": ["a", "b", "c"], "ok": True}


def serve(name, uri):
    from nameko.containers import ServiceContainer
    from nameko.rpc import rpc

    class Echo:
        @rpc
        def echo(self, body):
            return body

    Echo.name = name
    container = ServiceContainer(Echo, {"AMQP_URI": uri})
    container.start()
    print("READY " + name, flush=True)
    container.wait()  # until SIGTERM ends the process


def load(name, uri, callers, duration, warmup):
    from nameko.standalone.rpc import ClusterRpcProxy

    config = {"AMQP_URI": uri}
    proxies = [ClusterRpcProxy(config) for _ in range(callers)]
    started = [proxy.start() for proxy in proxies]
    for rpc in started:
        getattr(rpc, name).echo(SMALL)  # connect and declare reply queues before timing
    clock = time.perf_counter
    measure_from = clock() + warmup
    end = measure_from + duration
    latencies = []

    def caller(rpc):
        service = getattr(rpc, name)
        while True:
            begin = clock()
            if begin >= end:
                return
            reply = service.echo(SMALL)
            if reply != SMALL:
                raise AssertionError("bad echo")
            if begin >= measure_from:
                latencies.append(clock() - begin)

    pool = eventlet.GreenPool(callers)
    for rpc in started:
        pool.spawn(caller, rpc)
    pool.waitall()
    seconds = max(clock(), end) - measure_from
    for proxy in proxies:
        proxy.stop()
    latencies.sort()

    def q(p):
        return latencies[min(len(latencies) - 1, max(0, math.ceil(p * len(latencies)) - 1))] * 1e3

    print(
        json.dumps(
            {
                "calls": len(latencies),
                "seconds": seconds,
                "rate": len(latencies) / seconds,
                "p50_ms": q(0.5),
                "p99_ms": q(0.99),
                "errors": 0,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        load(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
