"""The Ray Serve application: deployments that wrap recsys objects behind a FastAPI ingress."""
