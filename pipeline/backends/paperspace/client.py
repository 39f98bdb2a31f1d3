"""The Paperspace Jobs API client: the calls a pipeline needs, and how they fail.

Retries are urllib3's `Retry`, mounted on the requests session: connection errors, 429 and 5xx
answers are retried with exponential backoff, honouring `Retry-After` up to `max_wait` seconds
(a server asking for an hour does not stall a run for an hour). Only reads and the idempotent
stop are retried; `createJob` is not, since an answer lost after the server created the job
would start a second, billed, untracked job: when its answer is lost, the job is looked up by
its unique name (`getJobs`) before it is created again.

The API key travels in `x-api-key` on the keyed sessions only, which follow no redirect (requests
would carry a custom header to another host); artifact links, pre-signed and perhaps elsewhere,
are fetched on a session that never has the key. The key is scrubbed from every message.
"""

from __future__ import annotations

import time
from urllib.parse import urlparse

from urllib3.util.retry import Retry

from ... import SoundspaceError

OFFICIAL_API, OFFICIAL_LOGS = "https://api.paperspace.io", "https://logs.paperspace.io"
RETIRED = (
    "Paperspace retired its Jobs API on 15 July 2024 ({url} answered 404 Not Found). "
    "soundspace speaks that contract only to servers that still do: run the stand-in "
    "(tests/servers/paperspace_standin.py in soundspace's repository) or a compatible "
    "service and point paperspace.api_url or "
    "SOUNDSPACE_PAPERSPACE_URL at it, or decode with backend local on a GPU machine"
)
RETRIED_STATUS = (429, 500, 502, 503, 504)
TIMEOUT = 120  # seconds for one request


class AnswerLost(SoundspaceError):
    """No usable answer came (connection lost, timeout, 429 or 5xx after the retries): the
    request may or may not have taken effect on the server."""


