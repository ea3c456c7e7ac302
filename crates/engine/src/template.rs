//! Renders a conversation into the prompt text the model was trained on, with the chat template
//! stored in the GGUF (`tokenizer.chat_template`), through llama.cpp's template engine.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate};
use tandem_core::Message;

use crate::{EngineError, GgufModel};

/// Render `messages` and open the assistant's turn.
pub fn render(model: &GgufModel, messages: &[Message]) -> Result<String, EngineError> {
    let template = match model.chat_template() {
        Some(t) => LlamaChatTemplate::new(t),
        // Files without a template get ChatML, the most common instruct format.
        None => LlamaChatTemplate::new("chatml"),
    }
    .map_err(|e| EngineError::Template(e.to_string()))?;
    let chat = messages
        .iter()
        .map(|m| {
            LlamaChatMessage::new(m.role.as_str().to_string(), m.content.clone()).map_err(|_| {
                EngineError::InvalidInput("message content must not contain NUL characters".into())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    model
        .model
        .apply_chat_template(&template, &chat, true)
        .map_err(|e| EngineError::Template(format!("{e} (architecture {})", model.architecture())))
}
