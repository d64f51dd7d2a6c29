"""A small FastAPI service that the tests and the demo put behind nginx."""

import asyncio

from fastapi import FastAPI, HTTPException, Request

app = FastAPI()

ITEMS = {1: "lasso", 2: "saddle", 3: "spurs"}


@app.get("/api/items/{item_id}")
async def get_item(item_id: int):
    if item_id not in ITEMS:
        raise HTTPException(status_code=404, detail="no such item")
    return {"id": item_id, "name": ITEMS[item_id]}


@app.post("/api/items", status_code=201)
async def create_item(request: Request):
    body = await request.body()
    return {"received_bytes": len(body)}


@app.get("/api/boom")
async def boom():
    raise HTTPException(status_code=500, detail="the backend failed")


@app.get("/api/slow")
async def slow(ms: int = 50):
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@app.get("/api/headers")
async def headers(request: Request):
    return dict(request.headers)
