"""The API benchmark's baseline: a trivial FastAPI JSON endpoint on the same machine and server."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}
