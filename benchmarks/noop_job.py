"""A job that does nothing (for dispatch benchmarks): returns its parameter."""


def run(params: dict) -> dict:
    return {"y": float(params["x"])}
