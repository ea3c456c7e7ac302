"""Streams a chat completion from a running Tandem gateway with the official openai client.

Usage: python3 openai_stream.py BASE_URL MODEL
Prints the streamed text, then a last line `FINISH <reason> USAGE <completion_tokens>`.
"""
import sys

from openai import OpenAI

base_url, model = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key="unused")
names = [m.id for m in client.models.list().data]
assert "small" in names and "large" in names, names
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Name three fruits."}],
    max_tokens=16,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
)
finish, usage = None, None
for chunk in stream:
    if chunk.choices:
        sys.stdout.write(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage.completion_tokens
whole = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, logprobs=True, top_logprobs=2
)
assert whole.choices[0].logprobs.content[0].top_logprobs, whole
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("unknown model was accepted")
except Exception as e:  # openai.NotFoundError
    assert "no-such-model" in str(e), e
print(f"\nFINISH {finish} USAGE {usage}")
