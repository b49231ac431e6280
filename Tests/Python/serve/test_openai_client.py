"""The official `openai` Python client against `squish serve` on loopback (the default model, greedy decoding)."""
import json
import math

import jsonschema
import openai
import pytest


@pytest.fixture(scope="module")
def client(default_server):
    return openai.OpenAI(base_url=default_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


MESSAGES = [{"role": "user", "content": "Name three colors."}]


def test_models_lists_the_served_model(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert client.models.retrieve(ids[0]).id == ids[0]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_completion_and_its_stream_agree(client):
    r = client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=24, temperature=0)
    text = r.choices[0].message.content
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert text and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 24 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    chunks = list(client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=24, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [r.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    # The second identical request found the prompt in the cache.
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens >= r.usage.prompt_tokens - 1


def test_completions_plain_and_streamed(client):
    r = client.completions.create(model="smollm2-135m", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text
    assert r.usage.completion_tokens <= 8
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="smollm2-135m", prompt="The capital of France is", max_tokens=8, temperature=0, stream=True))
    assert streamed == r.choices[0].text
    assert client.completions.create(prompt="Hello", model="smollm2-135m").usage.completion_tokens <= 16  # OpenAI's default


def test_stop_texts(client):
    full = client.completions.create(model="smollm2-135m", prompt="1, 2, 3, 4,", max_tokens=16, temperature=0).choices[0].text
    assert " 6" in full
    cut = client.completions.create(model="smollm2-135m", prompt="1, 2, 3, 4,", max_tokens=16, temperature=0, stop=[" 6"])
    assert cut.choices[0].text == full[:full.index(" 6")]
    assert cut.choices[0].finish_reason == "stop"


def test_chat_logprobs(client):
    r = client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=10, temperature=0,
                                       logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(e.token for e in content) == r.choices[0].message.content
    for e in content:
        assert len(e.top_logprobs) == 3 and e.logprob <= 0
        tops = [t.logprob for t in e.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert e.token == e.top_logprobs[0].token and math.isclose(e.logprob, tops[0], abs_tol=1e-5)
        assert sum(math.exp(t) for t in tops) <= 1 + 1e-4
        assert bytes(e.bytes).decode("utf-8", "replace") == e.token


def test_completion_logprobs(client):
    r = client.completions.create(model="smollm2-135m", prompt="Once upon a time", max_tokens=6, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == r.usage.completion_tokens
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset[0] == 0 and all(b >= a for a, b in zip(lp.text_offset, lp.text_offset[1:]))
    assert all(t <= 0 for t in lp.token_logprobs)


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "colors": {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]}, "maxItems": 3},
        "member": {"type": "boolean"},
    },
    "required": ["name", "age", "colors", "member"],
    "additionalProperties": False,
}


def test_json_schema_output_validates(client):
    for temperature in (0, 0.8):
        r = client.chat.completions.create(
            model="smollm2-135m", max_tokens=120, temperature=temperature, seed=3,
            messages=[{"role": "user", "content": "Describe a person as JSON with name, age, favourite colors and membership."}],
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA, "strict": True}})
        value = json.loads(r.choices[0].message.content)
        jsonschema.validate(value, SCHEMA)
        assert r.choices[0].finish_reason == "stop"


def test_json_object_output_parses(client):
    r = client.chat.completions.create(model="smollm2-135m", max_tokens=80, temperature=0,
                                       messages=[{"role": "user", "content": "Give me a JSON object about a cat."}],
                                       response_format={"type": "json_object"})
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    else:
        assert r.choices[0].message.content.startswith("{")


def test_unsupported_schema_is_a_clear_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=4, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "^a+$"}}})
    assert "pattern" in str(e.value)


def test_embeddings(client):
    r = client.embeddings.create(model="smollm2-135m", input=["Elizabeth Bennet", "Mr. Darcy"])
    assert [d.index for d in r.data] == [0, 1]
    for d in r.data:
        assert len(d.embedding) == 576
        assert math.isclose(sum(x * x for x in d.embedding), 1, rel_tol=1e-4)
    one = client.embeddings.create(model="smollm2-135m", input="Elizabeth Bennet").data[0].embedding
    assert max(abs(a - b) for a, b in zip(one, r.data[0].embedding)) < 1e-6


def test_metrics_after_requests(client, default_server):
    import urllib.request
    list(client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=4, stream=True))
    text = urllib.request.urlopen(default_server.url + "/metrics", timeout=30).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    model = 'model="SmolLM2-135M-Instruct.Q4_1.gguf"'
    assert values['squish_generated_tokens_total{%s}' % model] >= 4
    assert values['squish_prompt_tokens_total{%s}' % model] > 0
    assert values['squish_time_to_first_token_seconds_count{%s}' % model] >= 1
    assert values['squish_token_latency_seconds_count{%s}' % model] >= 3
    assert values['squish_queue_depth{%s}' % model] == 0 and values['squish_active_sequences{%s}' % model] >= 0
    assert values['squish_kv_cache_bytes{%s}' % model] > 0
    assert values['squish_requests_total{path="/v1/chat/completions",status="200"}'] >= 1
