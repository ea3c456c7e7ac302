//! Tool calls of local models: the prompt side (what the template gets, and the text that opens
//! the answer when a call is required) and the answer side, a streaming parser of the
//! `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks Qwen2.5 and Hermes models
//! write, turned into [`ChatEvent::ToolCall`]s. Small models often drop the tags and answer
//! with the bare JSON object: at the start of an answer, an object that names an offered tool
//! is a call too (as llama.cpp's Hermes parser accepts).

use futures::{stream, StreamExt};
use serde_json::Value;
use tandem_core::{
    ChatEvent, ChatRequest, EventStream, FinishReason, TokenLogprob, ToolCallDelta, ToolChoice,
};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// How a request's tools shape the prompt and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPlan {
    /// Text appended after the assistant's turn opens: it makes the model call a tool
    /// (`required`) or a given one (a named `tool_choice`).
    pub prefill: String,
    /// The offered functions' names.
    pub names: Vec<String>,
}

impl ToolPlan {
    /// `None` when the request offers no tools (or `tool_choice` is `none`): plain generation.
    pub fn of(request: &ChatRequest) -> Option<Self> {
        if !request.offers_tools() {
            return None;
        }
        let prefill = match &request.tool_choice {
            Some(ToolChoice::Required) => format!("{OPEN}\n"),
            Some(ToolChoice::Function(name)) => {
                // The name is validated at the edge (letters, digits, '_', '-'), so it needs no
                // escaping inside the JSON string.
                format!("{OPEN}\n{{\"name\": \"{name}\", \"arguments\": ")
            }
            _ => String::new(),
        };
        Some(ToolPlan {
            prefill,
            names: request.tools.iter().map(|t| t.name.clone()).collect(),
        })
    }
}

/// One thing the parser recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Text(String),
    /// The `index`-th call of the answer.
    Call {
        index: u32,
        name: String,
        arguments: String,
    },
}

/// Splits generated text into plain text and tool calls as it streams. Text that may be the
/// start of `<tool_call>` (or, before any text, of a bare JSON call) is held back; a call is
/// emitted whole when it closes. A block that is not a valid call comes out as the text it was.
#[derive(Debug, Default)]
pub struct ToolCallParser {
    pending: String,
    in_call: bool,
    names: Vec<String>,
    /// Some text other than whitespace and calls has been emitted: bare JSON is text from here.
    wrote_text: bool,
    /// Trailing whitespace of the text so far, held until more text follows it: the newlines
    /// around calls are not content.
    space: String,
    calls: u32,
}

impl ToolCallParser {
    /// A parser for an answer to `plan` (its prefill is already in the prompt).
    pub fn new(plan: &ToolPlan) -> Self {
        let mut parser = ToolCallParser {
            names: plan.names.clone(),
            ..ToolCallParser::default()
        };
        if let Some(rest) = plan.prefill.strip_prefix(OPEN) {
            parser.in_call = true;
            parser.pending = rest.to_string();
        }
        parser
    }

