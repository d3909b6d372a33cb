"""One HTTP GET with retries, shared by the source clients (Prometheus, ServiceNow Table API).

The loop is the same for both: every attempt is counted; a timeout or a connection error is retried after an
exponential backoff; what an answer means is the client's call. Its ``answer`` function returns the result,
raises (an error that retrying cannot fix: refused credentials, a bad query), or returns :class:`RetryLater`
(overloaded, restarting, a proxy's garbled answer), with the wait the server asked for if any (Retry-After,
parsed by the client). After ``max_retries`` retries the last error is raised, as
``<what> failed after <n> attempts; last error: <error>``.

Bounded in time: a wait is never longer than the backoff's cap, whatever Retry-After asks (a server asking
for an hour is not waited for an hour), and ``budget`` seconds bound the whole loop: when the next wait
would end past it, the loop gives up at once instead of sleeping first. So one request takes at most
``budget`` plus one attempt's ``timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import requests

T = TypeVar("T")


class RetryCounts(Protocol):
    """Where a client counts its requests and retries (its extract result)."""

    requests: int
    retries: dict[str, int]  # cause -> retries


@dataclass(frozen=True)
class RetryLater:
    """An answer worth another try."""

    cause: str  # the key counted in ``retries``: "429", "5xx", "bad_json", ...
    error: str  # reported if no attempt is left
    wait: float | None = None  # seconds the server asked for; None = the backoff's


@dataclass(frozen=True)
class Backoff:
    """Exponential: ``min(cap, base * 2**attempt)`` seconds before retry ``attempt + 1``."""

    base: float = 1.0
    cap: float = 60.0

    def __call__(self, attempt: int) -> float:
        return min(self.cap, self.base * 2**attempt)


def get_with_retries(
    session: requests.Session,
    url: str,
    params: Mapping[str, Any],
    answer: Callable[[requests.Response], T | RetryLater],
    *,
    what: str,
    error: Callable[[str], Exception],
    timeout: float,
    max_retries: int,
    backoff: Backoff,
    sleep: Callable[[float], None],
    counts: RetryCounts,
    timeout_label: str | None = None,
    budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``answer(session.get(url, params, timeout))``, retried up to ``max_retries`` times.

    ``what`` names the request in the final error, ``error`` builds that exception; ``timeout_label`` is how
    the timeout is written in it (default ``f"{timeout:g}"``). ``budget``: seconds the retries may take in
    all (``clock`` measures them; a test that fakes ``sleep`` fakes ``clock`` along).
    """
    last = ""
    started = clock()
    for attempt in range(max_retries + 1):
        counts.requests += 1
        try:
            resp = session.get(url, params=params, timeout=timeout)
        except requests.Timeout:
            outcome = RetryLater("timeout", f"no answer within {timeout_label or f'{timeout:g}'} s")
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            # a reset before or during the body (a truncated answer surfaces as ChunkedEncodingError)
            outcome = RetryLater("connection", f"connection failed: {exc}")
        else:
            result = answer(resp)
            if not isinstance(result, RetryLater):
                return result
            outcome = result
        last = outcome.error
        if attempt < max_retries:
            wait = backoff(attempt) if outcome.wait is None else min(outcome.wait, backoff.cap)
            spent = clock() - started
            if budget is not None and spent + wait > budget:
                raise error(
                    f"{what} failed after {attempt + 1} attempts in {spent:.1f} s: the next wait ({wait:g} s)"
                    f" would pass the retry budget of {budget:g} s; last error: {last}"
                )
            counts.retries[outcome.cause] = counts.retries.get(outcome.cause, 0) + 1
            sleep(wait)
    raise error(f"{what} failed after {max_retries + 1} attempts; last error: {last}")