class CappedRetry(Retry):
    """urllib3's Retry with `Retry-After` capped at `max_wait` seconds."""

    def __init__(self, *args, max_wait: float = 60.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_wait = max_wait

    def new(self, **kwargs):
        retry = super().new(**kwargs)
        retry.max_wait = self.max_wait
        return retry

    def get_retry_after(self, response):
        wait = super().get_retry_after(response)
        return None if wait is None else min(wait, self.max_wait)


def _session(retry: Retry, key: str | None):
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if key is not None:
        session.headers["x-api-key"] = key
    return session


class JobsClient:
    def __init__(
        self,
        api_url: str,
        logs_url: str | None,
        key: str,
        attempts: int = 6,
        backoff: float = 1.0,
        max_wait: float = 60.0,
    ):
        self.api_url = api_url.rstrip("/")
        official = self.api_url == OFFICIAL_API
        self.logs_url = (logs_url or (OFFICIAL_LOGS if official else self.api_url)).rstrip("/")
        self.key, self.attempts, self.backoff, self.max_wait = key, attempts, backoff, max_wait

        def retry(methods):
            return CappedRetry(
                total=attempts - 1,
                status_forcelist=RETRIED_STATUS,
                allowed_methods=methods,
                backoff_factor=backoff / 2,
                backoff_max=max_wait,
                max_wait=max_wait,
                raise_on_status=False,
                respect_retry_after_header=True,
                redirect=0,
            )

        self.session = _session(retry(frozenset({"GET", "POST"})), key)  # reads and stop
        # createJob: not POST, so only connection errors (the request never left) are retried
        # (an empty list would mean every method in urllib3).
        self.once = _session(retry(frozenset({"GET"})), key)
        self.plain = _session(retry(frozenset({"GET"})), None)  # artifact links: never the key

    def scrub(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text

    @staticmethod
    def _message(response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text.strip()[:300] or response.reason
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                return str(error.get("message") or error.get("name") or error)
            if error:
                return str(error)
            return str(body.get("message") or body)
        return str(body)[:300]

    def call(self, method: str, url: str, session=None, **kwargs):
        """One request through `session` (retried as its Retry allows); any answer that is not a
        success becomes one SoundspaceError naming the call and the server's message."""
        import requests

        session = session or self.session
        keyed = session is not self.plain
        where = f"{method} {urlparse(url).path}"
        try:
            response = session.request(
                method, url, timeout=TIMEOUT, allow_redirects=not keyed, **kwargs
            )
        except requests.exceptions.RetryError:
            raise AnswerLost(
                self.scrub(
                    f"{where}: the server kept answering 429 or 5xx "
                    f"({self.attempts} tries); try again later"
                )
            ) from None
        except (requests.ConnectionError, requests.Timeout) as error:
            raise AnswerLost(
                self.scrub(
                    f"cannot reach {urlparse(url).netloc} "
                    f"({type(error).__name__}) after {self.attempts} tries"
                )
            ) from None
        if response.is_redirect and keyed:
            raise SoundspaceError(
                self.scrub(
                    f"{where}: the server answered {response.status_code} redirecting to "
                    f"{response.headers.get('Location', '?')}; refusing to send the API key there: "
                    "set paperspace.api_url to the address the service really answers on"
                )
            )
        if response.status_code in RETRIED_STATUS:
            raise AnswerLost(
                self.scrub(
                    f"{where}: the server answered {response.status_code} "
                    f"{self._message(response)} ({self.attempts} tries); try again later"
                )
            )
        if response.status_code == 404 and url.startswith((OFFICIAL_API, OFFICIAL_LOGS)):
            raise SoundspaceError(RETIRED.format(url=urlparse(url).netloc))
        if response.status_code >= 400:
            raise SoundspaceError(
                self.scrub(
                    f"{where}: the server answered "
                    f"{response.status_code}: {self._message(response)}"
                )
            )
        return response

    def json(self, method: str, url: str, shape: type, **kwargs):
        """The JSON answer of a call, which must be a `shape` (dict or list): a server's garbage
        ends in one line naming the call, like any other bad answer."""
        response = self.call(method, url, **kwargs)
        if response.status_code == 204 or not response.content:
            return shape()
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, shape):
            raise SoundspaceError(
                self.scrub(
                    f"{method} {urlparse(url).path}: the server's answer is not a JSON "
                    f"{'object' if shape is dict else 'array'}: {response.text[:80]!r}"
                )
            )
        return body

    def create_job(self, params: dict, workspace: bytes, workspace_name: str) -> dict:
        """Create the job named `params["name"]` (unique per attempt). When the answer is lost
        (the connection dropped, a timeout, a 429 or 5xx) the job may exist anyway: it is looked
        up by name and created again only when it does not."""
        for attempt in range(self.attempts):
            try:
                return self.json(
                    "POST",
                    f"{self.api_url}/jobs/createJob",
                    dict,
                    session=self.once,
                    params={**params, "workspaceFileName": workspace_name},
                    files={"file": (workspace_name, workspace, "application/zip")},
                )
            except AnswerLost:
                if attempt == self.attempts - 1:
                    raise
            found = self.find_job(params["name"])
            if found is not None:
                return found
            time.sleep(min(self.max_wait, self.backoff * 2**attempt))
        raise AssertionError("unreachable")

    def find_job(self, name: str) -> dict | None:
        jobs = self.json("GET", f"{self.api_url}/jobs/getJobs", list, params={"name": name})
        matches = [job for job in jobs if isinstance(job, dict) and job.get("name") == name]
        return matches[0] if matches else None

    def get_job(self, job_id: str) -> dict:
        return self.json("GET", f"{self.api_url}/jobs/getJob", dict, params={"jobId": job_id})

    def logs(self, job_id: str, line: int) -> list:
        rows = self.json(
            "GET",
            f"{self.logs_url}/jobs/logs",
            list,
            params={"jobId": job_id, "line": line, "limit": 1000},
        )
        return [row for row in rows if isinstance(row, dict)]

    def stop(self, job_id: str) -> None:
        self.call("POST", f"{self.api_url}/jobs/{job_id}/stop")

    def artifacts(self, job_id: str) -> list:
        items = self.json(
            "GET",
            f"{self.api_url}/jobs/artifactsList",
            list,
            params={"jobId": job_id, "links": "true"},
        )
        return [item for item in items if isinstance(item, dict)]

    def download(self, url: str) -> bytes:
        return self.call("GET", url, session=self.plain).content
