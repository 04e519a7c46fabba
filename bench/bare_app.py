"""B3's baseline: a Flask app that answers 202 without verifying or storing anything."""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.post("/webhooks/zoho/<int:connection_id>")
def receive(connection_id: int) -> tuple[str, int]:
    request.get_data()
    return '{"status":"accepted"}', 202
