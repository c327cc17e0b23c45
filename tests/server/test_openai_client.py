"""The real `openai` Python client (pinned in tests/py/requirements.txt) against the server:
models, chat completions streaming and not, completions, responses chained with
previous_response_id, and errors."""
import openai
import pytest

from conftest import KEY_A


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY_A, max_retries=0)


def test_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["default"]
    assert client.models.retrieve("default").id == "default"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_chat_non_streaming_and_streaming_agree(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about rivers."}]
    r = client.chat.completions.create(model="default", messages=messages, max_tokens=12, temperature=0)
    c = r.choices[0]
    assert r.object == "chat.completion" and c.message.role == "assistant" and c.message.content
    assert c.finish_reason in ("length", "stop")
    u = r.usage
    assert u.completion_tokens <= 12 and u.prompt_tokens > 5 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    stream = client.chat.completions.create(model="default", messages=messages, max_completion_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    assert text == c.message.content and finish == c.finish_reason
    assert usage.completion_tokens == u.completion_tokens and usage.prompt_tokens == u.prompt_tokens


def test_chat_seed_and_sampling(client):
    kw = dict(model="default", messages=[{"role": "user", "content": "Say something."}], max_tokens=16,
              temperature=1.0, top_p=0.9)
    a = client.chat.completions.create(seed=42, **kw).choices[0].message.content
    b = client.chat.completions.create(seed=42, **kw).choices[0].message.content
    others = {client.chat.completions.create(seed=s, **kw).choices[0].message.content for s in (1, 2, 3)}
    assert a == b
    assert len(others | {a}) > 1  # the seed changes the sample


def test_chat_history_and_stop(client):
    messages = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."},
                {"role": "user", "content": "Write a long sentence."}]
    full = client.chat.completions.create(model="default", messages=messages, max_tokens=24, temperature=0)
    text = full.choices[0].message.content
    assert len(text) > 6
    stop = text[3:6]  # a string that occurs early in the greedy reply
    cut = client.chat.completions.create(model="default", messages=messages, max_tokens=24, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(stop)]


def test_completions(client):
    r = client.completions.create(model="default", prompt="Once upon a time", max_tokens=10, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text and r.usage.completion_tokens == 10
    assert r.choices[0].finish_reason == "length"
    parts = [c.choices[0].text for c in client.completions.create(model="default", prompt="Once upon a time",
                                                                  max_tokens=10, temperature=0, stream=True)]
    assert "".join(parts) == r.choices[0].text


def test_responses_chain(client):
    r1 = client.responses.create(model="default", input="Tell me a story.", max_output_tokens=10, temperature=0)
    assert r1.object == "response" and r1.output_text and r1.usage.output_tokens == 10
    assert r1.usage.input_tokens_details.cached_tokens == 0
    r2 = client.responses.create(model="default", input="Go on.", previous_response_id=r1.id, max_output_tokens=10,
                                 temperature=0)
    assert r2.previous_response_id == r1.id
    # continuing prefills only the new tokens: everything before is the actor's KV cache
    assert r2.usage.input_tokens_details.cached_tokens == r1.usage.input_tokens + r1.usage.output_tokens
    assert r2.usage.input_tokens > r2.usage.input_tokens_details.cached_tokens
    # the same chain over the stateless API gives the same reply (same history, greedy)
    chat = client.chat.completions.create(model="default", temperature=0, max_tokens=10, messages=[
        {"role": "user", "content": "Tell me a story."}, {"role": "assistant", "content": r1.output_text},
        {"role": "user", "content": "Go on."}])
    assert chat.choices[0].message.content == r2.output_text
    # streaming continues the chain too
    events = list(client.responses.create(model="default", input="More.", previous_response_id=r2.id,
                                          max_output_tokens=8, temperature=0, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] in ("response.completed", "response.incomplete")
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text and deltas
    # an older response forks: a new conversation adopts the turns up to it and goes on from there,
    # as a fresh chain with that history would; the original chain is untouched
    fork = client.responses.create(model="default", input="Tell me another one.", previous_response_id=r1.id,
                                   max_output_tokens=10, temperature=0)
    assert fork.id.split("_")[1] != r1.id.split("_")[1] and fork.id.endswith("_2") and fork.previous_response_id == r1.id
    chat = client.chat.completions.create(model="default", temperature=0, max_tokens=10, messages=[
        {"role": "user", "content": "Tell me a story."}, {"role": "assistant", "content": r1.output_text},
        {"role": "user", "content": "Tell me another one."}])
    assert chat.choices[0].message.content == fork.output_text
    fork2 = client.responses.create(model="default", input="Go on.", previous_response_id=fork.id, max_output_tokens=8,
                                    temperature=0)
    assert fork2.id == fork.id[:-2] + "_3" and fork2.output_text
    # a retry of the latest turn (the same input after the same response) is answered from the log
    again = client.responses.create(model="default", input="Go on.", previous_response_id=fork.id, max_output_tokens=8,
                                    temperature=0)
    assert again.id == fork2.id and again.output_text == fork2.output_text
    # an unknown one is 404
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="default", input="x", previous_response_id="resp_" + "0" * 24 + "_1")


def test_errors(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-unknown", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}], temperature=5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}], max_tokens=10**6)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="default", messages=[])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong-key-000000000", max_retries=0).models.list()
