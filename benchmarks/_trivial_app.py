"""The serving benchmark's floor: one Ray Serve FastAPI deployment answering ``GET /ping`` and
``POST /echo`` (a JSON body read and parsed, nothing done with it).

Deployed with the same replica options as Wayfinder's ``Gateway`` (no CPU reservation, up to 256
requests in flight, user code on the replica's own event loop), so the only difference between the
two is the work each request does. A POST
needs its own floor: Serve hands a replica the request without its body, and the replica fetches
the body with a call back to the proxy before the handler can run, so a trivial POST costs Serve
about 1.5-2.4x a trivial GET on this machine (measured) before any application work.
"""

from typing import Any

from fastapi import FastAPI
from ray import serve

# serving.app.SAME_LOOP, written out: the floor's replica must not import Wayfinder.
SAME_LOOP = {"env_vars": {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}}

api = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0, "runtime_env": SAME_LOOP}, max_ongoing_requests=256)
@serve.ingress(api)
class Ping:
    @api.get("/ping")
    async def ping(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/echo")
    async def echo(self, body: dict[str, Any]) -> dict[str, str]:
        return {"status": "ok"}


app = Ping.bind()  # type: ignore[attr-defined]
