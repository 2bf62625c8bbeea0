//! A suite's folder sent as one archive (tar, tar.gz or zip), for the
//! import API: its text files become the suite's uploaded files, and the
//! suite is the `suite.yaml` or `promptfooconfig.yaml` at its root (or in
//! the one folder the archive holds, as `tar czf s.tgz my-suite/` makes).
//!
//! Invariants: nothing is written to disk; an entry whose path leaves the
//! folder (`..`, absolute) refuses the whole archive; what is unpacked is
//! bounded in bytes and entries, however small the archive (a zip bomb
//! stops at the bound); links and folders are not files and are skipped,
//! and so are files that are not UTF-8 text (images beside a suite), which
//! the suite could not read anyway.

use std::collections::BTreeMap;
use std::io::Read;

use super::files::normalise;

/// Most bytes unpacked from one archive.
pub const MAX_UNPACKED_BYTES: u64 = 32 << 20;
/// Most entries one archive may hold.
pub const MAX_ENTRIES: usize = 4096;
/// The names a suite file goes by, in the order they are looked for.
pub const SUITE_NAMES: [&str; 4] = ["suite.yaml", "suite.yml", "promptfooconfig.yaml", "promptfooconfig.yml"];

/// How the archive is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    TarGz,
    Zip,
}

impl ArchiveKind {
    /// The kind a request's `Content-Type` names, if it names one.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/x-tar" | "application/tar" => Some(Self::Tar),
            "application/gzip" | "application/x-gzip" | "application/x-compressed-tar" | "application/x-tgz" => {
                Some(Self::TarGz)
            }
            "application/zip" | "application/x-zip-compressed" => Some(Self::Zip),
            _ => None,
        }
    }
}

/// Why an archive cannot be a suite.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArchiveError {
    #[error("the archive cannot be read: {0}")]
    Unreadable(String),
    #[error("the archive unpacks to more than {} MiB", MAX_UNPACKED_BYTES >> 20)]
    TooLarge,
    #[error("the archive holds more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("archive entry `{0}` is outside the suite's folder")]
    Outside(String),
    #[error(
        "the archive has no suite file: put one of {} at its root (or in its one folder); it holds {found}",
        SUITE_NAMES.join(", ")
    )]
    NoSuite { found: String },
}

/// An unpacked suite folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Unpacked {
    /// The suite file's text.
    pub yaml: String,
    /// Every text file, by its path relative to the suite's folder.
    pub files: BTreeMap<String, String>,
    /// Files left out because they are not UTF-8 text.
    pub skipped: Vec<String>,
}

/// Unpacks `bytes` as `kind`.
pub fn unpack(bytes: &[u8], kind: ArchiveKind) -> Result<Unpacked, ArchiveError> {
    let entries = match kind {
        ArchiveKind::Tar => tar_entries(bytes)?,
        ArchiveKind::TarGz => tar_entries(flate2::read::GzDecoder::new(bytes))?,
        ArchiveKind::Zip => zip_entries(bytes)?,
    };
    into_suite(entries)
}

/// Reads at most what is left of the budget from `reader`.
fn bounded(mut reader: impl Read, budget: &mut u64) -> Result<Vec<u8>, ArchiveError> {
    let mut bytes = Vec::new();
    reader.by_ref().take(*budget + 1).read_to_end(&mut bytes).map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
    *budget = budget.checked_sub(bytes.len() as u64).ok_or(ArchiveError::TooLarge)?;
    Ok(bytes)
}

fn tar_entries(reader: impl Read) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let unreadable = |e: std::io::Error| ArchiveError::Unreadable(e.to_string());
    let mut archive = tar::Archive::new(reader);
    let (mut out, mut budget, mut count) = (Vec::new(), MAX_UNPACKED_BYTES, 0usize);
    for entry in archive.entries().map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries);
        }
        let path = entry.path().map_err(unreadable)?.to_string_lossy().into_owned();
        let path = normalise(&path).map_err(|_| ArchiveError::Outside(path.clone()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let bytes = bounded(entry, &mut budget)?;
        out.push((path, bytes));
    }
    Ok(out)
}

fn zip_entries(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let unreadable = |e: zip::result::ZipError| ArchiveError::Unreadable(e.to_string());
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(unreadable)?;
    if archive.len() > MAX_ENTRIES {
        return Err(ArchiveError::TooManyEntries);
    }
    let (mut out, mut budget) = (Vec::new(), MAX_UNPACKED_BYTES);
    for i in 0..archive.len() {
        let file = archive.by_index(i).map_err(unreadable)?;
        let name = file.name().to_string();
        let path = normalise(&name).map_err(|_| ArchiveError::Outside(name.clone()))?;
        if !file.is_file() || file.is_symlink() {
            continue;
        }
        let bytes = bounded(file, &mut budget)?;
        out.push((path, bytes));
    }
    Ok(out)
}

