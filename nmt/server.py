"""A translation server and its client. The server keeps one run's model loaded and answers
HTTP requests; the client is what `nmt translate --server URL` uses, and imports no TensorFlow,
so a sentence costs the request instead of TensorFlow's start-up and the model's loading.

Protocol (JSON over HTTP):
    POST /translate  {"text": ["A dog runs.", ...], "n_best": 1, "prefix": ["Ein", ...],
                      "constraints": [["Hund"], ...], "start": 0}
                     ("prefix" optional: the text each translation begins with, one per sentence;
                     "constraints" optional: the texts each translation must contain, a list per
                     sentence; "start" optional: how many sentences of the client's input come
                     before these)
        -> 200 {"translations": [[{"text": "...", "score": -0.42}, ...], ...], "warnings": ["...", ...]}
           (n_best per sentence, best first; the warnings of sentences and prefixes cut to the
           model's lengths, which number sentences from start + 1)
        -> 400 {"error": "..."}  (a bad request: not JSON, no list of strings, n_best out of range)
    POST /score      {"source": ["A dog runs.", ...], "target": ["Ein Hund läuft.", ...], "start": 0}
        -> 200 {"scores": [{"score": -0.9, "pieces": ["▁Ein", ..., "</s>"], "log_probs": [-0.1, ...]}, ...],
                "warnings": [...]}  (as `nmt score`: -Infinity and NaN where it gives -inf and nan)
    GET /health      -> 200 {"status": "ok", ...what the server was started with}
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import socket
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Callable, Iterator, Sequence

from nmt.config import DecodeConfig
from nmt.errors import NmtError

log = logging.getLogger("nmt")

# Sentences a client request carries: with a server on a slow machine, the longest search that
# must end within a request's timeout (~1 minute of beam search by a large model on 2 CPU cores),
# and enough to fill the server's decoding batches with sentences of similar length.
REQUEST_SENTENCES = 1000
# Sentences (and their prefixes, or None, the number of the client's sentences before them, and
# their constraints, or None) to (translation, score) lists, n per sentence; raises NmtError for a
# bad n, prefixes or constraints.
Translate = Callable[[Sequence[str], int, Sequence[str] | None, int, Sequence[Sequence[str]] | None],
                     list[list[tuple[str, float]]]]
# Sources and targets (and the number of pairs before them) to (score, pieces, log-probabilities)
# each, as `nmt score` gives them.
Score = Callable[[Sequence[str], Sequence[str], int], list[tuple[float, list[str], list[float]]]]
_PATHS = "use POST /translate, POST /score or GET /health"


def about(run: Path, checkpoint: Path, decode: DecodeConfig, decoder: str | None = None) -> dict:
    """What GET /health says a server was started with: its run, the checkpoint, the decode
    settings, and the decoder where it is not our search."""
    found = {"run": str(run), "checkpoint": str(checkpoint), "decode": dataclasses.asdict(decode)}
    return found if decoder is None else {**found, "decoder": decoder}


def make_server(translate: Translate, host: str, port: int, about: dict, score: Score | None = None) -> HTTPServer:
    """An HTTP server (bound; call serve_forever) that answers with translate (and score, where
    given). Requests are answered one at a time: the model runs one batch at a time anyway. port 0
    picks a free port (server.server_address says which)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/health":
                return self._reply(404, {"error": f"no such path {self.path!r}; {_PATHS}"})
            self._reply(200, {"status": "ok", **about})

        def do_POST(self) -> None:
            path = self.path.rstrip("/")
            if path not in ("/translate", "/score") or (path == "/score" and score is None):
                return self._reply(404, {"error": f"no such path {self.path!r}; {_PATHS}"})
            try:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with _warnings_kept() as warnings:
                    if path == "/translate":
                        answer = {"translations": [[{"text": text, "score": value} for text, value in hypotheses]
                                                   for hypotheses in translate(*_parse(body))]}
                    else:
                        answer = {"scores": [{"score": value, "pieces": pieces, "log_probs": log_probs}
                                             for value, pieces, log_probs in score(*_parse_pairs(body))]}
                answer["warnings"] = warnings
            except (ValueError, NmtError) as error:
                return self._reply(400, {"error": str(error)})
            except Exception as error:  # one failed request must not stop the server
                log.exception("answering a request failed")
                return self._reply(500, {"error": f"{type(error).__name__}: {error}"})
            self._reply(200, answer)

        def _reply(self, status: int, payload: dict) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
            pass  # one line per request on stderr is noise; the client sees every error

    try:
        return HTTPServer((host, port), Handler)
    except OSError as error:
        if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
            fix = "choose another --host: an address of this machine (127.0.0.1, or 0.0.0.0 for every interface)"
        else:
            fix = "choose another --port (or --port 0 for a free one)"
        raise NmtError(f"cannot listen on {host}:{port}: {error.strerror}; {fix}") from None


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _warnings_kept() -> Iterator[list[str]]:
    """The messages nmt warns of while answering a request (they still show on the server's
    console too), for the answer: the client shows them where its user looks."""
    handler = _Kept()
    log.addHandler(handler)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)


