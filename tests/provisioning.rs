//! xtask's provisioning against a toolchain that lacks the bare-metal
//! target, as a fresh machine has it: a throwaway `RUSTUP_HOME` holds a copy
//! of the pinned toolchain with the target removed; a bare-metal build fails
//! there, xtask's toolchain step adds the target with rustup, and the same
//! build then succeeds. The machine's own toolchain is never touched (the
//! copy is hard links, and rustup only unlinks or rewrites copied files).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xtask::images::{KERNEL_TARGET, workspace_root};

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The sysroot of the toolchain the workspace builds with.
fn sysroot() -> PathBuf {
    let out = run(Command::new("rustc").current_dir(workspace_root()).args(["--print", "sysroot"]));
    assert!(out.status.success(), "rustc --print sysroot: {}", text(&out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A throwaway rustup home whose copy of the pinned toolchain lacks
/// `KERNEL_TARGET`.
fn throwaway_rustup_home(dir: &Path) -> PathBuf {
    let root = sysroot();
    // rustup names a toolchain by channel and host; the sysroot path may be
    // another name's (a link to `stable`, say).
    let pinned = std::fs::read_to_string(workspace_root().join("rust-toolchain.toml")).unwrap();
    let channel = xtask::toolchain::parse_pinned(&pinned).unwrap().channel;
    let name = format!("{channel}-x86_64-unknown-linux-gnu");
    let real = std::fs::canonicalize(&root).expect("the toolchain directory resolves");
    let home = dir.join("rustup-home");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join("toolchains")).unwrap();
    let copy = home.join("toolchains").join(&name);
    let out = run(Command::new("cp").arg("-al").arg(&real).arg(&copy));
    assert!(out.status.success(), "cp -al {}: {}", real.display(), text(&out));
    // rustup rewrites its bookkeeping files in place: give the copy its own.
    for entry in std::fs::read_dir(copy.join("lib/rustlib")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            std::fs::remove_file(&path).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
    }
    if copy.join("lib/rustlib").join(KERNEL_TARGET).exists() {
        let out = run(Command::new("rustup").env("RUSTUP_HOME", &home).current_dir(workspace_root()).args([
            "target",
            "remove",
            KERNEL_TARGET,
        ]));
        assert!(out.status.success(), "rustup target remove in the throwaway home: {}", text(&out));
    }
    assert!(!copy.join("lib/rustlib").join(KERNEL_TARGET).exists());
    home
}

fn bare_metal_build(home: &Path, target_dir: &Path) -> Output {
    run(Command::new("cargo")
        .current_dir(workspace_root())
        .env("RUSTUP_HOME", home)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--quiet", "-p", "xen-abi", "--features", "guest", "--target", KERNEL_TARGET]))
}

#[test]
fn provisioning_adds_the_missing_bare_metal_target_and_the_build_then_succeeds() {
    let dir = integration_tests::out_dir().join("provisioning");
    std::fs::create_dir_all(&dir).unwrap();
    let home = throwaway_rustup_home(&dir);
    let target_dir = dir.join("target");
    let _ = std::fs::remove_dir_all(&target_dir);

    let before = bare_metal_build(&home, &target_dir);
    assert!(!before.status.success(), "the build succeeded without the target:\n{}", text(&before));
    assert!(text(&before).contains("can't find crate for `core`"), "unexpected failure:\n{}", text(&before));

    xtask::toolchain::ensure_with(&[("RUSTUP_HOME", &home)]).expect("provisioning adds the target");

    let after = bare_metal_build(&home, &target_dir);
    assert!(after.status.success(), "the build still fails after provisioning:\n{}", text(&after));
    let _ = std::fs::remove_dir_all(&dir);
}
