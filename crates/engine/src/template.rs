//! Renders a conversation into the prompt text the model was trained on, with the Jinja chat
//! template stored in the GGUF (`tokenizer.chat_template`), exactly as the model's authors wrote
//! it (default system prompts included). Templates the Jinja engine cannot run fall back to
//! llama.cpp's built-in renderer for the same template.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate};
use minijinja::{context, Environment, Error, ErrorKind};
use serde_json::{json, Value};
use tandem_core::{Message, Tool};

use crate::sampler::TokenId;
use crate::{EngineError, GgufModel};

/// Render `messages` and open the assistant's turn.
pub fn render(model: &GgufModel, messages: &[Message]) -> Result<String, EngineError> {
    render_with_tools(model, messages, &[])
}

/// Render `messages` with `tools` offered (none when empty) and open the assistant's turn. Tools
/// need a template that renders them in the `<tool_call>` format (Qwen2.5, Hermes).
pub fn render_with_tools(
    model: &GgufModel,
    messages: &[Message],
    tools: &[Tool],
) -> Result<String, EngineError> {
    if messages.iter().any(|m| m.content.contains('\0')) {
        return Err(EngineError::InvalidInput(
            "message content must not contain NUL characters".into(),
        ));
    }
    if !tools.is_empty() && !supports_tools(model) {
        return Err(EngineError::InvalidInput(format!(
            "model '{}' cannot call tools: its chat template does not offer them in the \
             <tool_call> format (Qwen2.5 and Hermes models do)",
            model.id()
        )));
    }
    if let Some(template) = model.chat_template() {
        match render_jinja(
            template,
            messages,
            tools,
            model.bos_text(),
            model.eos_text(),
        ) {
            Ok(prompt) => return Ok(prompt),
            Err(e) if !tools.is_empty() => {
                return Err(EngineError::Template(format!(
                    "the chat template failed with tools: {e}"
                )))
            }
            Err(e) => {
                tracing::debug!("Jinja chat template failed ({e}); using llama.cpp's renderer")
            }
        }
    }
    render_builtin(model, messages)
}

/// Whether the model's template offers tools and asks for calls as `<tool_call>` JSON.
pub fn supports_tools(model: &GgufModel) -> bool {
    model
        .chat_template()
        .is_some_and(|t| t.contains("tools") && t.contains("<tool_call>"))
}

/// The prompt tokens `messages` render to, the assistant's turn open.
pub fn prompt_tokens(model: &GgufModel, messages: &[Message]) -> Result<Vec<TokenId>, EngineError> {
    tokenize_prompt(model, &render(model, messages)?)
}

/// The tokens of a rendered prompt.
pub fn tokenize_prompt(model: &GgufModel, prompt: &str) -> Result<Vec<TokenId>, EngineError> {
    // The rendered template contains control tokens as text (e.g. <|im_start|>). Templates that
    // write the BOS token themselves must not get a second one.
    let bos = model.bos_text();
    let add_bos = model.adds_bos() && (bos.is_empty() || !prompt.starts_with(bos));
    Ok(model.tokenize(prompt, add_bos, true))
}

/// A message as templates read it: role and content, plus the calls an assistant made (their
/// arguments as JSON objects, as Hugging Face passes them) and the call a tool message answers.
fn message_value(m: &Message) -> Value {
    let mut value = json!({ "role": m.role.as_str(), "content": m.content });
    if !m.tool_calls.is_empty() {
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                let arguments = serde_json::from_str::<Value>(&c.arguments)
                    .unwrap_or_else(|_| Value::String(c.arguments.clone()));
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": arguments },
                })
            })
            .collect();
        value["tool_calls"] = Value::Array(calls);
    }
    if let Some(id) = &m.tool_call_id {
        value["tool_call_id"] = json!(id);
    }
    value
}

/// Run a Hugging Face style chat template.
pub fn render_jinja(
    template: &str,
    messages: &[Message],
    tools: &[Tool],
    bos_token: &str,
    eos_token: &str,
) -> Result<String, Error> {
    let mut env = Environment::new();
    // Templates call Python string methods (`.strip()`, `.startswith()`) and raise_exception.
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        },
    );
    let messages: Vec<Value> = messages.iter().map(message_value).collect();
    let tools = if tools.is_empty() {
        minijinja::Value::UNDEFINED
    } else {
        minijinja::Value::from_serialize(tools.iter().map(|t| &t.definition).collect::<Vec<_>>())
    };
    env.render_str(
        template,
        context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => bos_token,
            eos_token => eos_token,
            tools => tools,
        },
    )
}

fn render_builtin(model: &GgufModel, messages: &[Message]) -> Result<String, EngineError> {
    let template = match model.chat_template() {
        Some(t) => LlamaChatTemplate::new(t),
        // Files without a template get ChatML, the most common instruct format.
        None => LlamaChatTemplate::new("chatml"),
    }
    .map_err(|e| EngineError::Template(e.to_string()))?;
    let chat = messages
        .iter()
        .map(|m| {
            LlamaChatMessage::new(m.role.as_str().to_string(), m.content.clone())
                .map_err(|e| EngineError::InvalidInput(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    model
        .model
        .apply_chat_template(&template, &chat, true)
        .map_err(|e| EngineError::Template(format!("{e} (architecture {})", model.architecture())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML_WITH_DEFAULT: &str = "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if message.role != 'system' %}{{- '<|im_start|>' + message.role + '\\n' + message.content.strip() + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

    #[test]
    fn renders_default_system_prompt_and_generation_prompt() {
        let out = render_jinja(CHATML_WITH_DEFAULT, &[Message::user("  hi  ")], &[], "", "")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out,
            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = render_jinja(
            CHATML_WITH_DEFAULT,
            &[Message::system("Be terse."), Message::user("x")],
            &[],
            "",
            "",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.starts_with("<|im_start|>system\nBe terse.<|im_end|>"));
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t =
            "{% if messages[0].role != 'user' %}{{ raise_exception('user first') }}{% endif %}ok";
        assert!(render_jinja(t, &[Message::assistant("x")], &[], "", "").is_err());
        assert_eq!(
            render_jinja(t, &[Message::user("x")], &[], "", "")
                .ok()
                .as_deref(),
            Some("ok")
        );
    }
}
