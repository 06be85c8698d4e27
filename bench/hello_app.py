"""The baseline: a bare FastAPI app answering one JSON route, nothing else."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"status": "ok"}
