//! A deliberately hostile assertion plugin for the sandbox tests.
//!
//! The assertion `value` picks the misbehaviour; `ok` behaves well, so a
//! test can show that the next use of the same plugin still works.

use std::hint::black_box;
use std::io::Write;

use cardrun_plugin_sdk::{Evaluator, Input, Verdict, export_evaluator};

struct Hostile;

impl Evaluator for Hostile {
    const NAME: &'static str = "hostile";
    const TYPES: &'static [&'static str] = &["hostile"];

    fn evaluate(input: &Input) -> Result<Verdict, String> {
        match input.value().as_str().unwrap_or("ok") {
            "ok" => Ok(Verdict::pass("behaved")),
            "loop" => loop {
                black_box(input.output().len());
            },
            "alloc" => {
                // LLVM would delete an unused allocation: black_box keeps it.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(black_box(vec![1u8; 1 << 20]));
                    black_box(&hoard);
                }
            }
            // Small frames: exhausts the wasm call stack (a stack-overflow trap).
            "recurse" => Ok(Verdict::pass(format!("{}", recurse(black_box(0))))),
            // Big frames live on the guest's shadow stack in linear memory;
            // exhausting it is an out-of-bounds access.
            "recurse-shadow" => Ok(Verdict::pass(format!("{}", recurse_shadow(black_box(0))))),
            "panic" => panic!("hostile plugin panicked on purpose"),
            "big-output" => Ok(Verdict::pass("x".repeat(8 << 20))),
            // The error path is capped like the verdict.
            "big-error" => Err("e".repeat(8 << 20)),
            "nan-score" => Ok(Verdict { score: f64::NAN, ..Verdict::pass("not a number") }),
            "score-above-one" => Ok(Verdict { score: 2.0, ..Verdict::pass("twice as good") }),
            "pass-at-zero" => Ok(Verdict { score: 0.0, ..Verdict::pass("passed with nothing") }),
            "fail-at-one" => Ok(Verdict { score: 1.0, ..Verdict::fail("failed with everything") }),
            "pass-at-half" => Ok(Verdict { score: 0.5, ..Verdict::pass("passed at half") }),
            "stderr" => {
                let line = "noise ".repeat(1000);
                for _ in 0..2000 {
                    eprintln!("{line}");
                }
                Ok(Verdict::pass("printed megabytes on stderr"))
            }
            "stdout" => {
                let chunk = vec![b'y'; 1 << 16];
                let mut out = std::io::stdout();
                for _ in 0..64 {
                    let _ = out.write_all(&chunk);
                }
                Ok(Verdict::pass("printed megabytes on stdout"))
            }
            "read-file" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => Ok(Verdict::pass(format!("read {} bytes of /etc/passwd", text.len()))),
                Err(e) => Err(format!("file read refused: {e}")),
            },
            "list-root" => match std::fs::read_dir("/") {
                Ok(entries) => Ok(Verdict::pass(format!("listed {} entries", entries.count()))),
                Err(e) => Err(format!("read_dir refused: {e}")),
            },
            "read-env" => match std::env::var("HOME") {
                Ok(home) => Ok(Verdict::pass(format!("HOME={home}"))),
                Err(e) => Err(format!("env read refused: {e} ({} vars visible)", std::env::vars().count())),
            },
            "socket" => match std::net::TcpStream::connect("127.0.0.1:6379") {
                Ok(_) => Ok(Verdict::pass("connected a socket")),
                Err(e) => Err(format!("socket refused: {e}")),
            },
            other => Err(format!("unknown misbehaviour `{other}`")),
        }
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    black_box(recurse(black_box(depth + 1))) ^ depth
}

#[allow(unconditional_recursion)]
fn recurse_shadow(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    recurse_shadow(black_box(depth + 1)) + frame[3]
}

export_evaluator!(Hostile);
