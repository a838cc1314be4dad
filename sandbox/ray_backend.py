"""Ray backend: the sandbox fleet spread over the CPU hosts of a Ray cluster.

Each `SandboxHost` Ray actor owns a node's sandboxes (the local backend's workers, a gVisor pool by
default), so a request runs exactly as it would locally, judged where it runs, and gets the same
verdict. The driver-side `RayBackend` plugs into `Executor` through the backend interface of
backends.py: the Executor's slots become *lanes*, each carrying one request at a time to an actor.
Layers: the actor runs, `RayBackend` routes (one actor per attempt), the Executor retries.

- Placement: one actor per alive node (reserving the node's CPUs), or `num_actors` actors of
  `cpus_per_actor` CPUs each, spread. An actor runs as many sandboxes per reserved CPU as the local
  backend runs per core (or `workers_per_actor`). `node_resource` restricts the fleet to nodes that
  declare that custom resource (e.g. the hosts of a TPU pod started with `ray start --resources='{"sandbox_host": 1}'`).
- Load balancing with backpressure: a lane sends its request to the least loaded live actor that has
  fewer than `max_in_flight_per_actor` requests outstanding (default twice its sandboxes, so its pool
  never idles while results travel back), and otherwise waits its turn (first come, first served).
- Streaming: the Executor's futures complete as each actor call returns.
- Failures: an actor whose call fails because it or its node died, or that hangs past a generous
  bound, is marked dead and replaced (on the same node if it is still there, else wherever Ray finds
  room). The in-flight requests of a dead actor fail with WorkerLost and the Executor sends them again
  (to other live actors; up to executor.MAX_LOST_RETRIES times each), so none is lost. A hang counts
  against the request instead (WorkerCrashed: the Executor retries it once, then reports
  `sandbox_error`, as for a request that hangs two local sandboxes).

Where the fleet runs:
- TPU pod hosts' own CPUs: start Ray on every host, marking them and leaving cores for the JAX process,
      host 0:  ray start --head --port=6379 --num-cpus=$(( $(nproc) - 8 )) --resources='{"sandbox_host": 1}'
      others:  ray start --address=HOST0:6379 --num-cpus=$(( $(nproc) - 8 )) --resources='{"sandbox_host": 1}'
  and build ONE fleet from one process (e.g. jax.process_index() == 0):
      Executor(backend="ray", ray_address="auto", node_resource="sandbox_host")   # one actor per host
- A separate CPU cluster: Executor(backend="ray", ray_address="ray://cpu-head:10001") (Ray Client, from any
  machine) or "cpu-head:6379" from a machine that is a node of that cluster. Its nodes need Python, Ray and
  runsc; this package is shipped to them (ship_code).

Ray is an optional dependency (`pip install -e ".[ray]"`); the rest of `sandbox` never imports it.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import os
import threading
import time

try:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as _e:  # pragma: no cover - exercised by a test that hides ray
    raise ImportError('the sandbox "ray" backend needs Ray: pip install -e ".[ray]"  (or pip install "ray[default]")') from _e

from .backends import STARTUP_TIMEOUT_S, WorkerCrashed, WorkerLost
from .gvisor import PLATFORMS

log = logging.getLogger(__name__)
SANDBOX_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
# Ray errors that mean the actor (or its node) is gone or unreachable.
_ACTOR_LOST = tuple(getattr(ray.exceptions, n) for n in
                    ("RayActorError", "ActorUnavailableError", "ObjectLostError", "OwnerDiedError",
                     "NodeDiedError", "WorkerCrashedError", "LocalRayletDiedError") if hasattr(ray.exceptions, n))


class SandboxHost:
    """Ray actor: one node's sandboxes (the local backend's workers: the judge runs where the program
    runs, exactly as locally). It only runs requests: a worker that crashes or hangs under a request
    is replaced and the request's failure goes back to the driver, whose Executor decides any retry."""

    def __init__(self, backend: str, workers: int | None, cpus: int, memory_mb: int, platform: str | None = None):
        import socket

        from .backends import local_backend
        self._backend = local_backend(backend, memory_mb, platform)
        if workers is None:  # the local backend's sandboxes-per-core ratio, applied to the CPUs reserved
            workers = max(1, round(cpus * self._backend.default_workers() / (os.cpu_count() or 1)))
        try:
            self._idle = [self._backend.start_worker(i) for i in range(workers)]
        except BaseException:
            self._backend.close()
            raise
        self._free = None   # asyncio.Queue of idle workers, made on the actor's event loop
        self._info = {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
                      "pid": os.getpid(), "workers": workers, "isolation": self._backend.isolation,
                      "platform": getattr(self._backend, "platform", None)}  # runsc's (gvisor), None: process

    async def info(self) -> dict:
        return self._info

    async def execute(self, request: dict, timeout_s: float) -> dict:
        """Run one request on an idle sandbox (waiting for one); `timeout_s` bounds the run itself."""
        if self._free is None:
            self._free = asyncio.Queue()
            for w in self._idle:
                self._free.put_nowait(w)
        worker = await self._free.get()
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(None, worker.execute, request, timeout_s)
        except BaseException as e:
            self._free.put_nowait(await loop.run_in_executor(None, self._replace, worker))
            raise WorkerCrashed(f"sandbox on {self._info['hostname']}: {e}") from None
        if getattr(worker, "retired", False):  # it ends after this result: a fresh one for the next request
            worker = await loop.run_in_executor(None, self._replace, worker)
        self._free.put_nowait(worker)
        return result

    def _replace(self, worker):
        """A fresh worker in place of `worker` (run in the loop's thread pool, whose threads live as long as the
        actor: a sandbox dies with the thread that started it). The caller queues it: an asyncio.Queue is
        only safe to use from the loop's own thread."""
        try:
            worker.close()
        except Exception:
            pass
        return self._backend.start_worker(0)

    async def close(self) -> None:
        def close_all():
            while self._free is not None and not self._free.empty():
                try:
                    self._free.get_nowait().close()
                except Exception:
                    pass
            self._backend.close()
        await asyncio.get_running_loop().run_in_executor(None, close_all)


