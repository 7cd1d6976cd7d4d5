//! `wasm-cni`: exec'd by container runtimes through a link named after a plugin type
//! (`/opt/cni/bin/loopback` → `loopback.wasm` beside the link), or directly:
//!
//! ```text
//! wasm-cni run <module.wasm>     run a module as a CNI plugin (CNI env + stdin)
//! wasm-cni inspect <plugin>      world, capabilities, digest, artifact and policy of a plugin
//! wasm-cni validate <conflist>   check a network config list against what is installed
//! wasm-cni version               print the host's version
//! ```

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use wasm_cni::plugin::{self, Plugin};

#[global_allocator]
static ALLOC: wasm_cni::Allocator = wasm_cni::Allocator::new();

const USAGE: &str = "usage: wasm-cni run <module.wasm>   (CNI_* env and the config on stdin)
       wasm-cni inspect <plugin | module.wasm>
       wasm-cni validate <conflist>
       wasm-cni version
or exec it through a link named after a plugin type, with <type>.wasm beside the link.";

fn main() -> ExitCode {
    wasm_cni::log::trace::start();
    // Even a bug in the host ends as a CNI error on stdout, never as a bare crash.
    std::panic::set_hook(Box::new(|info| {
        let err = cni_types::CniError::new(
            cni_types::codes::INTERNAL,
            format!("wasm-cni internal error: {info}"),
            "",
        );
        println!("{}", err.to_json(cni_types::CURRENT_VERSION));
        eprintln!("wasm-cni: {info}");
        std::process::exit(1);
    }));
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().map(String::as_str).unwrap_or("wasm-cni");
    let invoked_as = Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("wasm-cni");
    let plugin = if invoked_as == "wasm-cni" {
        match args.get(1).map(String::as_str) {
            Some("run") if args.len() == 3 => Plugin::from_module(Path::new(&args[2])),
            Some("inspect") if args.len() == 3 => {
                return report(wasm_cni::cli::inspect(&args[2]).map(|v| (true, v)));
            }
            Some("validate") if args.len() == 3 => {
                let checked = wasm_cni::cli::validate(Path::new(&args[2]));
                return report(checked.map(|(ok, findings)| (ok, serde_json::json!(findings))));
            }
            Some("version") | Some("--version") => {
                println!("wasm-cni {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    } else {
        Plugin::from_argv0(argv0, std::env::var("CNI_PATH").ok().as_deref())
    };
    wasm_cni::sandbox::set_one_shot();
    let out = plugin::exec(&plugin, |k| std::env::var(k).ok(), std::io::stdin());
    let mut stdout = std::io::stdout().lock();
    if !out.stdout.is_empty() {
        let _ = writeln!(stdout, "{}", out.stdout);
    }
    let _ = stdout.flush();
    ExitCode::from(out.status as u8)
}

/// Print a tool's answer as JSON; exit 1 when it found a problem.
fn report(answer: Result<(bool, serde_json::Value), String>) -> ExitCode {
    match answer {
        Ok((ok, value)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("wasm-cni: {e}");
            ExitCode::FAILURE
        }
    }
}