    pub fn push(&mut self, text: &str) -> Vec<Parsed> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        loop {
            if self.in_call {
                let Some(end) = self.pending.find(CLOSE) else {
                    break;
                };
                let body: String = self.pending.drain(..end + CLOSE.len()).collect();
                out.push(self.call(&body[..end], true));
                self.in_call = false;
            } else if !self.wrote_text && self.pending.trim_start().starts_with('{') {
                match self.bare_call() {
                    Bare::NeedMore => break,
                    Bare::Call(call) => out.push(call),
                    // Not a call: the same text goes the plain way.
                    Bare::Text => self.wrote_text = true,
                }
            } else if let Some(start) = self.pending.find(OPEN) {
                let before: String = self.pending.drain(..start + OPEN.len()).collect();
                self.text(&before[..start], &mut out);
                self.in_call = true;
            } else {
                let keep = partial_open(&self.pending);
                let ready: String = self.pending.drain(..self.pending.len() - keep).collect();
                self.text(&ready, &mut out);
                break;
            }
        }
        out
    }

    /// The end of the answer: an unclosed call is parsed as it stands (models often stop right
    /// after the JSON); what cannot be parsed is text.
    pub fn finish(&mut self) -> Vec<Parsed> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.pending);
        if self.in_call {
            self.in_call = false;
            let parsed = self.call(&rest, false);
            out.push(parsed);
        } else {
            self.text(&rest, &mut out);
        }
        if self.calls == 0 && !self.space.is_empty() {
            out.push(Parsed::Text(std::mem::take(&mut self.space)));
        }
        out
    }

    /// Calls recognised so far.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// The bare JSON object `pending` starts with (after whitespace), if it is a call of an
    /// offered tool; the call is taken out of `pending`.
    fn bare_call(&mut self) -> Bare {
        let space = self.pending.len() - self.pending.trim_start().len();
        let json = &self.pending[space..];
        let mut values = serde_json::Deserializer::from_str(json).into_iter::<Value>();
        let end = match values.next() {
            Some(Ok(_)) => values.byte_offset(),
            Some(Err(e)) if e.is_eof() => return Bare::NeedMore,
            _ => return Bare::Text,
        };
        match parse_call(&json[..end]) {
            Some((name, arguments)) if self.names.contains(&name) => {
                self.pending.drain(..space + end);
                let index = self.calls;
                self.calls += 1;
                self.space.clear();
                Bare::Call(Parsed::Call {
                    index,
                    name,
                    arguments,
                })
            }
            _ => Bare::Text,
        }
    }

    /// A block's body as a call, or as the text it was when it is not one.
    fn call(&mut self, body: &str, closed: bool) -> Parsed {
        match parse_call(body) {
            Some((name, arguments)) => {
                let index = self.calls;
                self.calls += 1;
                self.space.clear();
                Parsed::Call {
                    index,
                    name,
                    arguments,
                }
            }
            None => {
                let close = if closed { CLOSE } else { "" };
                let mut text = std::mem::take(&mut self.space);
                text.push_str(&format!("{OPEN}{body}{close}"));
                Parsed::Text(text)
            }
        }
    }

    /// Emit text, except its trailing whitespace, which waits for what follows.
    fn text(&mut self, text: &str, out: &mut Vec<Parsed>) {
        let body = text.trim_end();
        if body.is_empty() {
            self.space.push_str(text);
            return;
        }
        self.wrote_text = true;
        let mut all = std::mem::take(&mut self.space);
        all.push_str(body);
        self.space.push_str(&text[body.len()..]);
        match out.last_mut() {
            Some(Parsed::Text(last)) => last.push_str(&all),
            _ => out.push(Parsed::Text(all)),
        }
    }
}

/// What a bare JSON object at the start of the answer is.
enum Bare {
    NeedMore,
    Call(Parsed),
    Text,
}

/// Length of the longest end of `text` that begins `<tool_call>` (ASCII, so a char boundary).
fn partial_open(text: &str) -> usize {
    (1..OPEN.len())
        .rev()
        .find(|&n| text.ends_with(&OPEN[..n]))
        .unwrap_or(0)
}

