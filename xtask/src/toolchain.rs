//! The Rust toolchain `rust-toolchain.toml` pins, with its targets and
//! components.
//!
//! rustup normally adds what the file lists when it first installs the
//! toolchain, but a machine may already have the pinned version without the
//! bare-metal target, and with `RUSTUP_AUTO_INSTALL=0` rustup adds nothing by
//! itself. So before a bare-metal build xtask looks at the toolchain that
//! will run (its sysroot) and asks rustup for whatever is missing; without
//! rustup it stops with the exact command to run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What `rust-toolchain.toml` asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub channel: String,
    pub targets: Vec<String>,
    pub components: Vec<String>,
}

/// Reads the `[toolchain]` table of a `rust-toolchain.toml`: `channel`, and
/// the `targets` and `components` string arrays (each on one line or
/// spread over several).
pub fn parse_pinned(text: &str) -> Result<Pinned, String> {
    let mut pinned = Pinned::default();
    let mut in_table = false;
    let mut lines = text.lines();
    while let Some(raw) = lines.next() {
        let line = strip_comment(raw).trim();
        if line.starts_with('[') {
            in_table = line == "[toolchain]";
            continue;
        }
        if !in_table || line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("rust-toolchain.toml: cannot read `{raw}`"));
        };
        let key = key.trim();
        let mut value = value.trim().to_string();
        if value.starts_with('[') {
            // An array may continue on the following lines.
            while !value.contains(']') {
                let Some(next) = lines.next() else {
                    return Err(format!("rust-toolchain.toml: `{key}` has no closing `]`"));
                };
                value.push(' ');
                value.push_str(strip_comment(next).trim());
            }
        }
        match key {
            "channel" => pinned.channel = unquote(&value)?,
            "targets" => pinned.targets = string_array(&value)?,
            "components" => pinned.components = string_array(&value)?,
            _ => {}
        }
    }
    if pinned.channel.is_empty() {
        return Err("rust-toolchain.toml names no channel".into());
    }
    Ok(pinned)
}

fn strip_comment(line: &str) -> &str {
    // Values here never hold a `#`, so the first one starts a comment.
    line.split_once('#').map_or(line, |(before, _)| before)
}

fn unquote(v: &str) -> Result<String, String> {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .map(str::to_string)
        .ok_or_else(|| format!("rust-toolchain.toml: expected a quoted string, found `{v}`"))
}

fn string_array(v: &str) -> Result<Vec<String>, String> {
    let inner = v
        .trim()
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or_else(|| format!("rust-toolchain.toml: expected an array, found `{v}`"))?;
    inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(unquote).collect()
}

/// The file in a sysroot whose presence shows a component is installed.
fn component_marker(sysroot: &Path, component: &str) -> Option<PathBuf> {
    match component {
        "clippy" => Some(sysroot.join("bin/cargo-clippy")),
        "rustfmt" => Some(sysroot.join("bin/rustfmt")),
        "rust-src" => Some(sysroot.join("lib/rustlib/src/rust")),
        "llvm-tools" | "llvm-tools-preview" => Some(sysroot.join("lib/rustlib").join(host_triple()).join("bin")),
        _ => None,
    }
}

fn host_triple() -> &'static str {
    // xtask runs on the host it builds for; this project builds on x86-64 Linux.
    "x86_64-unknown-linux-gnu"
}

/// What a sysroot lacks of `pinned`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Missing {
    pub targets: Vec<String>,
    pub components: Vec<String>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.components.is_empty()
    }
}

/// Compares a sysroot with what is pinned: a target is there when its
/// standard library is (`lib/rustlib/<target>/lib`); a component when its
/// program or folder is.
pub fn missing_in(sysroot: &Path, pinned: &Pinned) -> Missing {
    let targets = pinned
        .targets
        .iter()
        .filter(|t| !sysroot.join("lib/rustlib").join(t.as_str()).join("lib").is_dir())
        .cloned()
        .collect();
    let components = pinned
        .components
        .iter()
        .filter(|c| component_marker(sysroot, c).is_some_and(|m| !m.exists()))
        .cloned()
        .collect();
    Missing { targets, components }
}

/// The rustup commands that add what is missing to `channel`.
pub fn rustup_commands(channel: &str, missing: &Missing) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    for (verb, list) in [("target", &missing.targets), ("component", &missing.components)] {
        if !list.is_empty() {
            let mut c: Vec<String> = vec![verb.into(), "add".into(), "--toolchain".into(), channel.into()];
            c.extend(list.iter().cloned());
            cmds.push(c);
        }
    }
    cmds
}

use crate::paths::workspace_root;

