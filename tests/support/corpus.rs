//! The `tests/suites/` corpus: each folder holds `suite.yaml`, the files it
//! refers to, and `expected.yaml` (result counts, verdicts per pair and
//! prompt labels, or the problems of an invalid suite). Shared by the CLI
//! runner (host/tests/binary) and the import-API runner (tests/integration).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A suite's `expected.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    #[serde(default)]
    pub pairs: usize,
    #[serde(default)]
    pub passed: usize,
    #[serde(default)]
    pub failed: usize,
    /// Tests whose status is `error` (a transform that throws, say).
    #[serde(default)]
    pub errors: usize,
    /// Test name to its status in each pair, in the suite's pair order.
    #[serde(default)]
    pub verdicts: BTreeMap<String, Vec<String>>,
    /// The prompts' labels, in order.
    #[serde(default)]
    pub labels: Vec<String>,
    /// For an invalid suite: text every report must hold.
    #[serde(default)]
    pub invalid: Vec<String>,
}

pub struct CorpusSuite {
    pub name: String,
    pub dir: PathBuf,
    pub expected: Expected,
}

impl CorpusSuite {
    /// Every file of the suite's folder except the suite and its
    /// expectations, by relative path (what an API import uploads).
    pub fn files(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        collect(&self.dir, &self.dir, &mut out);
        out.remove("suite.yaml");
        out.remove("expected.yaml");
        out
    }
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.insert(relative, std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// The corpus under `repo`, in folder order.
pub fn corpus(repo: &Path) -> Vec<CorpusSuite> {
    let root = repo.join("tests").join("suites");
    let mut dirs: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let text = std::fs::read_to_string(dir.join("expected.yaml")).unwrap();
            let expected = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            CorpusSuite { name: dir.file_name().unwrap().to_string_lossy().into_owned(), dir, expected }
        })
        .collect()
}