/// `{"name": "...", "arguments": {...}}` (arguments may also be a JSON string): name and
/// arguments as a JSON text.
fn parse_call(body: &str) -> Option<(String, String)> {
    let value: Value = serde_json::from_str(body.trim()).ok()?;
    let name = value.get("name")?.as_str()?.to_string();
    if name.is_empty() {
        return None;
    }
    let arguments = match value.get("arguments") {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    Some((name, arguments))
}

/// `events` with tool-call blocks turned into tool-call events; the answer ends with
/// `tool_calls` when it made any. Logprobs stay with the text they produced; those of a call's
/// tokens come in a text-less delta just before the call, so that checks reading an answer's
/// logprobs (the cascade's) see every generated token.
pub fn parse_stream(events: EventStream, plan: &ToolPlan, call_id: String) -> EventStream {
    let mut parser = ToolCallParser::new(plan);
    let mut logprobs: Vec<TokenLogprob> = Vec::new();
    Box::pin(events.flat_map(move |event| {
        let out: Vec<_> = match event {
            Ok(ChatEvent::Delta { text, logprobs: lp }) => {
                logprobs.extend(lp);
                let parsed = parser.push(&text);
                to_events(parsed, &mut logprobs, &call_id)
            }
            Ok(ChatEvent::Done {
                finish_reason,
                usage,
                trace,
            }) => {
                let mut parsed = parser.finish();
                if !logprobs.is_empty() && parsed.is_empty() {
                    // Held whitespace that never became content still had its tokens.
                    parsed.push(Parsed::Text(String::new()));
                }
                let mut out = to_events(parsed, &mut logprobs, &call_id);
                let finish_reason = match finish_reason {
                    FinishReason::Stop if parser.calls() > 0 => FinishReason::ToolCalls,
                    other => other,
                };
                out.push(Ok(ChatEvent::Done {
                    finish_reason,
                    usage,
                    trace,
                }));
                out
            }
            other => vec![other],
        };
        stream::iter(out)
    }))
}

fn to_events(
    parsed: Vec<Parsed>,
    logprobs: &mut Vec<TokenLogprob>,
    call_id: &str,
) -> Vec<Result<ChatEvent, tandem_core::ModelError>> {
    let mut out = Vec::with_capacity(parsed.len() + 1);
    for item in parsed {
        match item {
            Parsed::Text(text) => out.push(Ok(ChatEvent::Delta {
                text,
                logprobs: std::mem::take(logprobs),
            })),
            Parsed::Call {
                index,
                name,
                arguments,
            } => {
                if !logprobs.is_empty() {
                    out.push(Ok(ChatEvent::Delta {
                        text: String::new(),
                        logprobs: std::mem::take(logprobs),
                    }));
                }
                out.push(Ok(ChatEvent::ToolCall(ToolCallDelta {
                    index,
                    id: Some(format!("{call_id}_{index}")),
                    name: Some(name),
                    arguments,
                })));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(prefill: &str, pieces: &[&str]) -> Vec<Parsed> {
        let mut parser = ToolCallParser::new(&ToolPlan {
            prefill: prefill.into(),
            names: vec!["weather".into(), "time".into(), "f".into(), "g".into()],
        });
        let mut out: Vec<Parsed> = Vec::new();
        for piece in pieces {
            out.extend(parser.push(piece));
        }
        out.extend(parser.finish());
        // Adjacent text pieces are one text, however they were split.
        let mut merged: Vec<Parsed> = Vec::new();
        for item in out {
            match (merged.last_mut(), item) {
                (Some(Parsed::Text(a)), Parsed::Text(b)) => a.push_str(&b),
                (_, item) => merged.push(item),
            }
        }
        merged
    }

    fn call(index: u32, name: &str, arguments: &str) -> Parsed {
        Parsed::Call {
            index,
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    const ANSWER: &str = "Checking.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"time\", \"arguments\": {}}\n</tool_call>";

    #[test]
    fn calls_are_found_however_the_text_is_split() {
        let expected = vec![
            Parsed::Text("Checking.".into()),
            call(0, "weather", "{\"city\":\"Paris\"}"),
            call(1, "time", "{}"),
        ];
        assert_eq!(run("", &[ANSWER]), expected);
        for split in 1..ANSWER.len() {
            let (a, b) = ANSWER.split_at(split);
            assert_eq!(run("", &[a, b]), expected, "split at {split}");
        }
        let chars: Vec<String> = ANSWER.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(run("", &pieces), expected);
    }

    #[test]
    fn bare_json_calls_at_the_start_are_calls() {
        let bare = "{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}\n{\"name\": \"time\", \"arguments\": {}}";
        let expected = vec![
            call(0, "weather", "{\"city\":\"Paris\"}"),
            call(1, "time", "{}"),
        ];
        for split in 1..bare.len() {
            let (a, b) = bare.split_at(split);
            assert_eq!(run("", &[a, b]), expected, "split at {split}");
        }
        // An unknown name, JSON after text, or a cut-off object stay text.
        let other = "{\"name\": \"other\", \"arguments\": {}}";
        assert_eq!(run("", &[other]), vec![Parsed::Text(other.into())]);
        let late = format!("Here: {bare}");
        assert_eq!(run("", &[&late]), vec![Parsed::Text(late.clone())]);
        assert_eq!(
            run("", &["{\"name\": \"time\", \"argu"]),
            vec![Parsed::Text("{\"name\": \"time\", \"argu".into())]
        );
    }

    #[test]
    fn plain_text_and_lookalikes_stay_text() {
        assert_eq!(
            run("", &["a <tool", "_ca", "ll is written <tool_call>"]),
            vec![Parsed::Text("a <tool_call is written <tool_call>".into())]
        );
        assert_eq!(
            run("", &["<tool_call>not json</tool_call> after"]),
            vec![Parsed::Text("<tool_call>not json</tool_call> after".into())]
        );
        assert_eq!(run("", &["  \n"]), vec![Parsed::Text("  \n".into())]);
    }

    #[test]
    fn an_unclosed_call_at_the_end_is_parsed_and_prefills_count() {
        assert_eq!(
            run(
                "",
                &["<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}"]
            ),
            vec![call(0, "f", "{\"x\":1}")]
        );
        let plan = "<tool_call>\n{\"name\": \"f\", \"arguments\": ";
        assert_eq!(
            run(plan, &["{\"x\": \"y\"}}\n</tool_call>"]),
            vec![call(0, "f", "{\"x\":\"y\"}")]
        );
        assert_eq!(
            run(
                "<tool_call>\n",
                &["{\"name\": \"g\", \"arguments\": \"{}\"}"]
            ),
            vec![call(0, "g", "{}")]
        );
    }
}
