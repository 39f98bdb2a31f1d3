"""Paperspace: the Jobs API client (`client.py`), the backend that runs each shard as a job
(`backend.py`), and a stand-in server speaking the same contract (`standin.py`), since
Paperspace retired the API: the tests, and anyone keeping the workflow, run jobs against it."""
