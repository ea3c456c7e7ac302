"""A whole tool-calling loop against a running Tandem gateway with the official openai client.

Usage: python3 openai_tools.py BASE_URL MODEL
The model must call get_weather for Paris (streamed and whole), then answer from the tool's
result; a tool_choice naming an unknown function must be a 400. Prints `OK` at the end.
"""
import json
import sys

from openai import BadRequestError, OpenAI

base_url, model = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key="unused")
tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}]
messages = [{"role": "user", "content": "What is the weather like in Paris right now?"}]

# Streamed: the call arrives as tool_calls deltas, assembled by index as clients do.
calls, finish = {}, None
for chunk in client.chat.completions.create(
    model=model, messages=messages, tools=tools, temperature=0, max_tokens=64, stream=True
):
    if not chunk.choices:
        continue
    choice = chunk.choices[0]
    finish = choice.finish_reason or finish
    for piece in choice.delta.tool_calls or []:
        call = calls.setdefault(piece.index, {"id": None, "name": "", "arguments": ""})
        call["id"] = piece.id or call["id"]
        call["name"] += piece.function.name or ""
        call["arguments"] += piece.function.arguments or ""
assert finish == "tool_calls", (finish, calls)
assert len(calls) == 1 and calls[0]["name"] == "get_weather", calls
assert "Paris" in json.loads(calls[0]["arguments"])["city"], calls

# Whole: the same call in message.tool_calls, content null.
whole = client.chat.completions.create(
    model=model, messages=messages, tools=tools, temperature=0, max_tokens=64
)
message = whole.choices[0].message
assert whole.choices[0].finish_reason == "tool_calls", whole
assert message.content is None and len(message.tool_calls) == 1, message
call = message.tool_calls[0]
assert call.function.arguments == calls[0]["arguments"], (call, calls)

# The result goes back; asked for text, the model answers from it.
messages.append(message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 31, "sky": "clear"}'})
answer = client.chat.completions.create(
    model=model, messages=messages, tools=tools, tool_choice="none", temperature=0, max_tokens=48
)
assert answer.choices[0].finish_reason == "stop", answer
assert "31" in answer.choices[0].message.content, answer

try:
    client.chat.completions.create(
        model=model, messages=messages, tools=tools,
        tool_choice={"type": "function", "function": {"name": "no_such_tool"}},
    )
    raise SystemExit("a tool_choice naming an unknown function was accepted")
except BadRequestError as e:
    assert "no_such_tool" in str(e), e
print("OK")