def _parse(data: bytes) -> tuple[list[str], int, list[str] | None, int, list[list[str]] | None]:
    body = _json_object(data)
    if body is None or not _strings(body.get("text")):
        raise ValueError('the request must be a JSON object {"text": [sentences...], "n_best": 1}')
    n_best = body.get("n_best", 1)
    if not isinstance(n_best, int) or isinstance(n_best, bool):
        raise ValueError(f"n_best must be an integer; got {n_best!r}")
    prefixes = body.get("prefix")
    if prefixes is not None and not _strings(prefixes):
        raise ValueError('"prefix" must be a list of strings, one per sentence')
    constraints = body.get("constraints")
    if constraints is not None and not (isinstance(constraints, list) and all(_strings(texts) for texts in constraints)):
        raise ValueError('"constraints" must be a list of lists of strings, one list per sentence')
    return body["text"], n_best, prefixes, _start(body), constraints


def _parse_pairs(data: bytes) -> tuple[list[str], list[str], int]:
    body = _json_object(data)
    if body is None or not (_strings(body.get("source")) and _strings(body.get("target"))):
        raise ValueError('the request must be a JSON object {"source": [sentences...], "target": [translations...]}')
    return body["source"], body["target"], _start(body)


def _start(body: dict) -> int:
    start = body.get("start", 0)
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise ValueError(f"start must be an integer of 0 or more; got {start!r}")
    return start


def _json_object(data: bytes) -> dict | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def request(url: str, sentences: Sequence[str], n_best: int = 1, timeout: float = 600.0,
            prefixes: Sequence[str] | None = None, on_part: Callable[[int], None] | None = None,
            start: int = 0, constraints: Sequence[Sequence[str]] | None = None) -> list[list[tuple[str, float]]]:
    """The server's n_best (translation, score) pairs for each sentence (beginning with its
    prefix and containing its constraints, where given), asked REQUEST_SENTENCES at a time, each request answered within timeout
    seconds; on_part is called with the number of sentences of each answer (a progress bar's). The
    server's warnings are logged here, their sentences numbered from start + 1.

    Raises:
        NmtError: no server answers at url, it refused a request (its reason), or it did not
        answer one in time.
    """
    lists = {"text": sentences, **({"prefix": prefixes} if prefixes is not None else {}),
             **({"constraints": constraints} if constraints is not None else {})}
    return [[(hypothesis["text"], hypothesis["score"]) for hypothesis in hypotheses]
            for body in _posted(url, "/translate", lists, {"n_best": n_best}, timeout, on_part, start)
            for hypotheses in body["translations"]]


def score(url: str, sources: Sequence[str], targets: Sequence[str], timeout: float = 600.0,
          on_part: Callable[[int], None] | None = None, start: int = 0) -> list[tuple[float, list[str], list[float]]]:
    """The server's (score, pieces, log-probabilities) of each target as the translation of its
    source, asked REQUEST_SENTENCES pairs at a time (on_part and start as for `request`).

    Raises:
        NmtError: as `request`.
    """
    return [(scored["score"], scored["pieces"], scored["log_probs"])
            for body in _posted(url, "/score", {"source": sources, "target": targets}, {}, timeout, on_part, start)
            for scored in body["scores"]]


def _posted(url: str, path: str, lists: dict[str, Sequence], fields: dict, timeout: float,
            on_part: Callable[[int], None] | None = None, first: int = 0) -> Iterator[dict]:
    """The answers to POST path with lists (of equal length) sent REQUEST_SENTENCES items at a
    time, each request with fields too and its start (first, the number of items before lists,
    and those of earlier requests); on_part(items) after each answer, whose warnings are logged."""
    total = len(next(iter(lists.values())))
    for start in range(0, total, REQUEST_SENTENCES):
        data = json.dumps({**{name: list(values[start:start + REQUEST_SENTENCES]) for name, values in lists.items()},
                           **fields, "start": first + start}).encode("utf-8")
        answer = _call(url, urllib.request.Request(url.rstrip("/") + path, data=data,
                                                   headers={"Content-Type": "application/json"}), timeout)
        for warning in answer.get("warnings", []):
            log.warning("%s", warning)
        yield answer
        if on_part:
            on_part(min(REQUEST_SENTENCES, total - start))


def health(url: str, timeout: float = 10.0) -> dict:
    """What the server at url serves: its run, checkpoint and decode settings (GET /health).

    Raises:
        NmtError: no server answers at url.
    """
    return _call(url, urllib.request.Request(url.rstrip("/") + "/health"), timeout)


def _call(url: str, call: urllib.request.Request, timeout: float) -> dict:
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            reason = json.loads(error.read())["error"]
        except (ValueError, KeyError, TypeError):
            reason = f"HTTP {error.code}"
        raise NmtError(f"the server at {url} refused the request: {reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            raise NmtError(f"the server at {url} did not answer within {timeout:g} s; check that it still runs") from None
        raise NmtError(f"no translation server answers at {url} ({reason}); start one with: nmt serve --run-dir DIR --port PORT") from None
