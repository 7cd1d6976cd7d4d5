//! `cargo xtask new-plugin NAME [--dir DIR]`: a new plugin crate from a small template (a
//! cdylib on the SDK, a minimal `Plugin`, its capability declaration and a fake-host unit
//! test). Inside this workspace it goes to `guests/NAME/` and is added to the workspace's
//! members; with `--dir` outside the workspace it is a standalone crate.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// `args` are the words after `new-plugin`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut name = None;
    let mut dir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(it.next().context("--dir needs a DIR")?)),
            s if s.starts_with('-') => bail!("unknown option {s}"),
            s if name.is_none() => name = Some(s.to_string()),
            s => bail!("unexpected argument {s}"),
        }
    }
    let name = name.context("usage: cargo xtask new-plugin NAME [--dir DIR]")?;
    let dir = dir.unwrap_or_else(|| root.join("guests").join(&name));
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir()?.join(dir)
    };
    generate(root, &name, &dir)?;
    eprintln!("created plugin {name} in {}", dir.display());
    eprintln!(
        "  test:  cargo test --manifest-path {}/Cargo.toml",
        dir.display()
    );
    eprintln!("  build: cargo build --release --target wasm32-wasip2 (in that directory)");
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "invalid plugin name {name:?}: use lower-case letters, digits and '-' (e.g. my-plugin)"
        );
    }
    Ok(())
}

/// `my-plugin` → `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Write the crate into `dir` (which must not exist). A `dir` inside the workspace at `root`
/// becomes a member of it; one outside gets its own `[workspace]` and a path to the SDK.
pub fn generate(root: &Path, name: &str, dir: &Path) -> Result<()> {
    check_name(name)?;
    if dir.exists() {
        bail!("{} exists already: refusing to overwrite it", dir.display());
    }
    let in_workspace = dir.starts_with(root);
    let cargo_toml = if in_workspace {
        format!(
            r#"[package]
name = "{name}"
version.workspace = true
edition.workspace = true
license.workspace = true
publish = false

[dependencies]
wasm-cni-sdk.workspace = true

# A wasm32-wasip2 component: `cargo build --release --target wasm32-wasip2`.
[lib]
crate-type = ["cdylib"]
"#
        )
    } else {
        format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
wasm-cni-sdk = {{ path = "{sdk}" }}

# A wasm32-wasip2 component: `cargo build --release --target wasm32-wasip2`.
[lib]
crate-type = ["cdylib"]

# A workspace of its own (not a member of wasm-cni's).
[workspace]
"#,
            sdk = root.join("guest-sdk").display()
        )
    };
    let ty = type_name(name);
    let lib_rs = LIB_TEMPLATE
        .replace("{{name}}", name)
        .replace("{{Type}}", &ty);
    fs::create_dir_all(dir.join("src")).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(dir.join("Cargo.toml"), cargo_toml)?;
    fs::write(dir.join("src/lib.rs"), lib_rs)?;
    if in_workspace {
        add_member(root, dir)?;
    }
    Ok(())
}

/// Add `dir` to the workspace's `members` (right after `members = [`), unless it is there.
fn add_member(root: &Path, dir: &Path) -> Result<()> {
    let manifest = root.join("Cargo.toml");
    let text = fs::read_to_string(&manifest)?;
    let rel = dir
        .strip_prefix(root)
        .expect("inside the workspace")
        .to_string_lossy()
        .replace('\\', "/");
    let entry = format!("\"{rel}\"");
    if text.contains(&entry) {
        return Ok(());
    }
    let Some(at) = text.find("members = [\n") else {
        bail!(
            "could not find `members = [` in {}: add {entry} to the workspace members yourself",
            manifest.display()
        );
    };
    let at = at + "members = [\n".len();
    let updated = format!("{}    {entry},\n{}", &text[..at], &text[at..]);
    fs::write(&manifest, updated)?;
    Ok(())
}

const LIB_TEMPLATE: &str = r##"//! {{name}}: a wasm-cni plugin (see docs/sdk.md of wasm-cni).

use wasm_cni_sdk::{CniError, CniResult, Context, Interface, Netns, Plugin};

pub struct {{Type}};