/// The sysroot of the toolchain that builds in the workspace (rustup's proxy
/// picks it from rust-toolchain.toml).
fn sysroot(envs: &[(&str, &Path)]) -> Result<PathBuf, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(&rustc)
        .current_dir(workspace_root())
        .envs(envs.iter().copied())
        .args(["--print", "sysroot"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    if !out.status.success() {
        return Err(format!("`{rustc} --print sysroot` failed; is the pinned Rust toolchain installed?"));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn have_rustup(envs: &[(&str, &Path)]) -> bool {
    Command::new("rustup")
        .envs(envs.iter().copied())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure the toolchain that builds here has every target and component
/// rust-toolchain.toml lists, adding them with rustup (and saying so).
pub fn ensure() -> Result<(), String> {
    ensure_with(&[])
}

/// `ensure` with extra environment for rustc and rustup (a throwaway
/// `RUSTUP_HOME`, in the provisioning test).
pub fn ensure_with(envs: &[(&str, &Path)]) -> Result<(), String> {
    let path = workspace_root().join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let pinned = parse_pinned(&text)?;
    let root = sysroot(envs)?;
    let missing = missing_in(&root, &pinned);
    if missing.is_empty() {
        return Ok(());
    }
    let commands = rustup_commands(&pinned.channel, &missing);
    let shown: Vec<String> = commands.iter().map(|c| format!("rustup {}", c.join(" "))).collect();
    if !have_rustup(envs) {
        let what = if missing.targets.is_empty() { "components" } else { "targets" };
        let list: Vec<&String> = missing.targets.iter().chain(&missing.components).collect();
        let msg = format!(
            "the Rust toolchain at {} lacks {what} rust-toolchain.toml needs: {}\n\
             Install them with:\n    {}\n(or install Rust {} with rustup, https://rustup.rs, which reads rust-toolchain.toml)",
            root.display(),
            list.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            shown.join("\n    "),
            pinned.channel
        );
        if missing.targets.is_empty() {
            // Components (clippy, rustfmt) are for developers; the build runs without them.
            eprintln!("xtask: warning: {msg}");
            return Ok(());
        }
        return Err(msg);
    }
    for (cmd, line) in commands.iter().zip(&shown) {
        eprintln!("xtask: the pinned toolchain lacks what rust-toolchain.toml lists; running `{line}`");
        let status = Command::new("rustup")
            .current_dir(workspace_root())
            .envs(envs.iter().copied())
            .args(cmd)
            .status()
            .map_err(|e| format!("cannot run rustup: {e}"))?;
        if !status.success() {
            return Err(format!("`{line}` failed; run it by hand and look at its output"));
        }
    }
    let still = missing_in(&root, &pinned);
    if !still.targets.is_empty() {
        return Err(format!("still missing after rustup: {}", still.targets.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_projects_own_file() {
        let text = std::fs::read_to_string(workspace_root().join("rust-toolchain.toml")).unwrap();
        let p = parse_pinned(&text).unwrap();
        assert!(!p.channel.is_empty());
        assert!(p.targets.iter().any(|t| t == "x86_64-unknown-none"));
    }

    #[test]
    fn reads_arrays_on_one_or_several_lines_with_comments() {
        let p = parse_pinned(
            "# pinned\n[toolchain]\nchannel = \"1.95.0\" # why\ntargets = [\n  \"a\", # first\n  \"b\",\n]\n\
             profile = \"minimal\"\ncomponents = [\"clippy\", \"rustfmt\"]\n[other]\nchannel = \"x\"\n",
        )
        .unwrap();
        assert_eq!(p.channel, "1.95.0");
        assert_eq!(p.targets, ["a", "b"]);
        assert_eq!(p.components, ["clippy", "rustfmt"]);
    }

    #[test]
    fn a_file_without_channel_or_with_bad_values_is_refused() {
        assert!(parse_pinned("[toolchain]\ntargets = [\"a\"]\n").unwrap_err().contains("no channel"));
        assert!(parse_pinned("[toolchain]\nchannel = 1.95\n").unwrap_err().contains("quoted"));
        assert!(parse_pinned("[toolchain]\nchannel = \"1\"\ntargets = [\"a\"\n").unwrap_err().contains("closing"));
    }

    #[test]
    fn a_sysroot_without_the_target_lacks_it_and_rustup_is_asked_for_it() {
        let dir = std::env::temp_dir().join(format!("xtask-sysroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("lib/rustlib/x86_64-unknown-linux-gnu/lib")).unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/rustfmt"), "").unwrap();
        let pinned = Pinned {
            channel: "1.95.0".into(),
            targets: vec!["x86_64-unknown-none".into()],
            components: vec!["clippy".into(), "rustfmt".into()],
        };
        let missing = missing_in(&dir, &pinned);
        assert_eq!(missing.targets, ["x86_64-unknown-none"]);
        assert_eq!(missing.components, ["clippy"]);
        let cmds = rustup_commands("1.95.0", &missing);
        assert_eq!(cmds[0].join(" "), "target add --toolchain 1.95.0 x86_64-unknown-none");
        assert_eq!(cmds[1].join(" "), "component add --toolchain 1.95.0 clippy");

        std::fs::create_dir_all(dir.join("lib/rustlib/x86_64-unknown-none/lib")).unwrap();
        std::fs::write(dir.join("bin/cargo-clippy"), "").unwrap();
        assert!(missing_in(&dir, &pinned).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