_RemoteSandboxHost = ray.remote(max_restarts=0)(SandboxHost)


@dataclasses.dataclass(eq=False)
class _Actor:
    handle: object
    spec: dict                   # options this actor was created with (for its replacement)
    workers: int = 0             # sandboxes (known once the actor is up)
    cap: int = 0                 # most requests in flight at once
    node_id: str = ""
    hostname: str = ""
    in_flight: int = 0
    peak_in_flight: int = 0
    served: int = 0
    alive: bool = True


class _Lane:
    """What the Executor sees as one worker: a lane that sends one request at a time to the fleet."""

    def __init__(self, backend: "RayBackend"):
        self._backend = backend

    def execute(self, request: dict, timeout_s: float) -> dict:
        return self._backend._execute(request, timeout_s)

    def close(self) -> None:
        pass


class RayBackend:
    """The sandbox fleet on Ray. Use through `Executor(backend="ray", ray_address=..., ...)` or
    `Executor(backend=RayBackend(...))`.

    Args:
      memory_mb: default per-request memory limit, also sizes each actor's sandboxes.
      ray_address: None starts a local Ray on this machine (or connects to $RAY_ADDRESS, as ray.init
        does); "auto" joins the cluster running on this node; "host:port" joins that cluster's GCS
        from one of its nodes; "ray://host:10001" connects through Ray Client from outside it.
        If Ray is already initialized in this process it is reused as is.
      num_actors: None = one actor per alive node with CPUs; an int = that many actors, spread.
      cpus_per_actor: Ray CPUs each actor reserves. Default: all of its node's in one-actor-per-node
        mode, 1 with `num_actors`.
      workers_per_actor: sandboxes per actor. Default: the local backend's per-core default
        (gVisor: 2) x cpus_per_actor.
      node_resource: only nodes declaring this custom resource host actors.
      max_in_flight_per_actor: backpressure bound (default 2 x the actor's sandboxes).
      inner_backend: the local backend inside each actor ("gvisor", or "process" - unisolated).
      platform: runsc's platform in each actor's gVisor sandboxes (gvisor.PLATFORMS; None: ptrace).
      ship_code: send this package to the actors with the job's runtime_env (so cluster nodes need
        Python, Ray and runsc but not this checkout).
      startup_timeout_s: how long actors may take to start (placement + first sandbox).
    """

    def __init__(self, memory_mb: int = 512, ray_address: str | None = None, num_actors: int | None = None,
                 cpus_per_actor: int | None = None, workers_per_actor: int | None = None, node_resource: str | None = None,
                 max_in_flight_per_actor: int | None = None, inner_backend: str = "gvisor",
                 ship_code: bool = True, startup_timeout_s: float = 300.0, platform: str | None = None):
        if inner_backend not in ("gvisor", "process"):
            raise ValueError(f"inner_backend must be 'gvisor' or 'process', got {inner_backend!r}")
        if platform is not None:
            if inner_backend != "gvisor" or platform not in PLATFORMS:
                raise ValueError(f"platform is runsc's ({', '.join(PLATFORMS)}) for inner_backend 'gvisor', got "
                                 f"{platform!r} for {inner_backend!r}")
        for name, v in (("workers_per_actor", workers_per_actor), ("num_actors", num_actors),
                        ("cpus_per_actor", cpus_per_actor),
                        ("max_in_flight_per_actor", max_in_flight_per_actor)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be an int >= 1 or None, got {v!r}")
        self.isolation = inner_backend
        self.memory_mb, self.inner_backend, self.platform = memory_mb, inner_backend, platform
        self.max_in_flight_per_actor = max_in_flight_per_actor
        self.startup_timeout_s = startup_timeout_s
        self.stats = collections.Counter()   # actors_started, actors_lost, actors_replaced, requests_retried
        self._cond = threading.Condition()
        self._turns: collections.deque = collections.deque()   # lanes waiting for capacity, in arrival order
        self._actors: list[_Actor] = []
        self._replacing = 0
        self._pending: set[_Actor] = set()   # replacements still starting
        self._closed = False
        self._owns_ray = init_ray(ray_address, ship_code)
        try:
            self._start_fleet(num_actors, cpus_per_actor, workers_per_actor, node_resource)
        except BaseException:
            self.close()
            raise

    # ---------------------------------------------------------------- fleet
    def _start_fleet(self, num_actors, cpus_per_actor, workers_per_actor, node_resource) -> None:
        nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) >= 1
                 and (node_resource is None or n["Resources"].get(node_resource, 0) > 0)]
        if not nodes:
            which = f" with resource {node_resource!r}" if node_resource else ""
            raise RuntimeError(f"the Ray cluster has no alive node{which} with CPUs for sandbox actors "
                               f"(nodes: {[n['NodeManagerAddress'] for n in ray.nodes() if n.get('Alive')]})")
        specs = []
        if num_actors is None:
            for n in nodes:
                specs.append({"num_cpus": cpus_per_actor or int(n["Resources"]["CPU"]), "workers": workers_per_actor,
                              "node_id": n["NodeID"], "node_resource": node_resource})
        else:
            specs = [{"num_cpus": cpus_per_actor or 1, "workers": workers_per_actor, "node_id": None,
                      "node_resource": node_resource} for _ in range(num_actors)]
        actors = [self._create(spec, soft=False) for spec in specs]
        refs = [a.handle.info.remote() for a in actors]
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=self.startup_timeout_s)
        if pending:
            for a in actors:
                ray.kill(a.handle)
            raise RuntimeError(f"{len(pending)} of {len(refs)} sandbox actors did not start within "
                               f"{self.startup_timeout_s:.0f}s (not enough free CPUs on the chosen nodes? "
                               f"CPUs asked per actor: {[s['num_cpus'] for s in specs]})")
        for a, ref in zip(actors, refs):
            try:
                info = ray.get(ref)
            except Exception as e:  # e.g. runsc missing on that node: the actor's Executor raised
                for b in actors:
                    ray.kill(b.handle)
                raise RuntimeError(f"a sandbox actor failed to start: {_cause(e)}") from None
            self._set_info(a, info)
        with self._cond:
            self._actors.extend(actors)
        log.info("sandbox fleet: %d actors on %d nodes, %d sandboxes", len(actors),
                 len({a.node_id for a in actors}), sum(a.workers for a in actors))

    def _create(self, spec: dict, soft: bool) -> _Actor:
        opts = {"num_cpus": spec["num_cpus"], "max_concurrency": max(1000, (self.max_in_flight_per_actor or 0) + 16)}
        if spec["node_resource"]:
            opts["resources"] = {spec["node_resource"]: 0.001}
        if spec["node_id"]:
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(spec["node_id"], soft=soft)
        else:
            opts["scheduling_strategy"] = "SPREAD"
        handle = _RemoteSandboxHost.options(**opts).remote(self.inner_backend, spec["workers"], spec["num_cpus"],
                                                           self.memory_mb, self.platform)
        self._count("actors_started")
        return _Actor(handle=handle, spec=spec)

    def _set_info(self, actor: _Actor, info: dict) -> None:
        actor.node_id, actor.hostname, actor.workers = info["node_id"], info["hostname"], info["workers"]
        actor.cap = self.max_in_flight_per_actor or 2 * actor.workers

    def _count(self, key: str) -> None:
        with self._cond:
            self.stats[key] += 1

    @property
    def actors(self) -> list:
        """Handles of the live actors (for inspection and fault-injection tests)."""
        with self._cond:
            return [a.handle for a in self._actors if a.alive]

    def load(self) -> list[dict]:
        """Per live actor: hostname, node_id, sandboxes, in-flight bound, in flight now, peak, served."""
        with self._cond:
            return [{"hostname": a.hostname, "node_id": a.node_id, "workers": a.workers, "cap": a.cap,
                     "in_flight": a.in_flight, "peak_in_flight": a.peak_in_flight, "served": a.served}
                    for a in self._actors]

    def _mark_lost(self, actor: _Actor, reason: str) -> None:
        with self._cond:
            if not actor.alive:
                return
            actor.alive = False
            self._actors.remove(actor)
            self.stats["actors_lost"] += 1  # under the lock
            closed = self._closed
            if not closed:
                self._replacing += 1
            self._cond.notify_all()
        log.warning("sandbox actor on %s lost (%s)%s", actor.hostname or "?", reason,
                    "" if closed else "; starting a replacement")
        try:
            ray.kill(actor.handle)
        except Exception:
            pass
        if not closed:
            threading.Thread(target=self._replace, args=(actor,), name="sandbox-ray-replace", daemon=True).start()

    def _replace(self, lost: _Actor) -> None:
        new = started = None
        try:
            # Same node if it is still alive (soft affinity), anywhere with room otherwise.
            new = started = self._create(lost.spec, soft=True)
            with self._cond:
                self._pending.add(new)  # close() kills it if it is still starting
            if self._closed:
                raise WorkerCrashed("closed")
            info = ray.get(new.handle.info.remote(), timeout=self.startup_timeout_s)
            self._set_info(new, info)
        except BaseException as e:  # incl. the SystemExit ray.get raises when Ray shuts down under it
            if not self._closed:
                log.error("could not replace the lost sandbox actor: %s", _cause(e))
            if new is not None:
                _kill_quietly(new.handle)
            new = None
        with self._cond:
            self._pending.discard(started)
            self._replacing -= 1
            if new is not None and not self._closed:
                self._actors.append(new)
                self.stats["actors_replaced"] += 1  # under the lock
                new = None
            self._cond.notify_all()
        if new is not None:  # closed meanwhile
            _kill_quietly(new.handle)

    # ---------------------------------------------------------------- dispatch
    def _acquire(self) -> _Actor:
        """The least loaded live actor with room; waits (first come, first served) while all are full."""
        turn = object()
        with self._cond:
            self._turns.append(turn)
            try:
                deadline = None
                while True:
                    if self._closed:
                        raise WorkerCrashed("the ray sandbox backend is closed")
                    free = [a for a in self._actors if a.in_flight < a.cap]
                    if free and self._turns[0] is turn:
                        actor = min(free, key=lambda a: a.in_flight / a.cap)
                        actor.in_flight += 1
                        actor.peak_in_flight = max(actor.peak_in_flight, actor.in_flight)
                        return actor
                    if self._actors or self._replacing:
                        deadline = None  # work is progressing, or a replacement is on its way
                        self._cond.wait()
                        continue
                    # No live actor and none coming: give up after the startup bound.
                    deadline = deadline or time.monotonic() + self.startup_timeout_s
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise WorkerCrashed("no live sandbox actor left in the Ray cluster")
                    self._cond.wait(left)
            finally:
                self._turns.remove(turn)
                self._cond.notify_all()

    def _release(self, actor: _Actor, served: bool) -> None:
        with self._cond:
            actor.in_flight -= 1
            actor.served += served
            self._cond.notify_all()

    def _hang_bound_s(self, actor: _Actor, timeout_s: float) -> float:
        """How long an answer may take before the actor counts as hung: the run's own bound
        (`timeout_s`, from the Executor) after waiting behind the requests already inside the actor,
        plus a sandbox start (a crashed sandbox is replaced before the actor answers)."""
        rounds = math.ceil(actor.cap / actor.workers)
        return rounds * timeout_s + STARTUP_TIMEOUT_S

    def _execute(self, request: dict, timeout_s: float) -> dict:
        """Route one request to one actor, once (the Executor is the one place that retries). An actor
        that dies under it (killed, node lost) is WorkerLost: not the request's doing. A hang, or a
        sandbox failure reported by the actor, is WorkerCrashed: it counts against the request."""
        actor = self._acquire()
        served = False
        try:
            ref = actor.handle.execute.remote(request, timeout_s)
            try:
                result = ray.get(ref, timeout=self._hang_bound_s(actor, timeout_s))
                served = True
                return result
            except ray.exceptions.GetTimeoutError:
                self._mark_lost(actor, "did not answer in time (hung)")
                self._count("requests_retried")
                raise WorkerCrashed(f"sandbox actor on {actor.hostname} did not answer in time (hung)") from None
            except _ACTOR_LOST as e:
                self._mark_lost(actor, _cause(e))
                self._count("requests_retried")
                raise WorkerLost(f"sandbox actor on {actor.hostname} died: {_cause(e)}") from None
            except ray.exceptions.RayTaskError as e:  # the actor is alive; its sandbox failed
                self._count("requests_retried")
                raise WorkerCrashed(f"sandbox actor on {actor.hostname}: {_cause(e)}") from None
        finally:
            self._release(actor, served)

    # ---------------------------------------------------------------- backend interface
    def default_workers(self) -> int:
        """Requests in flight across the fleet when every actor is at its bound."""
        with self._cond:
            return sum(a.cap for a in self._actors)

    def start_worker(self, slot: int) -> _Lane:
        if self._closed:
            raise WorkerCrashed("the ray sandbox backend is closed")
        return _Lane(self)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            actors, self._actors = list(self._actors), []
            pending = list(self._pending)
            self._cond.notify_all()
        for a in pending:
            _kill_quietly(a.handle)
        # Let each actor delete its sandboxes, then end it (in parallel; a dead node does not block).
        refs = [a.handle.close.remote() for a in actors]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=60)
        for a in actors:
            _kill_quietly(a.handle)
        if self._owns_ray:
            ray.shutdown()


