"""A night fanned out over a Dask cluster.

clred's night recipe (clred run) splits a night into independent groups: the
master bias, a master dark per exposure time, a master flat per filter and a
stack per (object, filter). A shard i of n owns the groups g % n == i and
builds in memory, without writing, the masters its groups need but another
shard owns. reduce_night submits one task per shard; each worker process
opens its own Context once (on the device CLRED_DEVICE names in that worker's
environment, or the one given) and runs its shards there, the library
writing every product atomically (a temporary name, then a rename) beside a
per-shard manifest. The summaries come back to the client.

A worker that dies mid-night loses only its running shard: Dask runs that
task again on another worker, which skips the products already finished
(their manifest entries match) and rebuilds the rest; a killed run's
temporaries are removed by the next run in the same directory and never
carry a product's name.

    from dask.distributed import Client, LocalCluster
    from clred.distributed import reduce_night
    with LocalCluster(n_workers=2, threads_per_worker=1, resources={"GPU": 1}) as cluster, \\
            Client(cluster) as client:
        summary = reduce_night(client, sorted(glob.glob("night/*.fits")), "reduced", resources={"GPU": 1})

Without Python, the same split runs as a Slurm job array of
`clred run --shard i/n` (examples/slurm_night.sh).
"""
import os
import threading

_contexts = {}
_contexts_lock = threading.Lock()


def worker_context(device=None):
    """This process's Context on device (None: CLRED_DEVICE, else the first
    GPU, else the CPU), opened on first use and kept for later tasks."""
    import clred
    key = device if device is not None else os.environ.get("CLRED_DEVICE")
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = _contexts[key] = clred.Context(device=key)
        return ctx


def run_shard(inputs, outdir, index, count, device=None, options=None):
    """One shard of the night on this process's context: its summary."""
    ctx = worker_context(device)
    report = ctx.night(inputs, outdir, shard=(index, count), **(options or {}))
    report["shard"] = (index, count)
    report["pid"] = os.getpid()
    report["device"] = ctx.device["name"]
    return report


def reduce_night(client, inputs, outdir, nshards=None, device=None, resources=None, retries=0, **options):
    """Reduces a night on a Dask cluster: one task per shard (nshards, by
    default twice the workers, so a slow shard does not hold the rest),
    each on a worker's own context. options are Context.night's (saturation,
    cosmic, background, strict, overwrite). resources (e.g. {"GPU": 1}) are
    the worker resources each task needs: one task per device at a time.
    A task lost with its worker is rerun by Dask (the scheduler's
    allowed-failures); retries is for a task that raised, which clred's
    errors (bad input) do not cure, so 0 by default.
    Returns the summary: groups, products written and skipped, the per-shard
    reports; raises the first shard's clred.Error if a shard fails."""
    inputs = [os.fspath(p) for p in inputs]
    outdir = os.fspath(outdir)
    if nshards is None:
        nshards = max(1, 2 * len(client.scheduler_info()["workers"]))
    futures = [client.submit(run_shard, inputs, outdir, i, nshards, device, options, key=f"clred-shard-{i}-of-{nshards}",
                             resources=resources, retries=retries, pure=False)
               for i in range(nshards)]
    reports = client.gather(futures)
    products = [p for r in reports for p in r["products"]]
    return dict(ngroups=reports[0]["ngroups"] if reports else 0,
                nshards=nshards,
                nproducts=len(products),
                nwritten=sum(r["nwritten"] for r in reports),
                nskipped=sum(r["nskipped"] for r in reports),
                products=products,
                left_out=reports[0]["left_out"] if reports else [],
                shards=reports)
