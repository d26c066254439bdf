"""The swap coordinator: wakes sleeping vLLM servers on demand, one per host.

Shape: a small service between the LiteLLM proxy and the swappable vLLM
servers (compose service ``swap``). The proxy's route for a swappable model
points at ``http://swap:8090/<service>/v1``; the coordinator makes the model
awake and then streams the request through. Why a service and not a LiteLLM
hook: the proxy runs several Gunicorn worker processes (``proxy.workers``), so
a hook's view of what is awake, what is in flight and which wake is under way
would have to live in an outside store and be locked across processes; one
asyncio process holds that state in memory, serialises wakes per GPU with a
lock, and counts in-flight requests exactly (it sees every byte of each
response). It is also the only client of the servers' dev-mode endpoints
(``/sleep``, ``/wake_up``, ``/collective_rpc``): those servers sit on a network
only the coordinator joins.

What it must do, and why (docs/h200-sleep-vllm-0.26.0.md):

- vLLM enforces nothing: a wake into memory that is not there fails with HTTP
  500 and leaves the process stuck for good (55 GiB held, ``/health`` 200,
  requests hang). So before every wake the coordinator checks free memory on
  the card itself (NVML; in a rehearsal the simulator's ledger) against the
  plan's wake figure, after making room: the least-recently-used awake,
  idle swappable model goes to sleep (never a resident, never one with
  requests in flight). A failed wake restarts that container; the request
  waits for the fresh server and is sent once more.
- ``/health`` cannot tell asleep or stuck from healthy: the coordinator reads
  ``/is_sleeping`` and keeps its own state.
- Level 2 drops the weights: ``/wake_up`` alone gives a server that answers
  200 with wrong output, so ``reload_weights`` follows every level-2 wake.

Standard library plus starlette, uvicorn, httpx (and, on a GPU host,
nvidia-ml-py; the docker SDK to restart a container): the image carries this
package and ``contract`` and ``simulator.ledger``, nothing else of the tool.
"""
