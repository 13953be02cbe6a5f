"""The translation server's protocol, with a stand-in for the model: requests, n-best, Unicode,
bad requests, a failing model, and a client with no server to ask."""

import json
import threading
import urllib.request

import pytest

from nmt import server
from nmt.errors import ConfigError, NmtError


def reverse(sentences, n_best, prefixes=None, start=0, constraints=None):
    """A stand-in model: each sentence reversed, then its constraints; one of 'long' is warned of,
    as the model warns of a sentence cut, by its number in the client's input."""
    if n_best < 1 or n_best > 2:
        raise ConfigError(f"n-best must be between 1 and decode.beam_size (2); got {n_best}")
    if "boom" in sentences:
        raise RuntimeError("the model failed")
    for index, sentence in enumerate(sentences):
        if sentence == "long":
            server.log.warning("sentence %d is long", start + index + 1)
    prefixes = prefixes or [""] * len(sentences)
    constraints = constraints or [[]] * len(sentences)
    return [[(prefix + sentence[::-1] + "".join(texts) + "!" * rank, -float(rank)) for rank in range(n_best)]
            for sentence, prefix, texts in zip(sentences, prefixes, constraints)]


@pytest.fixture
def url():
    http = server.make_server(reverse, "127.0.0.1", 0, {"run": "runs/x"})
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_address[1]}"
    http.shutdown()
    http.server_close()


def post(url, body: bytes, path: str = "/translate"):
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, data=body)) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_translations_and_n_best_in_order(url):
    assert server.request(url, ["abc", "", "Grüße, 世界"]) == [[("cba", 0.0)], [("", 0.0)], [("界世 ,eßürG", 0.0)]]
    assert server.request(url, ["ab", "cd"], n_best=2) == [[("ba", 0.0), ("ba!", -1.0)], [("dc", 0.0), ("dc!", -1.0)]]
    assert server.health(url) == {"status": "ok", "run": "runs/x"}


def test_prefixes_go_with_their_sentences_in_every_request(url, monkeypatch):
    monkeypatch.setattr(server, "REQUEST_SENTENCES", 2)
    sentences, prefixes, parts = ["ab", "cd", "ef"], ["1", "", "3"], []
    assert server.request(url, sentences, prefixes=prefixes, on_part=parts.append) == [[("1ba", 0.0)], [("dc", 0.0)], [("3fe", 0.0)]]
    assert parts == [2, 1]  # what a progress bar advances by, as each answer comes
    constraints = [["x", "y"], [], ["z"]]
    assert server.request(url, sentences, prefixes=prefixes, constraints=constraints) == [
        [("1baxy", 0.0)], [("dc", 0.0)], [("3fez", 0.0)]]


def test_the_models_refusal_reaches_the_client_as_one_error(url):
    with pytest.raises(NmtError, match=r"refused the request: n-best must be between 1 and decode.beam_size \(2\); got 3"):
        server.request(url, ["abc"], n_best=3)


@pytest.mark.parametrize("body, message", [
    (b"not json", "JSON"),
    (b'{"text": "one string"}', '{"text": [sentences...]'),
    (b'{"text": ["a", 1]}', '{"text": [sentences...]'),
    (b'{"text": ["a"], "n_best": "2"}', "n_best must be an integer"),
    (b'{"text": ["a"], "prefix": "b"}', '"prefix" must be a list of strings'),
    (b'{"text": ["a"], "constraints": ["b"]}', '"constraints" must be a list of lists of strings'),
    (b'{"text": ["a"], "start": -1}', "start must be an integer of 0 or more"),
])
def test_bad_requests_get_400_with_the_reason(url, body, message):
    status, answer = post(url, body)
    assert status == 400 and message in answer["error"]


def test_the_servers_warnings_reach_the_client_numbered_from_where_each_request_starts(url, monkeypatch, caplog):
    monkeypatch.setattr(server, "REQUEST_SENTENCES", 2)
    with caplog.at_level("WARNING", logger="nmt"):
        translations = server.request(url, ["a", "long", "b", "long", "c"], start=10)
    assert [hypotheses[0][0] for hypotheses in translations] == ["a", "gnol", "b", "gnol", "c"]
    # Each warning twice: the server's console (this process) and the client.
    assert caplog.messages == ["sentence 12 is long"] * 2 + ["sentence 14 is long"] * 2


