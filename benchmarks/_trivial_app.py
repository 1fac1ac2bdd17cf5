"""The serving benchmark's floor: one Ray Serve FastAPI deployment answering ``GET /ping``.

Deployed with the same replica options as Wayfinder's ``Gateway`` (no CPU reservation, up to 256
requests in flight), so the only difference between the two is the work each request does.
"""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve

api = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress(api)
class Ping:
    @api.get("/ping")
    async def ping(self) -> dict[str, str]:
        return {"status": "ok"}


app = Ping.bind()  # type: ignore[attr-defined]
