//! `wasm-cni`: exec'd by container runtimes through a link named after a plugin type
//! (`/opt/cni/bin/loopback` → `loopback.wasm` beside the link), or directly:
//!
//! ```text
//! wasm-cni run <module.wasm>     run a module as a CNI plugin (CNI env + stdin)
//! wasm-cni version               print the host's version
//! ```

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use wasm_cni::plugin::{self, Plugin};

const USAGE: &str = "usage: wasm-cni run <module.wasm>   (CNI_* env and the config on stdin)
       wasm-cni version
or exec it through a link named after a plugin type, with <type>.wasm beside the link.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().map(String::as_str).unwrap_or("wasm-cni");
    let invoked_as = Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("wasm-cni");
    let plugin = if invoked_as == "wasm-cni" {
        match args.get(1).map(String::as_str) {
            Some("run") if args.len() == 3 => Plugin::from_module(Path::new(&args[2])),
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
    let out = plugin::exec(
        &plugin,
        |k| std::env::var(k).ok(),
        &mut std::io::stdin().lock(),
    );
    let mut stdout = std::io::stdout().lock();
    if !out.stdout.is_empty() {
        let _ = writeln!(stdout, "{}", out.stdout);
    }
    let _ = stdout.flush();
    ExitCode::from(out.status as u8)
}