impl Plugin for {{Type}} {
    fn add(ctx: &Context, netns: &Netns) -> Result<CniResult, CniError> {
        // A chained plugin passes the previous result on; a main plugin builds its own.
        if let Some(prev) = ctx.prev_result() {
            return Ok(prev.clone());
        }
        let lo = netns.require_link("lo")?;
        lo.set_up()?;
        Ok(CniResult {
            interfaces: vec![Interface {
                name: "lo".into(),
                sandbox: ctx.netns_path.clone(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    fn del(_ctx: &Context, _netns: Option<&Netns>) -> Result<(), CniError> {
        // Undo what ADD did; succeed when there is nothing left (or no netns).
        Ok(())
    }

    fn check(_ctx: &Context, netns: &Netns) -> Result<(), CniError> {
        if !netns.require_link("lo")?.info()?.up {
            return Err(CniError::new(wasm_cni_sdk::codes::INTERNAL, "lo is down", ""));
        }
        Ok(())
    }
}

// Capabilities: what the plugin needs beyond the container netns, read by the host at install
// time and checked against the node policy (docs/policy.md). None here; for example
//     wasm_cni_sdk::export_plugin!({{Type}}, capabilities = ["host-netns", "ipam"]);
// ("host-netns", "ipam", "ip-store", "firewall").
wasm_cni_sdk::export_plugin!({{Type}});

#[cfg(test)]
mod tests {
    use super::{{Type}};
    use wasm_cni_sdk::fake::FakeHost;
    use wasm_cni_sdk::{Context, Plugin};

    #[test]
    fn add_brings_lo_up_and_check_passes() {
        let fake = FakeHost::new();
        let netns = fake.add_netns("c1");
        let ctx = Context::new(
            "c1",
            "eth0",
            "/var/run/netns/c1",
            r#"{"cniVersion":"1.1.0","name":"net","type":"{{name}}"}"#,
        );
        let result = <{{Type}} as Plugin>::add(&ctx, &netns).unwrap();
        assert_eq!(result.interfaces[0].name, "lo");
        assert!(fake.link(&netns, "lo").unwrap().up);
        <{{Type}} as Plugin>::check(&ctx, &netns).unwrap();
        <{{Type}} as Plugin>::del(&ctx, Some(&netns)).unwrap();
    }
}
"##;

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);

    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let dir =
                std::env::temp_dir().join(format!("xtask-new-plugin-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Tmp(dir)
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn generates_a_standalone_crate_outside_the_workspace_and_refuses_to_overwrite() {
        let tmp = Tmp::new("out");
        let root = Path::new("/work/wasm-cni-root");
        let dir = tmp.0.join("my-plugin");
        generate(root, "my-plugin", &dir).unwrap();
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-plugin\""), "{manifest}");
        assert!(manifest.contains("crate-type = [\"cdylib\"]"));
        assert!(manifest.contains("path = \"/work/wasm-cni-root/guest-sdk\""));
        assert!(manifest.contains("[workspace]"));
        let lib = fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("impl Plugin for MyPlugin"));
        assert!(lib.contains("wasm_cni_sdk::export_plugin!(MyPlugin);"));
        assert!(lib.contains("capabilities = ["));
        assert!(lib.contains("use wasm_cni_sdk::fake::FakeHost;"));
        assert!(lib.contains(r#""type":"my-plugin""#));
        assert!(!lib.contains("{{"), "every placeholder filled");
        let again = generate(root, "my-plugin", &dir).unwrap_err();
        assert!(
            again.to_string().contains("refusing to overwrite"),
            "{again}"
        );
    }

    #[test]
    fn inside_the_workspace_it_becomes_a_member() {
        let tmp = Tmp::new("ws");
        let root = &tmp.0;
        fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nmembers = [\n    \"guests/loopback\",\n]\n",
        )
        .unwrap();
        let dir = root.join("guests/tuner");
        generate(root, "tuner", &dir).unwrap();
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("wasm-cni-sdk.workspace = true"),
            "{manifest}"
        );
        let ws = fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(ws.contains("    \"guests/tuner\",\n"), "{ws}");
        assert!(ws.contains("\"guests/loopback\""));
    }

    #[test]
    fn bad_names_are_refused() {
        let tmp = Tmp::new("bad");
        for bad in ["My", "1x", "a_b", "x-", ""] {
            assert!(generate(&tmp.0, bad, &tmp.0.join("x")).is_err(), "{bad:?}");
        }
        assert_eq!(type_name("sysctl-tuning"), "SysctlTuning");
    }
}
