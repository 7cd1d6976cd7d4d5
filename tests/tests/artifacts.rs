//! Plugin modules and their precompiled artifacts: missing, corrupt or stale files end in a
//! clear CNI error or a recompile, never in a crash.

use std::fs;

use wasm_cni_tests::{conf, exec_args, Cni, Netns, ScratchInstall};

fn add_works(dir: &std::path::Path) {
    let ns = Netns::new();
    let out = Cni::new("ADD", &ns.path()).run_in(dir, "loopback", &conf(Some("1.0.0"), "loopback"));
    assert_eq!(out.ok_json()["interfaces"][0]["name"], "lo");
    assert!(ns.link_state("lo").0);
}

#[test]
fn missing_module_is_a_clear_error() {
    let s = ScratchInstall::new();
    fs::remove_file(s.dir.join("loopback.wasm")).unwrap();
    let ns = Netns::new();
    let (code, msg) = Cni::new("ADD", &ns.path())
        .run_in(&s.dir, "loopback", &conf(Some("1.0.0"), "loopback"))
        .err();
    assert_eq!(code, 101);
    assert!(msg.contains("loopback.wasm"), "{msg}");
    // VERSION needs no module.
    assert_eq!(
        Cni::new("VERSION", "")
            .run_in(&s.dir, "loopback", "")
            .status,
        0
    );
}

#[test]
fn corrupt_module_is_a_clear_error() {
    let s = ScratchInstall::new();
    fs::write(
        s.dir.join("loopback.wasm"),
        b"\0asm this is not a component",
    )
    .unwrap();
    let ns = Netns::new();
    let (code, msg) = Cni::new("ADD", &ns.path())
        .run_in(&s.dir, "loopback", &conf(Some("1.0.0"), "loopback"))
        .err();
    assert_eq!(code, 101);
    assert!(msg.contains("could not be rebuilt"), "{msg}");
    assert!(!ns.link_state("lo").0, "nothing ran");
}

#[test]
fn missing_artifact_is_recompiled() {
    let s = ScratchInstall::new();
    fs::remove_file(s.dir.join("loopback.cwasm")).unwrap();
    add_works(&s.dir);
    assert!(
        s.dir.join("loopback.cwasm").exists(),
        "the artifact was rebuilt"
    );
}

#[test]
fn a_flipped_byte_in_the_artifact_is_caught_and_repaired() {
    let s = ScratchInstall::new();
    let path = s.dir.join("loopback.cwasm");
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    add_works(&s.dir);
    assert_ne!(
        fs::read(&path).unwrap(),
        bytes,
        "the artifact was rewritten"
    );
}

#[test]
fn an_artifact_of_another_module_is_not_used() {
    let s = ScratchInstall::new();
    fs::copy(s.dir.join("logger.cwasm"), s.dir.join("loopback.cwasm")).unwrap();
    add_works(&s.dir);
}

#[test]
fn without_a_compiler_a_missing_artifact_is_a_clear_error() {
    let s = ScratchInstall::new();
    fs::remove_file(s.dir.join("loopback.cwasm")).unwrap();
    fs::remove_file(s.dir.join("wasm-cni-compile")).unwrap();
    let ns = Netns::new();
    let (code, msg) = Cni::new("ADD", &ns.path())
        .run_in(&s.dir, "loopback", &conf(Some("1.0.0"), "loopback"))
        .err();
    assert_eq!(code, 101);
    assert!(msg.contains("wasm-cni-compile"), "{msg}");
}

#[test]
fn run_subcommand_runs_a_module_directly() {
    let s = ScratchInstall::new();
    let ns = Netns::new();
    let module = s.dir.join("loopback.wasm").display().to_string();
    let netns = ns.path();
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "direct"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
    ];
    let bin = s.dir.join("wasm-cni");
    let out = exec_args(
        &bin,
        &["run", &module],
        &env,
        conf(Some("1.0.0"), "loopback").as_bytes(),
    );
    assert_eq!(out.ok_json()["interfaces"][0]["name"], "lo");
    assert!(ns.link_state("lo").0);
    // Without arguments it explains itself and exits 2.
    let usage = exec_args(&bin, &[], &env, b"");
    assert_eq!(usage.status, 2);
    assert!(usage.stderr.contains("usage: wasm-cni run"), "{usage:?}");
}
