//! `cardrun plugin new --lang rust|python|js NAME`: a working assertion
//! plugin to start from. The three languages implement the same evaluator
//! (the output mentions every given word), so they can be compared, and
//! each folder carries a copy of the WIT, so it builds outside this
//! repository.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::Lang;

const WIT: &str = include_str!("../../../../wit/cardrun.wit");

/// (path in the new folder, template) per language.
fn files(lang: Lang) -> Vec<(&'static str, &'static str)> {
    match lang {
        Lang::Rust => vec![
            ("Cargo.toml", include_str!("templates/rust/Cargo.toml.in")),
            ("src/lib.rs", include_str!("templates/rust/lib.rs")),
            ("build.sh", include_str!("templates/rust/build.sh")),
        ],
        Lang::Python => vec![
            ("app.py", include_str!("templates/python/app.py")),
            ("requirements.txt", include_str!("templates/python/requirements.txt")),
            ("build.sh", include_str!("templates/python/build.sh")),
        ],
        Lang::Js => vec![
            ("app.js", include_str!("templates/js/app.js")),
            ("package.json", include_str!("templates/js/package.json")),
        ],
    }
}

/// The build command a README and the summary name.
fn build_command(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust | Lang::Python => "./build.sh",
        Lang::Js => "npm install && npm run build",
    }
}

fn toolchain(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust with `rustup target add wasm32-wasip2`",
        Lang::Python => "Python 3.11+; build.sh installs the pinned componentize-py 0.25.1 in a venv",
        Lang::Js => "Node.js 20+; npm installs the pinned componentize-js 0.23.0",
    }
}

fn readme(name: &str, lang: Lang) -> String {
    format!(
        "# {name}\n\n\
         A cardrun assertion plugin (`checked-assertion` world of `wit/cardrun.wit`).\n\
         The output must mention every word of `value`, ignoring case:\n\n\
         ```yaml\nassert:\n  - type: {name}\n    value: [refund, \"30 days\"]\n    threshold: 0.5   # optional: the share of words needed\n```\n\n\
         Needs {toolchain}.\n\n\
         ```sh\n{build}                  # builds {name}.wasm\n\
         cardrun plugin check {name}.wasm --value '[\"fox\"]'\n\
         cardrun run suite.yaml --plugin {name}.wasm\n```\n\n\
         See cardrun's docs/plugins.md for the worlds, the limits and how to upload a plugin.\n",
        toolchain = toolchain(lang),
        build = build_command(lang),
    )
}

pub fn scaffold(name: &str, lang: Lang, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let well_formed = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.starts_with("not-");
    if !well_formed {
        bail!(
            "a plugin name is 1-64 characters of a-z, 0-9 and -, not starting with - or not- (it is also the assertion type)"
        );
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} exists and is not empty", dir.display());
    }
    let crate_name = name.replace('-', "_");
    let fill = |template: &str| template.replace("{{name}}", name).replace("{{crate}}", &crate_name);
    let mut written = vec![];
    for (path, template) in files(lang) {
        write(&dir, path, &fill(template))?;
        written.push(path);
    }
    write(&dir, "wit/cardrun.wit", WIT)?;
    write(&dir, "README.md", &readme(name, lang))?;
    write(&dir, "suite.yaml", &suite(name))?;
    write(&dir, ".gitignore", "*.wasm\ntarget/\nnode_modules/\n__pycache__/\n")?;
    for script in written.iter().filter(|p| p.ends_with(".sh")) {
        make_executable(&dir.join(script))?;
    }
    println!("created {} ({} plugin `{name}`)", dir.display(), lang_name(lang));
    println!("next: cd {} && {}", dir.display(), build_command(lang));
    println!("then: cardrun plugin check {name}.wasm --value '[\"fox\"]'");
    Ok(ExitCode::SUCCESS)
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    }
}

/// A suite that uses the new type on the offline `echo` adapter.
fn suite(name: &str) -> String {
    format!(
        "# cardrun run suite.yaml --plugin {name}.wasm\n\
         description: {name} on the offline echo adapter\n\
         prompts: [\"{{{{answer}}}}\"]\n\
         providers: [echo:identity]\n\
         tests:\n\
         \x20 - description: every word is there\n\
         \x20   vars: {{ answer: \"Refunds take 30 days.\" }}\n\
         \x20   assert:\n\
         \x20     - type: {name}\n\
         \x20       value: [refund, \"30 days\"]\n\
         \x20 - description: a missing word fails\n\
         \x20   vars: {{ answer: \"No refunds.\" }}\n\
         \x20   assert:\n\
         \x20     - type: not-{name}\n\
         \x20       value: [refund, \"30 days\"]\n"
    )
}

fn write(dir: &Path, path: &str, contents: &str) -> anyhow::Result<()> {
    let path = dir.join(path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))
}

fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}
