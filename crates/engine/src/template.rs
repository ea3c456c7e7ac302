//! Renders a conversation into the prompt text the model was trained on, with the Jinja chat
//! template stored in the GGUF (`tokenizer.chat_template`), exactly as the model's authors wrote
//! it (default system prompts included). Templates the Jinja engine cannot run fall back to
//! llama.cpp's built-in renderer for the same template.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate};
use minijinja::{context, Environment, Error, ErrorKind};
use tandem_core::Message;

use crate::sampler::TokenId;
use crate::{EngineError, GgufModel};

/// Render `messages` and open the assistant's turn.
pub fn render(model: &GgufModel, messages: &[Message]) -> Result<String, EngineError> {
    if messages.iter().any(|m| m.content.contains('\0')) {
        return Err(EngineError::InvalidInput(
            "message content must not contain NUL characters".into(),
        ));
    }
    if let Some(template) = model.chat_template() {
        match render_jinja(template, messages, model.bos_text(), model.eos_text()) {
            Ok(prompt) => return Ok(prompt),
            Err(e) => {
                tracing::debug!("Jinja chat template failed ({e}); using llama.cpp's renderer")
            }
        }
    }
    render_builtin(model, messages)
}

/// The prompt tokens `messages` render to, the assistant's turn open.
pub fn prompt_tokens(model: &GgufModel, messages: &[Message]) -> Result<Vec<TokenId>, EngineError> {
    let prompt = render(model, messages)?;
    // The rendered template contains control tokens as text (e.g. <|im_start|>). Templates that
    // write the BOS token themselves must not get a second one.
    let bos = model.bos_text();
    let add_bos = model.adds_bos() && (bos.is_empty() || !prompt.starts_with(bos));
    Ok(model.tokenize(&prompt, add_bos, true))
}

/// Run a Hugging Face style chat template.
pub fn render_jinja(
    template: &str,
    messages: &[Message],
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
    let messages: Vec<_> = messages
        .iter()
        .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
        .collect();
    env.render_str(
        template,
        context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => bos_token,
            eos_token => eos_token,
            tools => minijinja::Value::UNDEFINED,
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
        let out = render_jinja(CHATML_WITH_DEFAULT, &[Message::user("  hi  ")], "", "")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out,
            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = render_jinja(
            CHATML_WITH_DEFAULT,
            &[Message::system("Be terse."), Message::user("x")],
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
        assert!(render_jinja(t, &[Message::assistant("x")], "", "").is_err());
        assert_eq!(
            render_jinja(t, &[Message::user("x")], "", "")
                .ok()
                .as_deref(),
            Some("ok")
        );
    }
}