def test_a_failing_request_leaves_the_server_answering(url):
    with pytest.raises(NmtError, match="RuntimeError: the model failed"):
        server.request(url, ["boom"])
    assert server.request(url, ["ok"]) == [[("ko", 0.0)]]


def test_no_server_is_one_clear_error():
    http = server.make_server(reverse, "127.0.0.1", 0, {})
    port = http.server_address[1]
    http.server_close()  # the port is free and nothing listens on it
    with pytest.raises(NmtError, match=f"no translation server answers at http://127.0.0.1:{port}.*nmt serve"):
        server.request(f"http://127.0.0.1:{port}", ["abc"])


def test_a_port_in_use_is_one_clear_error(url):
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(NmtError, match=f"cannot listen on 127.0.0.1:{port}.*choose another --port"):
        server.make_server(reverse, "127.0.0.1", port, {})


@pytest.mark.parametrize("host", ["192.0.2.1", "nohost.invalid"])
def test_an_address_not_of_this_machine_is_one_clear_error(host):
    """An address of another machine (192.0.2.1 is reserved for documentation) or a name that
    does not resolve: the fix is the host, not the port."""
    with pytest.raises(NmtError, match=f"cannot listen on {host}:0: .*; choose another --host: an address of this machine"):
        server.make_server(reverse, host, 0, {})


def test_many_sentences_go_in_several_requests_in_order(url, monkeypatch):
    monkeypatch.setattr(server, "REQUEST_SENTENCES", 2)
    sentences = [f"s{number}" for number in range(5)]
    assert server.request(url, sentences) == [[(sentence[::-1], 0.0)] for sentence in sentences]
    assert server.request(url, []) == []


def test_a_server_that_does_not_answer_in_time_is_one_clear_error():
    answered = threading.Event()

    def stuck(sentences, n_best, prefixes, start, constraints):
        answered.wait(10)
        return [[("", 0.0)] for _ in sentences]

    http = server.make_server(stuck, "127.0.0.1", 0, {})
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        with pytest.raises(NmtError, match=r"^the server at http://127.0.0.1:\d+ did not answer within 0.5 s; check that it still runs$"):
            server.request(f"http://127.0.0.1:{http.server_address[1]}", ["abc"], timeout=0.5)
    finally:
        answered.set()
        http.shutdown()
        http.server_close()


def spell(sources, targets, start=0):
    """A stand-in scorer: a target's characters as its pieces, each scoring -1; an empty source
    scores -inf unless its target is empty, and a target 'long' nan, as the model's scorer does."""
    found = []
    for source, target in zip(sources, targets):
        if not source:
            found.append((0.0 if not target else float("-inf"), [], []))
        elif target == "long":
            found.append((float("nan"), [], []))
        else:
            found.append((-float(len(target) + 1), [*target, "</s>"], [-1.0] * (len(target) + 1)))
    return found


def test_scores_come_back_in_order_in_several_requests_with_infinities_and_nan(monkeypatch):
    import math

    http = server.make_server(reverse, "127.0.0.1", 0, {}, spell)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http.server_address[1]}"
    try:
        monkeypatch.setattr(server, "REQUEST_SENTENCES", 2)
        found = server.score(url, ["a", "", "b", "c", "d"], ["Grüße", "x", "long", "", "yz"])
        assert found[0] == (-6.0, ["G", "r", "ü", "ß", "e", "</s>"], [-1.0] * 6)
        assert found[1][0] == float("-inf") and math.isnan(found[2][0])
        assert [value for value, _, _ in found[3:]] == [-1.0, -3.0]
        status, answer = post(url, b'{"source": ["a"], "target": "b"}', "/score")
        assert status == 400 and '{"source": [sentences...], "target": [translations...]}' in answer["error"]
    finally:
        http.shutdown()
        http.server_close()


def test_a_server_without_a_scorer_says_which_paths_it_has(url):
    status, answer = post(url, b'{"source": ["a"], "target": ["b"]}', "/score")
    assert status == 404 and "use POST /translate, POST /score or GET /health" in answer["error"]