def init_ray(address: str | None = None, ship_code: bool = True, **ray_init_kwargs) -> bool:
    """Connect to (or start) Ray for the sandbox fleet; returns True when this call initialized Ray.

    ship_code sends this package to the cluster's workers in the job's runtime_env, so nodes need
    Python, Ray and runsc but not this checkout. Extra kwargs go to ray.init (e.g. num_cpus).
    """
    if ray.is_initialized():
        if address:
            log.info("Ray is already initialized in this process; ray_address=%r is not used", address)
        return False
    kwargs = {"include_dashboard": False, **ray_init_kwargs}
    if ship_code:
        kwargs["runtime_env"] = {"py_modules": [SANDBOX_PKG_DIR], "excludes": ["__pycache__", "*.pyc"]}
    try:
        ray.init(address=address or None, **kwargs)
    except ConnectionError as e:
        raise ConnectionError(f"cannot reach a Ray cluster at ray_address={address!r}: {e}. Start one with "
                              "`ray start --head` (then use 'auto'), give its host:port or ray://host:10001, "
                              "or leave the address empty to start a local Ray. A cluster that uses token "
                              "authentication also needs RAY_AUTH_MODE=token "
                              "and its token (~/.ray/auth_token or RAY_AUTH_TOKEN)") from None
    return True


def _cause(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[-1] if text else type(e).__name__)[:500]


def _kill_quietly(handle) -> None:
    try:
        ray.kill(handle)
    except Exception:
        pass


__all__ = ["RayBackend", "SandboxHost", "init_ray"]
