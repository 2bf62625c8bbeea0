//! The files a suite refers to with `file://`, read below the suite's own
//! folder and nowhere else.
//!
//! Invariant: a path from a suite is never opened through the process's
//! ambient file system. `FolderFiles` opens through a `cap_std::fs::Dir`
//! rooted at the suite's folder, so `..`, absolute paths and symlinks that
//! leave it fail; `UploadedFiles` holds the files that came with an API
//! request, so an imported suite cannot read the server's files at all.

use std::collections::BTreeMap;
use std::io::Read;

use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// The largest file a suite may read.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Files a glob may walk before giving up (a suite's folder is small).
const MAX_WALK: usize = 20_000;
/// Folder depth a glob walks.
const MAX_DEPTH: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("`{0}` does not exist")]
    NotFound(String),
    #[error("`{0}` is outside the suite's folder; suites read only files below their own folder")]
    Outside(String),
    #[error("`{path}` is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: String },
    #[error("`{path}` is not UTF-8 text")]
    NotText { path: String },
    #[error("`{path}` matches no file")]
    NoMatch { path: String },
    #[error("reading `{path}`: {reason}")]
    Io { path: String, reason: String },
    #[error("`{path}` is not a valid pattern: {reason}")]
    Pattern { path: String, reason: String },
}

/// Where a suite's `file://` references are read from.
pub trait SuiteFiles {
    /// The text of `path`, relative to the suite's folder.
    fn read(&self, path: &str) -> Result<String, FileError>;
    /// Every file below the suite's folder, as `/`-separated relative
    /// paths, sorted.
    fn list(&self) -> Result<Vec<String>, FileError>;

    /// The files `path` names: itself, or what a glob matches (sorted), or
    /// every file in a folder when it ends with `/`.
    fn expand(&self, path: &str) -> Result<Vec<String>, FileError> {
        let pattern = match path.strip_suffix('/') {
            Some(folder) => format!("{folder}/*"),
            None if path.contains(['*', '?', '[']) => path.to_string(),
            None => return Ok(vec![path.to_string()]),
        };
        let pattern = normalise(&pattern)?;
        let matcher = glob::Pattern::new(&pattern)
            .map_err(|e| FileError::Pattern { path: path.to_string(), reason: e.msg.to_string() })?;
        let options = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
        let found: Vec<String> = self.list()?.into_iter().filter(|f| matcher.matches_with(f, options)).collect();
        if found.is_empty() {
            return Err(FileError::NoMatch { path: path.to_string() });
        }
        Ok(found)
    }
}

/// `a/./b` as `a/b`; `..` and absolute paths are refused (they could only
/// leave the folder).
pub fn normalise(path: &str) -> Result<String, FileError> {
    if path.starts_with('/') || path.starts_with('\\') || path.contains(':') && cfg!(windows) {
        return Err(FileError::Outside(path.to_string()));
    }
    let mut parts = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err(FileError::Outside(path.to_string())),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// A suite's folder on disk, for `cardrun run`.
pub struct FolderFiles {
    dir: Dir,
}

impl FolderFiles {
    pub fn open(folder: &std::path::Path) -> Result<Self, FileError> {
        let folder = if folder.as_os_str().is_empty() { std::path::Path::new(".") } else { folder };
        let dir = Dir::open_ambient_dir(folder, ambient_authority())
            .map_err(|e| FileError::Io { path: folder.display().to_string(), reason: e.to_string() })?;
        Ok(Self { dir })
    }

    fn walk(&self, dir: &Dir, prefix: &str, depth: usize, out: &mut Vec<String>) -> Result<(), FileError> {
        let io = |e: std::io::Error| FileError::Io { path: prefix.to_string(), reason: e.to_string() };
        for entry in dir.entries().map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            let kind = entry.file_type().map_err(io)?;
            if kind.is_dir() && depth < MAX_DEPTH && !name.starts_with('.') && name != "node_modules" {
                let sub = entry.open_dir().map_err(io)?;
                self.walk(&sub, &path, depth + 1, out)?;
            } else if kind.is_file() {
                out.push(path);
            }
            if out.len() > MAX_WALK {
                return Err(FileError::Io {
                    path: prefix.to_string(),
                    reason: format!("more than {MAX_WALK} files below the suite's folder"),
                });
            }
        }
        Ok(())
    }
}

impl SuiteFiles for FolderFiles {
    fn read(&self, path: &str) -> Result<String, FileError> {
        let relative = normalise(path)?;
        let file = self.dir.open(&relative).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => FileError::NotFound(path.to_string()),
            // cap-std refuses symlinks and paths that leave the folder.
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::Other => FileError::Outside(path.to_string()),
            _ => FileError::Io { path: path.to_string(), reason: e.to_string() },
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| FileError::Io { path: path.to_string(), reason: e.to_string() })?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(FileError::TooLarge { path: path.to_string() });
        }
        String::from_utf8(bytes).map_err(|_| FileError::NotText { path: path.to_string() })
    }

    fn list(&self) -> Result<Vec<String>, FileError> {
        let mut out = Vec::new();
        self.walk(&self.dir, "", 0, &mut out)?;
        out.sort();
        Ok(out)
    }
}

/// Files that came with an API request, by relative path.
#[derive(Debug, Clone, Default)]
pub struct UploadedFiles {
    files: BTreeMap<String, String>,
}

impl UploadedFiles {
    /// Paths are normalised; one that leaves the folder is refused.
    pub fn new(files: impl IntoIterator<Item = (String, String)>) -> Result<Self, FileError> {
        let mut map = BTreeMap::new();
        for (path, text) in files {
            if text.len() as u64 > MAX_FILE_BYTES {
                return Err(FileError::TooLarge { path });
            }
            map.insert(normalise(&path)?, text);
        }
        Ok(Self { files: map })
    }
}

impl SuiteFiles for UploadedFiles {
    fn read(&self, path: &str) -> Result<String, FileError> {
        self.files.get(&normalise(path)?).cloned().ok_or_else(|| FileError::NotFound(path.to_string()))
    }

    fn list(&self) -> Result<Vec<String>, FileError> {
        Ok(self.files.keys().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("suite")).unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s3cret").unwrap();
        std::fs::write(dir.path().join("suite/a.txt"), "A").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), dir.path().join("suite/link.txt")).unwrap();
        let files = FolderFiles::open(&dir.path().join("suite")).unwrap();
        assert_eq!(files.read("./a.txt").unwrap(), "A");
        assert!(matches!(files.read("../secret.txt"), Err(FileError::Outside(_))));
        assert!(matches!(files.read("/etc/passwd"), Err(FileError::Outside(_))));
        assert!(files.read("link.txt").is_err(), "a symlink out of the folder is refused");
        assert!(matches!(files.read("b.txt"), Err(FileError::NotFound(_))));
        assert_eq!(files.expand("*.txt").unwrap(), vec!["a.txt"], "symlinks are not listed");
        assert!(matches!(files.expand("*.csv"), Err(FileError::NoMatch { .. })));
    }

    #[test]
    fn uploaded_files_are_all_there_is() {
        let files =
            UploadedFiles::new([("p/a.txt".to_string(), "A".to_string()), ("./p/b.txt".into(), "B".into())]).unwrap();
        assert_eq!(files.expand("p/").unwrap(), vec!["p/a.txt", "p/b.txt"]);
        assert_eq!(files.read("p/./b.txt").unwrap(), "B");
        assert!(matches!(files.read("/etc/passwd"), Err(FileError::Outside(_))));
        assert!(UploadedFiles::new([("../x".to_string(), String::new())]).is_err());
    }
}
