//! `cardrun plugin check FILE.wasm`: would this component load, and does
//! it work? Every problem is named with its fix, then describe() and one
//! sample evaluation run under the sandbox limits.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use cardrun::sandbox::imports::WorldKind;
use cardrun::sandbox::{Subject, inspect::Inspection};

use super::{SampleArgs, megabytes, read, sandbox, spinner};

pub async fn check(file: &Path, sample: &SampleArgs) -> anyhow::Result<ExitCode> {
    let bytes = read(file)?;
    let value = sample.value()?;
    let sandbox = sandbox().await?;
    println!(
        "{}: {} (sha256 {})",
        file.display(),
        megabytes(bytes.len()),
        cardrun::sandbox::inspect::short_hash(&bytes)
    );

    let bar =
        spinner(format!("compiling {} (once per version; a language runtime takes seconds)", megabytes(bytes.len())));
    let inspected = sandbox.inspect(&bytes).await;
    bar.finish_and_clear();
    let inspection = match inspected {
        Ok(inspection) => inspection,
        Err(e) => {
            println!("refused: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    report_structure(&inspection);
    let Some(world) = inspection.world else {
        println!(
            "refused: the exports ({}) match no cardrun world: an assertion exports `describe` and `evaluate`, a model adapter `complete` and `warm` (see wit/cardrun.wit)",
            inspection.exports.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    };
    let world_name = match world {
        WorldKind::Assertion if inspection.checks_parameters => "checked-assertion",
        other => other.name(),
    };
    println!("world: {world_name}");
    if !inspection.missing_imports.is_empty() {
        // The loader's own message: every import, with the fix we know.
        let e = cardrun::sandbox::imports::check_names(&inspection.missing_imports, world);
        println!("refused: {e}");
        return Ok(ExitCode::FAILURE);
    }
    println!("imports: all {} provided ({})", inspection.imports.len(), packages(&inspection.imports));
    if world == WorldKind::ModelAdapter {
        println!(
            "a model adapter calls a model server: upload it with a manifest (POST /api/plugins) or pass it to `cardrun run --adapter-plugin MANIFEST` to try it"
        );
        return Ok(ExitCode::SUCCESS);
    }

    let plugin = match sandbox.trial_assertion_plugin(&bytes).await {
        Ok(plugin) => plugin,
        Err(e) => {
            println!("refused: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let info = plugin.info();
    println!("describe(): {} {}, types: {}", info.name, info.version, info.assertion_types.join(", "));
    if info.asks_grader {
        println!(
            "  imports the grader: it asks a model (the host picks it: the assertion's provider, --grader, DEFAULT_GRADER)"
        );
    }
    if !info.description.is_empty() {
        println!("  {}", info.description);
    }
    let kind = match &sample.assertion_type {
        Some(kind) if !info.assertion_types.contains(kind) => {
            anyhow::bail!("--type {kind}: the plugin provides {}", info.assertion_types.join(", "))
        }
        Some(kind) => kind.clone(),
        None => info.assertion_types.first().cloned().unwrap_or_default(),
    };
    let limits = sample.limits(&sandbox);
    let subject = Subject { output: sample.output.clone(), ..Default::default() };
    let started = Instant::now();
    let judged = plugin.evaluate(&kind, &value, None, None, &subject, &limits, None).await;
    let took = started.elapsed();
    println!(
        "sample: type {kind}, value {value}, output {:?}; limits: {} MiB, {} ms, {} fuel",
        sample.output,
        limits.memory_bytes >> 20,
        limits.deadline.as_millis(),
        limits.fuel.unwrap_or(0)
    );
    match judged {
        Ok(j) => {
            println!("verdict: {} (score {:.3}): {}", if j.pass { "pass" } else { "fail" }, j.score, j.reason);
            println!(
                "cost: {:.2} ms, {} fuel (~{:.2} ms CPU), {} peak memory",
                took.as_secs_f64() * 1e3,
                j.fuel_used,
                j.fuel_used as f64 / limits.fuel_per_ms.max(1) as f64,
                megabytes(j.memory_bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
        // A plugin's own objection to the sample's parameters is an
        // answer, not a broken plugin: say how to give it real ones.
        Err(cardrun::sandbox::SandboxError::Plugin(message)) => {
            println!(
                "error from the plugin: {message}\n(pass a real --value for the sample; the plugin itself loads and runs)"
            );
            Ok(ExitCode::SUCCESS)
        }
        // A graded plugin asks a model, which a check has none of.
        Err(cardrun::sandbox::SandboxError::Grader(message)) if info.asks_grader => {
            println!(
                "grader: {message}\n(the plugin imports the host's grader and asked it; the sample has no grader model, so run it in a suite with `--grader adapter:model`)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("sample failed: {e} [{}]", e.code());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `wasi:io/poll@0.2.9, wasi:io/streams@0.2.9, ...` as `wasi:io, ...`.
fn packages(imports: &[String]) -> String {
    let mut packages: Vec<&str> = imports.iter().map(|i| i.split(['/', '@']).next().unwrap_or(i)).collect();
    packages.dedup();
    packages.join(", ")
}

fn report_structure(i: &Inspection) {
    let load = if i.was_cached { "loaded from the compiled cache" } else { "compiled" };
    println!(
        "structure: {} core modules and components, {} functions (largest {} bytes, at most {} locals); {load} in {:.2} s",
        i.stats.modules,
        i.stats.functions,
        i.stats.largest_body,
        i.stats.most_locals,
        i.load_time.as_secs_f64()
    );
}