/// The suite file and the text files, relative to the folder holding the
/// suite file: the root, or the archive's one top folder.
fn into_suite(entries: Vec<(String, Vec<u8>)>) -> Result<Unpacked, ArchiveError> {
    let has = |prefix: &str| SUITE_NAMES.iter().find(|n| entries.iter().any(|(p, _)| *p == format!("{prefix}{n}")));
    let tops: std::collections::BTreeSet<&str> =
        entries.iter().filter_map(|(p, _)| p.split_once('/').map(|(top, _)| top)).collect();
    let (base, name) = match has("") {
        Some(name) => (String::new(), *name),
        None => match (tops.len(), tops.first()) {
            (1, Some(top)) => {
                let base = format!("{top}/");
                match has(&base) {
                    Some(name) => (base, *name),
                    None => return Err(no_suite(&entries)),
                }
            }
            _ => return Err(no_suite(&entries)),
        },
    };
    let mut unpacked = Unpacked { yaml: String::new(), files: BTreeMap::new(), skipped: Vec::new() };
    for (path, bytes) in entries {
        let Some(relative) = path.strip_prefix(&base) else { continue };
        match String::from_utf8(bytes) {
            Ok(text) if relative == name => unpacked.yaml = text,
            Ok(text) => {
                unpacked.files.insert(relative.to_string(), text);
            }
            Err(_) => unpacked.skipped.push(relative.to_string()),
        }
    }
    Ok(unpacked)
}

fn no_suite(entries: &[(String, Vec<u8>)]) -> ArchiveError {
    let mut names: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).take(10).collect();
    if entries.len() > names.len() {
        names.push("...");
    }
    ArchiveError::NoSuite { found: if names.is_empty() { "nothing".into() } else { names.join(", ") } }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            // `set_path` refuses `..`; an attacker's tool would not.
            let name = header.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (path, bytes) in files {
            writer.start_file(*path, zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut writer, bytes).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn a_folder_unpacks_from_its_root_or_its_one_top_folder() {
        let files: &[(&str, &[u8])] = &[
            ("s/suite.yaml", b"prompts: [file://p.txt]"),
            ("s/p.txt", b"Hi {{x}}"),
            ("s/logo.png", &[0xff, 0xd8, 0xff]),
        ];
        let unpacked = unpack(&tar_of(files), ArchiveKind::Tar).unwrap();
        assert_eq!(unpacked.yaml, "prompts: [file://p.txt]");
        assert_eq!(unpacked.files.keys().collect::<Vec<_>>(), ["p.txt"]);
        assert_eq!(unpacked.skipped, ["logo.png"]);
        let zipped =
            unpack(&zip_of(&[("promptfooconfig.yaml", b"x: 1"), ("t/a.csv", b"q\n1")]), ArchiveKind::Zip).unwrap();
        assert_eq!((zipped.yaml.as_str(), zipped.files.len()), ("x: 1", 1));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar_of(&[("suite.yml", b"y: 2")])).unwrap();
        assert_eq!(unpack(&gz.finish().unwrap(), ArchiveKind::TarGz).unwrap().yaml, "y: 2");
    }

    #[test]
    fn escapes_bombs_and_missing_suites_are_refused() {
        let evil = tar_of(&[("suite.yaml", b"x"), ("../etc/cron", b"boom")]);
        assert_eq!(unpack(&evil, ArchiveKind::Tar), Err(ArchiveError::Outside("../etc/cron".into())));
        let evil = zip_of(&[("suite.yaml", b"x"), ("/abs", b"boom")]);
        assert!(matches!(unpack(&evil, ArchiveKind::Zip), Err(ArchiveError::Outside(_))));
        let big = vec![b'a'; (MAX_UNPACKED_BYTES + 1) as usize];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &tar_of(&[("suite.yaml", b"x"), ("big.txt", &big)])).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 200 << 10, "a small archive: {} bytes", bomb.len());
        assert_eq!(unpack(&bomb, ArchiveKind::TarGz), Err(ArchiveError::TooLarge));
        let err = unpack(&tar_of(&[("a/suite.yaml", b"x"), ("b/p.txt", b"y")]), ArchiveKind::Tar).unwrap_err();
        assert!(err.to_string().contains("a/suite.yaml, b/p.txt"), "{err}");
        assert!(matches!(unpack(b"not an archive", ArchiveKind::Zip), Err(ArchiveError::Unreadable(_))));
        assert_eq!(ArchiveKind::from_content_type("application/gzip; charset=binary"), Some(ArchiveKind::TarGz));
        assert_eq!(ArchiveKind::from_content_type("text/yaml"), None);
    }
}
