"""Paperspace: the Jobs API client (`client.py`) and the backend that runs each shard as a job
(`backend.py`). Paperspace retired the API, so the tests, and anyone keeping the workflow, run
jobs against a stand-in server speaking the same contract, a test server outside this package
(`tests/servers/paperspace_standin.py` in the repository; docker-compose's `paperspace-standin`)."""
