//! The sandbox holds: a guest that misbehaves is stopped with a CNI error, the host's network
//! is untouched, and the next invocation works.

use std::process::Command;

use wasm_cni_tests::{Cni, Netns, ScratchInstall};

fn hostile(mode: &str) -> String {
    format!(r#"{{"cniVersion":"1.0.0","name":"testnet","type":"hostile","mode":"{mode}"}}"#)
}

fn host_links() -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(s: &ScratchInstall, mode: &str) -> (u64, String) {
    let ns = Netns::new();
    Cni::new("ADD", &ns.path())
        .run_in(&s.dir, "hostile", &hostile(mode))
        .err()
}

fn next_invocation_works(s: &ScratchInstall) {
    let ns = Netns::new();
    let out = Cni::new("ADD", &ns.path()).run_in(&s.dir, "hostile", &hostile("ok"));
    assert_eq!(out.status, 0, "{out:?}");
    assert!(ns.link_state("lo").0);
}

#[test]
fn an_undeclared_host_netns_is_denied_and_the_host_is_untouched() {
    let s = ScratchInstall::new();
    s.add_guest("hostile");
    let before = host_links();
    let (code, msg) = run(&s, "host-netns");
    assert_eq!(code, 100, "{msg}");
    assert!(
        msg.contains("not granted the host-netns capability"),
        "{msg}"
    );
    assert_eq!(host_links(), before, "the host's links changed");
    next_invocation_works(&s);
}

#[test]
fn deep_recursion_is_trapped() {
    let s = ScratchInstall::new();
    s.add_guest("hostile");
    let (code, msg) = run(&s, "recurse");
    assert_eq!(code, 102, "{msg}");
    assert!(msg.contains("exhausted its stack"), "{msg}");
    assert!(msg.len() < 200, "the message is for operators: {msg}");
    next_invocation_works(&s);
}

#[test]
fn a_memory_bomb_is_capped() {
    let s = ScratchInstall::new();
    s.add_guest("hostile");
    let (code, msg) = run(&s, "alloc");
    assert_eq!(code, 102, "{msg}");
    assert!(msg.contains("exceeded its memory limit"), "{msg}");
    next_invocation_works(&s);
}

#[test]
fn a_panic_is_a_cni_error_and_its_message_reaches_the_log() {
    let s = ScratchInstall::new();
    s.add_guest("hostile");
    let ns = Netns::new();
    let out = Cni::new("ADD", &ns.path()).run_in(&s.dir, "hostile", &hostile("panic"));
    let (code, msg) = out.err();
    assert_eq!(code, 102, "{msg}");
    assert!(
        out.stderr.contains("hostile guest panics on purpose"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_result_that_breaks_the_protocol_is_refused() {
    let s = ScratchInstall::new();
    s.add_guest("hostile");
    let (code, msg) = run(&s, "bad-result");
    assert_eq!(code, 103, "{msg}");
    assert!(msg.contains("nonexistent interface"), "{msg}");
}
