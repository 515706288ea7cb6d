"""Talking to an instruction run: the official `openai` client against `pipeline serve`'s
OpenAI-style routes (whole and streamed replies, stop strings, errors it can read), and `pipeline
chat` in the terminal, each answering through the template the run trained with."""
from __future__ import annotations

import pytest

from conftest import run_cli, serving, short_alpaca_rows
from pipeline.inference.chat import ChatModel, Reply, Settings, chat_loop
from pipeline.inference.serve import Limits, create_app

openai = pytest.importorskip("openai")
KEY = "chat-test-key"


@pytest.fixture(scope="module")
def chat(sft_run):
    import pipeline

    model = pipeline.load(sft_run, device="cpu")
    return ChatModel(model.engine.model, model.engine.tokenizer, "alpaca_smollm2_lora"), model


@pytest.fixture(scope="module")
def client(chat):
    with serving(create_app(chat[0], limits=Limits(max_new_tokens=64), api_key=KEY)) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)


def prompt() -> str:
    return short_alpaca_rows()[50]["instruction"]


def test_the_openai_client_gets_the_runs_own_greedy_reply(chat, client):
    _, model = chat
    [served] = [m.id for m in client.models.list()]
    answer = client.chat.completions.create(model=served, messages=[{"role": "user", "content": prompt()}],
                                            max_tokens=48, temperature=0)
    choice = answer.choices[0]
    # the same template and the same greedy decoding as `pipeline generate` on the run
    assert choice.message.content.strip() == model(prompt(), max_new_tokens=48, temperature=0)
    assert choice.finish_reason in ("stop", "length") and choice.message.role == "assistant"
    assert answer.usage.prompt_tokens > 10 and 0 < answer.usage.completion_tokens <= 48


def test_a_streamed_reply_arrives_in_pieces_that_join_to_the_whole_reply(client):
    messages = [{"role": "user", "content": prompt()}]
    whole = client.chat.completions.create(model="alpaca_smollm2_lora", messages=messages, max_tokens=48,
                                           temperature=0)
    chunks = list(client.chat.completions.create(model="alpaca_smollm2_lora", messages=messages, max_tokens=48,
                                                 temperature=0, stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_a_stop_string_ends_the_reply_before_it(client):
    messages = [{"role": "user", "content": prompt()}]
    whole = client.chat.completions.create(model="alpaca_smollm2_lora", messages=messages, max_tokens=48,
                                           temperature=0).choices[0].message.content
    stop = whole.split()[2]  # a word inside the reply
    cut = client.chat.completions.create(model="alpaca_smollm2_lora", messages=messages, max_tokens=48,
                                         temperature=0, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop" and cut.message.content == whole[:whole.index(stop)]
    streamed = client.chat.completions.create(model="alpaca_smollm2_lora", messages=messages, max_tokens=48,
                                              temperature=0, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == cut.message.content


def test_a_seed_repeats_a_sampled_reply(client):
    ask = dict(model="alpaca_smollm2_lora", messages=[{"role": "user", "content": prompt()}], max_tokens=24,
               temperature=1.0, seed=7)
    assert client.chat.completions.create(**ask).choices[0].message.content == \
        client.chat.completions.create(**ask).choices[0].message.content


@pytest.mark.parametrize("ask, error, words", [
    ({"model": "gpt-4o"}, "NotFoundError", "not served here"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "UnprocessableEntityError", "'robot' is not one of"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
     "UnprocessableEntityError", "answers a user turn"),
    ({"messages": [{"role": "user", "content": " "}]}, "UnprocessableEntityError", "is empty"),
    ({"n": 2}, "UnprocessableEntityError", '"n" must be 1'),
    ({"max_tokens": 65}, "UnprocessableEntityError", "over this server's limit of 64"),
    ({"temperature": 3}, "UnprocessableEntityError", "temperature"),
])
def test_bad_requests_get_an_error_the_client_shows(client, ask, error, words):
    request = {"model": "alpaca_smollm2_lora", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, **ask}
    with pytest.raises(getattr(openai, error)) as raised:
        client.chat.completions.create(**request)
    assert words in raised.value.body["message"]


def test_a_wrong_key_is_refused(chat):
    with serving(create_app(chat[0], api_key=KEY)) as url:
        stranger = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            stranger.models.list()


def test_pipeline_chat_answers_one_prompt_as_the_api_does(sft_run, chat, capsys):
    _, model = chat
    question = prompt()
    expected = model(question, max_new_tokens=48, temperature=0)
    capsys.readouterr()
    assert run_cli("chat", sft_run, "--prompt", question, "--temperature", "0", "--max-new-tokens", "48") == 0
    assert capsys.readouterr().out.strip() == expected


def test_the_terminal_chat_keeps_history_until_reset(chat):
    model = chat[0]
    seen: list[list[dict[str, str]]] = []
    original = model.stream

    def recording(messages, settings):
        seen.append([dict(m) for m in messages])
        return original(messages, settings)

    model.stream = recording
    try:
        lines = iter(["Name a colour.", "And another?", "/reset", "Name a fruit.", "/exit"])
        out: list[str] = []
        assert chat_loop(model, Settings(max_tokens=8, temperature=0), system="Be brief.", read=lambda _: next(lines),
                         write=out.append) == 0
    finally:
        del model.stream
    assert [len(m) for m in seen] == [2, 4, 2]  # system + user; + reply + user; cleared: system + user
    assert seen[1][2]["role"] == "assistant" and seen[2][1]["content"] == "Name a fruit."
    assert "(conversation cleared)\n" in out


def test_a_reply_that_runs_out_of_tokens_says_so(chat):
    *_, last = chat[0].stream([{"role": "user", "content": prompt()}], Settings(max_tokens=3, temperature=0))
    assert isinstance(last, Reply) and last.finish_reason == "length" and last.completion_tokens == 3


def test_a_model_without_a_chat_template_is_talked_to_through_a_transcript(chat):
    """A causal LM trained on plain text has no template: the conversation becomes `role: content`
    lines ending in `assistant:`, and the reply stops at the end-of-sequence token."""
    import copy

    tokenizer = copy.deepcopy(chat[0].tokenizer)
    tokenizer.chat_template = None
    plain = ChatModel(chat[0].model, tokenizer, "plain")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    assert tokenizer.decode(plain.render(messages)) == "system: Be brief.\nuser: Name a colour.\nassistant:"
    assert plain.stop_ids == [tokenizer.eos_token_id]
    reply = plain.reply(messages, Settings(max_tokens=4, temperature=0))
    assert reply.completion_tokens <= 4 and reply.finish_reason in ("stop", "length")
