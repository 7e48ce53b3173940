"""The sample app's work without HTTP."""

from __future__ import annotations

import hashlib
import json

import pytest

from services.sampleapp import NotJson, TaskStore, img2img, parse_args


@pytest.mark.parametrize(
    ("body", "words", "source"),
    [
        ({"prompt": "a cat", "image_url": "u"}, 2, "u"),
        ({"prompt": "  many   spaced\twords here "}, 4, None),
        ({"prompt": ["not", "text"]}, 0, None),
        (["a", "list"], 0, None),
        (None, 0, None),
    ],
)
def test_img2img_hashes_and_counts_the_prompt(body: object, words: int, source: object) -> None:
    raw = json.dumps(body).encode()
    answer = img2img(raw, task_id="t", attempt="1", node="n")
    prompt = body.get("prompt") if isinstance(body, dict) else None
    digest = hashlib.sha256((prompt if isinstance(prompt, str) else "").encode()).hexdigest()

    assert answer["prompt_words"] == words
    assert answer["prompt_sha256"] == digest
    assert answer["image_url"] == f"https://ngpu.ai/image/{digest[:32]}.jpeg"
    assert answer["source_image_url"] == source
    assert answer["body_bytes"] == len(raw)
    assert (answer["task_id"], answer["attempt"], answer["node"]) == ("t", "1", "n")


def test_equal_prompts_give_equal_images_and_different_prompts_different_ones() -> None:
    def url(prompt: str) -> str:
        body = json.dumps({"prompt": prompt}).encode()
        return str(img2img(body, task_id=None, attempt=None, node=None)["image_url"])

    assert url("a cat") == url("a cat")
    assert url("a cat") != url("a dog")


@pytest.mark.parametrize("body", [b"{", b"nope", b"\xff"])
def test_img2img_refuses_a_body_that_is_not_json(body: bytes) -> None:
    with pytest.raises(NotJson):
        img2img(body, task_id=None, attempt=None, node=None)


def test_the_task_store_forgets_the_oldest_beyond_its_capacity() -> None:
    store = TaskStore(capacity=2)
    ids = [store.add({"n": i}) for i in range(3)]

    assert store.describe(ids[0]) is None
    assert store.describe(ids[2]) == {
        "result_code": 100,
        "msg": "SUCCESS! The task is done",
        "taskID": ids[2],
        "status": "done",
        "result": {"n": 2},
    }
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    ("argv", "env", "host", "port"),
    [
        ([], {}, "127.0.0.1", 8080),
        ([], {"PORT": "9000"}, "127.0.0.1", 9000),
        (["--port", "7000"], {"PORT": "9000"}, "127.0.0.1", 7000),
        ([], {"NGPU_BIND_HOST": "0.0.0.0"}, "0.0.0.0", 8080),
        (["--host", "::1"], {"NGPU_BIND_HOST": "0.0.0.0"}, "::1", 8080),
    ],
)
def test_address_arguments(argv: list[str], env: dict[str, str], host: str, port: int) -> None:
    args = parse_args(argv, env)
    assert (args.host, args.port) == (host, port)
