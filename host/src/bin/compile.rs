//! `wasm-cni-compile`: the install-time compiler. Turns each plugin module into its
//! precompiled artifact (`x.wasm` → `x.cwasm` beside it) with the same engine configuration
//! the runtime uses, so an exec never compiles.

use std::path::Path;
use std::process::ExitCode;

#[global_allocator]
static ALLOC: wasm_cni::Allocator = wasm_cni::Allocator::new();

fn main() -> ExitCode {
    let modules: Vec<String> = std::env::args().skip(1).collect();
    if modules.is_empty() || modules.iter().any(|m| m.starts_with('-')) {
        eprintln!("usage: wasm-cni-compile <module.wasm>...");
        return ExitCode::from(2);
    }
    let engine = match wasm_cni::sandbox::engine() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("wasm-cni-compile: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for module in &modules {
        match wasm_cni::sandbox::artifact::compile_file(&engine, Path::new(module)) {
            Ok(dest) => println!("{}", dest.display()),
            Err(e) => {
                eprintln!("wasm-cni-compile: {e:#}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
